"""Fuzzing the gateway with PyPI's mcp-fuzzer (see run_fuzzer.py)."""
