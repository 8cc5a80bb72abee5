"""One shared client session per upstream: transports, lifecycle, request path, circuit breaker,
resource following, credentials, relays to the caller.
"""
