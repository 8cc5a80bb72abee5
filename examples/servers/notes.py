"""An in-memory note-taking service over stdio: the demo's local, stateful upstream.

Notes live for the life of the process, which a stdio host starts per connection;
that makes this server the demo's example of per-connection state. Notes are also
readable as resources: `notes://all` and `notes://{note_id}`.

Run: `python -m examples.servers.notes` (speaks MCP on stdin/stdout).
"""

from __future__ import annotations

import datetime
import itertools
import json
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field


class Note(BaseModel):
    """One note."""

    id: str = Field(description="Identifier to pass to delete_note, e.g. 'note-3'.")
    title: str
    body: str
    tags: list[str] = Field(description="Lower-case tags, without duplicates.")
    created_at: datetime.datetime = Field(description="When the note was added (UTC, ISO 8601).")


class NoteNotFoundError(LookupError):
    """Raised when a note id names no stored note."""

    def __init__(self, note_id: str) -> None:
        super().__init__(f"No note with id '{note_id}'. Call list_notes to see the ids that exist.")
        self.note_id = note_id


class NoteStore:
    """Notes held in memory, in the order they were added."""

    def __init__(self) -> None:
        self._notes: dict[str, Note] = {}
        self._numbers = itertools.count(1)

    def add(self, title: str, body: str, tags: list[str]) -> Note:
        """Store a new note and return it with its id."""
        normalised_tags = list(dict.fromkeys(tag.strip().lower() for tag in tags if tag.strip()))
        note = Note(
            id=f"note-{next(self._numbers)}",
            title=title.strip(),
            body=body,
            tags=normalised_tags,
            created_at=datetime.datetime.now(datetime.UTC),
        )
        self._notes[note.id] = note
        return note

    def get(self, note_id: str) -> Note:
        """Return the note with `note_id`, or raise `NoteNotFoundError`."""
        try:
            return self._notes[note_id]
        except KeyError:
            raise NoteNotFoundError(note_id) from None

    def all(self) -> list[Note]:
        """Every note, oldest first."""
        return list(self._notes.values())

    def search(self, query: str) -> list[Note]:
        """Notes whose title, body or tags contain every word of `query` (case-insensitive), oldest first."""
        terms = query.lower().split()
        return [
            note
            for note in self._notes.values()
            if all(term in f"{note.title}\n{note.body}\n{' '.join(note.tags)}".lower() for term in terms)
        ]

    def delete(self, note_id: str) -> Note:
        """Remove the note with `note_id` and return it, or raise `NoteNotFoundError`."""
        note = self.get(note_id)
        del self._notes[note_id]
        return note


NoteId = Annotated[str, Field(description="Id of the note, as returned by add_note or list_notes, e.g. 'note-3'.")]


def create_server(store: NoteStore | None = None) -> MCPServer[Any]:
    """Build the notes server around `store` (a fresh, empty one by default)."""
    notes = store if store is not None else NoteStore()
    server: MCPServer[Any] = MCPServer(
        "notes",
        title="Notes (in-memory demo)",
        instructions="A scratchpad of notes kept in memory until the server exits.",
        version="1.0.0",
    )

    @server.tool(title="Add a note", annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
    def add_note(
        title: Annotated[str, Field(min_length=1, max_length=200, description="Short title of the note.")],
        body: Annotated[str, Field(description="Text of the note; Markdown is fine.")],
        tags: Annotated[
            list[str], Field(description="Optional labels for grouping and search, e.g. ['work', 'todo'].")
        ] = [],  # noqa: B006 - pydantic copies the default for every call; the list is never mutated
    ) -> Note:
        """Save a new note with a title, a body and optional tags. Returns the stored note, including
        the id needed to delete it later."""
        return notes.add(title, body, tags)

    @server.tool(title="Search notes", annotations=ToolAnnotations(read_only_hint=True))
    def search_notes(
        query: Annotated[
            str,
            Field(description="Words to look for; a note matches when its title, body or tags contain all of them."),
        ],
    ) -> list[Note]:
        """Find notes by keyword: case-insensitive search over titles, bodies and tags. Returns the
        matching notes, oldest first, or an empty list."""
        return notes.search(query)

    @server.tool(title="List notes", annotations=ToolAnnotations(read_only_hint=True))
    def list_notes() -> list[Note]:
        """List every saved note, oldest first."""
        return notes.all()

    @server.tool(title="Delete a note", annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=False))
    def delete_note(note_id: NoteId) -> str:
        """Delete a note permanently by its id."""
        try:
            note = notes.delete(note_id)
        except NoteNotFoundError as error:
            raise ToolError(str(error)) from error
        return f"Deleted note '{note.id}' ({note.title})."

    @server.resource(
        "notes://all",
        name="all-notes",
        title="All notes",
        description="Every saved note as a JSON array, oldest first.",
        mime_type="application/json",
    )
    def all_notes() -> str:
        return json.dumps([note.model_dump(mode="json") for note in notes.all()], indent=2)

    @server.resource(
        "notes://{note_id}",
        name="note",
        title="One note",
        description="A single note as JSON, addressed by its id.",
        mime_type="application/json",
    )
    def one_note(note_id: str) -> str:
        try:
            return notes.get(note_id).model_dump_json(indent=2)
        except NoteNotFoundError as error:
            raise ResourceNotFoundError(str(error)) from error

    return server


if __name__ == "__main__":
    anyio.run(create_server().run_stdio_async)
