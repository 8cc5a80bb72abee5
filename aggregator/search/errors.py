"""The tool finder's exceptions, a branch of the gateway's tree (`aggregator/errors.py`).

GatewayError
└── SearchError                 something the tool finder cannot do
    ├── EmbedderUnavailableError   the embedding model failed to load, or is not loaded yet
    ├── IndexClosedError           the index was used before `open()` or after `aclose()`
    └── DuplicateToolError         one sync named the same exported tool twice
"""

from __future__ import annotations

from aggregator.errors import GatewayError


class SearchError(GatewayError):
    """Base of the tool finder's errors."""


class EmbedderUnavailableError(SearchError):
    """Raised when text must be encoded and the model is not loaded (or failed to load; the cause says why)."""

    def __init__(self, model: str, cause: str) -> None:
        self.model = model
        self.cause = cause
        super().__init__(f"Embedding model '{model}' is unavailable: {cause}")


class IndexClosedError(SearchError):
    """Raised when a `ToolIndex` is used while it is not open."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        super().__init__(f"The tool index at '{uri}' is not open.")


class DuplicateToolError(SearchError):
    """Raised when the documents passed to one sync contain the same exported name twice."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"Tool '{name}' appears twice in the catalog passed to the index.")
