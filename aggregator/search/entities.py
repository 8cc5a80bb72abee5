"""Literal values in a query (URLs, paths, file names, ids, `<placeholders>`) and what kind each is.

Agents pass the finder the task they were given, values included: "analyse
/root/music/alarm.wav", "update entry 5KsDBWseXY6QegucYAoacS", "fetch <url>". The embedding model
reads such a value as words ("root", "music", "5Ks...") and is pulled towards tools that happen to
share them. A value says what *kind* of thing the tool must accept, not what the tool does, so
`normalise` replaces each value by its kind ("a wav file path", "an id"): the model reads the kind,
and full-text search matches the kind's word against tools whose parameters name it (`path`,
`url`, `id`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from typing import Literal

Form = Literal["written", "words", "dropped"]

# Order matters: the first pattern that matches a span claims it.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("placeholder", re.compile(r"<[^<>\s][^<>]{0,60}>|\{\{?[A-Za-z_][\w .-]{0,40}\}?\}")),
    ("url", re.compile(r"\b(?:https?|ftp|wss?|s3|gs)://[^\s<>\"')\]]*[^\s<>\"')\].,;:!?]", re.IGNORECASE)),
    ("email", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    ("path", re.compile(r"(?<![\w/])(?:~|\.{1,2})?/(?:[\w.@+-]+/)*(?:[\w.@*+-]*[\w*])?/?|\b[A-Za-z]:\\[^\s]*[\w*]")),
    ("file", re.compile(r"\b[\w-]+(?:\.[\w-]+)*\.(?:[A-Za-z][A-Za-z0-9]{1,4})\b(?!\.\w)")),
    ("id", re.compile(r"\b(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9]+(?:[_-][A-Za-z0-9]+)*\b")),
    ("number", re.compile(r"\b\d{5,}\b")),
)
# What a file's extension says it is, in the words a tool description would use. A "file" match
# must end in one of these, not in a sentence's last word.
_FILE_TYPES = {
    **dict.fromkeys(("doc", "docx"), "Word document"),
    **dict.fromkeys(("ppt", "pptx"), "PowerPoint presentation"),
    **dict.fromkeys(("xls", "xlsx"), "Excel spreadsheet"),
    **{"csv": "CSV table", "tsv": "TSV table", "pdf": "PDF document", "md": "Markdown document", "txt": "text"},
    **{"json": "JSON", "yaml": "YAML", "yml": "YAML", "xml": "XML", "html": "HTML page", "htm": "HTML page"},
    **dict.fromkeys(("png", "jpg", "jpeg", "gif", "svg", "webp"), "image"),
    **dict.fromkeys(("mp3", "wav", "flac", "ogg"), "audio"),
    **dict.fromkeys(("mp4", "mov", "avi", "mkv"), "video"),
    **dict.fromkeys(("zip", "tar", "gz", "tgz"), "archive"),
    **{"py": "Python source", "java": "Java source", "go": "Go source", "rs": "Rust source", "rb": "Ruby source"},
    **{"c": "C source", "cpp": "C++ source", "h": "C header", "php": "PHP source", "sh": "shell script"},
    **{"js": "JavaScript source", "ts": "TypeScript source", "sql": "SQL", "log": "log", "epub": "e-book"},
    **{"db": "database", "sqlite": "database", "ini": "config", "toml": "config", "cfg": "config"},
    **{"ipynb": "Jupyter notebook", "parquet": "Parquet table", "bib": "BibTeX bibliography"},
}
# Bare names ending in these are more often products than files ("Next.js", "Vue.js").
_NOT_BARE_FILES = frozenset(("js", "ts", "go", "c", "h", "sh", "rs"))
_WORDS = re.compile(r"[A-Za-z]+")
_KIND_WORDS = {
    "placeholder": "",
    "url": "a URL",
    "email": "an email address",
    "path": "a file path",
    "file": "a file",
    "id": "an id",
    "number": "a number",
}
_MIN_ID_LENGTH = 4
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class Value:
    """One literal value found in a query: as written, its kind, and the words the model reads instead."""

    text: str
    kind: str
    words: str


@dataclass(frozen=True, slots=True)
class Masked:
    """A query whose values are replaced by markers that no pattern and no step boundary can match.

    Splitting the masked text into steps keeps a value whole (a URL with a comma in it stays one
    URL); `unmask` then gives each piece back as written (for people) or as words (for the model).
    """

    text: str
    values: tuple[Value, ...]

    def unmask(self, piece: str, form: Form) -> str:
        """`piece` of the masked text with each marker replaced by its value as "written", its kind's "words", or ""."""
        if not self.values:
            return piece
        restored = _MARKER.sub(lambda match: self._value(match, form), piece)
        return " ".join(restored.split())

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds of the values found, first occurrence first."""
        return tuple(dict.fromkeys(value.kind for value in self.values))

    def _value(self, match: re.Match[str], form: Form) -> str:
        value = self.values[ord(match.group(1)) - _MARKER_BASE]
        return value.text if form == "written" else value.words if form == "words" else ""


_MARKER_BASE = 0xE100
_MARKER = re.compile("\ue000(.)\ue001")


def mask(query: str) -> Masked:
    """Replace the literal values in `query` by markers, and say what each was; see the module docstring."""
    values: list[Value] = []
    text = query
    for kind, pattern in _PATTERNS:
        text = pattern.sub(partial(_replace, kind, values), text)
    return Masked(text, tuple(values))


def normalise(query: str) -> str:
    """`query` as the model should read it: each literal value replaced by the words for its kind."""
    masked = mask(query)
    return masked.unmask(masked.text, "words")


def _replace(kind: str, values: list[Value], match: re.Match[str]) -> str:
    value = match.group(0)
    if kind == "id" and not _looks_like_id(value):
        return value
    last = value.rstrip("/").rsplit("/", 1)[-1]
    extension = last.rsplit(".", 1)[-1].lower() if "." in last else ""
    if kind == "file" and (extension not in _FILE_TYPES or extension in _NOT_BARE_FILES):
        return value
    if kind in ("path", "file") and extension in _FILE_TYPES:
        words = _article(f"{_FILE_TYPES[extension]} file")
    elif kind == "path" and (folder := " ".join(_WORDS.findall(last))):
        words = f"{folder} folder"
    elif kind == "url" and (site := _site(value)):
        words = _article(f"{site} URL")
    else:
        words = _KIND_WORDS[kind]
    values.append(Value(value, kind, words))
    return f"\ue000{chr(_MARKER_BASE + len(values) - 1)}\ue001"


def _article(words: str) -> str:
    return f"{'an' if words[0] in 'AEIOUaeiou' else 'a'} {words}"


def _site(url: str) -> str:
    """`https://www.youtube.com/watch?v=...` -> `youtube`: the service a URL names is what a tool is for."""
    host = url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    labels = [label for label in host.split(".") if label and label.lower() not in ("www", "api", "m")]
    return labels[-2] if len(labels) >= 2 else (labels[0] if labels else "")


def _looks_like_id(value: str) -> bool:
    """`ENG-412`, `CHG0030012`, `a1b2c3d`, a UUID; not a word with a number in it like `sha256` or `base64`."""
    digits = sum(character.isdigit() for character in value)
    if len(value) >= _MIN_ID_LENGTH * 2 and digits >= 2:
        return True
    if len(value) >= _MIN_ID_LENGTH + 3 and digits and all(character in _HEX for character in value.lower()):
        return True
    return any(len(part) >= 2 and part.isdigit() for part in re.split(r"[_-]", value)[1:])
