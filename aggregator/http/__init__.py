"""The Starlette edge: /mcp, /sse, /healthz, /readyz, RFC 9728 metadata, /auth/validate, /v0.1,
/metrics; bearer authentication.
"""
