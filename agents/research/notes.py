"""The row's notes as a source."""

from __future__ import annotations

from agents.research.sources import Passage, Prospect, SourceKind


class NotesSource:
    """The row's own notes: what the salesperson knows. Private context for the writer (never
    quoted to the prospect, never enough on its own to ground an opener)."""

    name: SourceKind = "notes"

    async def passages(self, prospect: Prospect) -> list[Passage]:
        notes = " ".join(prospect.notes.split())
        return [Passage("notes", None, "Salesperson's notes", notes)] if notes else []
