"""Every allow/deny: principals, token verification (gateway HS256, OIDC via JWKS), scopes.yml
decisions, vending, revocation, rate and request limits, the audit log.
"""
