"""Settings (pydantic-settings), YAML with line numbers, atomic file writes, logging: the only reader
of the environment and of files.
"""
