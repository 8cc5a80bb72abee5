"""The example agent's exceptions, one small tree:

AgentError            the agent cannot go on; the message says why (never a token)
├── IdentityError     no bearer token could be had (client credentials or the stored user login)
├── ModelError        the model backend failed (network, credentials, an answer it cannot read)
└── ScriptError       a `ScriptedModel` script does not fit the run (a step the run cannot take)
"""

from __future__ import annotations


class AgentError(Exception):
    """Raised when the agent cannot finish its task."""


class IdentityError(AgentError):
    """Raised when the agent cannot get a bearer token for the gateway."""


class ModelError(AgentError):
    """Raised when a model backend fails or answers something the agent cannot use."""


class ScriptError(AgentError):
    """Raised when a scripted model's next step does not fit the conversation so far."""
