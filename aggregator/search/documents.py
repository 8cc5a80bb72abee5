"""What the tool finder knows about one exported tool, and the texts it indexes for it.

The two retrievers read different texts, because they want different things (measured on
LiveMCPBench with `bench/finder_quality.py` while building this):

* the embedding model reads short views, `views()`: the tool as `text()` (server and tool name as
  words, then the description), its bare names, and its names with each leading sentence. Adding
  parameters or the server description to the embedded text diluted it and lowered dense recall;
* full-text search reads everything, `search_text()`: raw and split names, title, description,
  parameter names and descriptions, server description and tags. Rare words (a parameter named
  `ticker`, a server described as "OpenStreetMap") are what BM25 is good at: its Recall@5 went
  from 0.33 (the embedded text) to 0.37.

Each server is embedded once as well (`server_text`), so a task that matches a server's purpose
lifts all of that server's tools.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import mcp_types

# Bump when the recipe of any indexed text changes: every stored hash then differs and rows are rewritten.
TEXT_RECIPE = 1

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[_\-./:+]+")
_SPACES = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?\u3002])\s+")
SENTENCE_VIEWS = 4
MIN_SENTENCE_WORDS = 3

_SENTENCE = re.compile(r"[^.!?\n]*(?:[.!?]+(?=\s|$)|\n|$)")
# "NOT for articles", "is not suitable for ...", "but not security issues", "rather than ...", "instead of ...":
# from the cue to the end of its sentence, the words name what the tool is not for.
_EXCLUSION = re.compile(
    r"\b(?:not (?:for|suitable for|intended for|meant for|designed for|to be used for|recommended for)"
    r"|(?:do not|don't|never|should not|must not) use (?:this|it)(?: tool)? (?:for|to|when)"
    r"|but not (?!yet\b)|rather than|instead of)\b",
    re.IGNORECASE,
)
# "For variant records, use variant_searcher instead.": the whole sentence is about another tool.
_DANGLING = re.compile(r"[\s,;:\-]*\.(?:\s*[.!?])*")
_REDIRECT = re.compile(r"\buse\b[^.!?\n]{1,80}?\binstead\b(?! of)|\binstead,? use\b", re.IGNORECASE)


def name_words(name: str) -> str:
    """`get_current_stock_price`, `getStockPrice`, `get-stock.price` -> `get current stock price`, ...

    Names are the strongest signal a tool has; the embedding model and the full-text tokenizer
    both read them better as words.
    """
    return _SPACES.sub(" ", _SEPARATORS.sub(" ", _CAMEL_BOUNDARY.sub(" ", name))).strip()


def negative_clauses(description: str) -> list[str]:
    """The parts of `description` that say what the tool is not for, or which other tool to use instead.

    To a bag of words or an embedding, "Not for listing many keys" reads like "listing many keys":
    these parts match the requests the tool should not answer.
    """
    found = []
    for match in _SENTENCE.finditer(description):
        sentence = match.group(0)
        if _REDIRECT.search(sentence):
            found.append(sentence.strip())
        elif (exclusion := _EXCLUSION.search(sentence)) is not None:
            found.append(sentence[exclusion.start() :].strip())
    return [part for part in found if part]


def without_negative_clauses(description: str) -> str:
    """`description` without its `negative_clauses`; a sentence cut at its cue ends where the cue was."""
    clauses = negative_clauses(description)
    if not clauses:
        return description
    kept = description
    for clause in clauses:
        kept = kept.replace(clause, "." if clause[-1] in ".!?" else "", 1)
    return _squash(_DANGLING.sub(".", kept)).lstrip(". ")


def _squash(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def text_hash(model: str, text: str) -> str:
    """The key of an embedding: the same text and model always give the same vector, so it is stored once."""
    return hashlib.sha256(f"{model}\x00{text}".encode()).hexdigest()[:32]


def server_text(server: str, server_description: str) -> str:
    """What the embedding model reads for a server as a whole."""
    description = _squash(server_description)
    return f"{name_words(server)}: {description}" if description else name_words(server)


@dataclass(frozen=True, slots=True)
class ToolDocument:
    """One exported tool as the index sees it; `name` (the exported, namespaced name) is the row key."""

    name: str
    server: str
    title: str | None
    description: str
    input_schema: dict[str, Any]
    server_description: str = ""
    tags: tuple[str, ...] = ()

    @classmethod
    def from_tool(
        cls,
        name: str,
        server: str,
        tool: mcp_types.Tool,
        server_description: str = "",
        tags: Iterable[str] = (),
    ) -> ToolDocument:
        """Build the document of an upstream tool exported as `name` by `server`."""
        title = tool.title or (tool.annotations.title if tool.annotations is not None else None)
        return cls(
            name=name,
            server=server,
            title=title,
            description=tool.description or "",
            input_schema=dict(tool.input_schema),
            server_description=server_description,
            tags=tuple(tags),
        )

    @property
    def tool_label(self) -> str:
        """The tool's own name, without the `<server>__` prefix the gateway adds when it has one."""
        return self.name.removeprefix(f"{self.server}__")

    def text(self) -> str:
        """The text the embedding model reads: `server words: tool words: title. description`."""
        head = f"{name_words(self.server)}: {name_words(self.tool_label)}"
        title = f"{_squash(self.title)}. " if self.title else ""
        return f"{head}: {title}{_squash(self.description)}".rstrip(": ")

    def views(self) -> tuple[str, ...]:
        """Every text embedded for this tool: `text()`, the bare names, and names with each leading sentence.

        A tool scores its best view. The name view matches requests that say what to do in few
        words; sentence views keep one clear sentence from being drowned by a long description.
        On LiveMCPBench the views lifted the finder from Recall@5 0.441 / NDCG@10 0.454 (one vector
        per tool) to 0.451 / 0.472, and with the MCP-Zero distractors NDCG@10 from 0.384 to 0.404.
        """
        head = f"{name_words(self.server)}: {name_words(self.tool_label)}"
        sentences = [s for s in _SENTENCE_END.split(_squash(self.description)) if len(s.split()) >= MIN_SENTENCE_WORDS]
        views = [self.text(), head, *(f"{head}: {sentence}" for sentence in sentences[:SENTENCE_VIEWS])]
        return tuple(dict.fromkeys(views))

    def search_text(self) -> str:
        """The text full-text search indexes: every word a caller might use to name this tool."""
        parts = [
            self.name,
            self.server,
            name_words(self.server),
            name_words(self.tool_label),
            self.title or "",
            self.description,
            _parameters_text(self.input_schema),
            self.server_description,
            " ".join(self.tags),
        ]
        return _squash(" ".join(part for part in parts if part))

    def server_text(self) -> str:
        """The text the embedding model reads for this tool's server."""
        return server_text(self.server, self.server_description)

    def content_hash(self, model: str) -> str:
        """A stable hash of everything indexed about this tool plus the model: equal hash, nothing to redo."""
        content = [
            TEXT_RECIPE,
            model,
            self.name,
            self.server,
            self.title,
            self.description,
            self.input_schema,
            self.server_description,
            list(self.tags),
        ]
        encoded = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
        return hashlib.sha256(encoded.encode()).hexdigest()[:32]


def _parameters_text(schema: dict[str, Any]) -> str:
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return ""
    parts: list[str] = []
    for name, spec in properties.items():
        parts.append(name_words(str(name)))
        if isinstance(spec, dict) and isinstance(description := spec.get("description"), str):
            parts.append(description)
    return " ".join(parts)
