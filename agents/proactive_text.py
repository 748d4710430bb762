"""What a proactive run is told, and the offline message it sends, filled in."""

from __future__ import annotations

from typing import Any

from bot.store.models import Contact


def proactive_note(cause: dict[str, Any], instruction: str) -> str:
    """What a proactive run's model is told in place of a message from the contact."""
    if "event" in cause:
        why = f"the event {cause['event']} (id {cause.get('event_id')})"
    elif "job" in cause:
        why = f"the scheduled job {cause['job']} ({cause.get('scheduled_for')})"
    else:
        why = "a follow-up: the contact went quiet before answering your questions"
    return (
        f"[Not a message from the contact: this run was started by {why}. Write to the contact "
        f"only if it helps them; otherwise finish without a message.] {instruction}".strip()
    )


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def render_message(template: str, contact: Contact) -> str:
    """The definition's offline message with {first_name}, {name}, {company} filled in."""
    name = (contact.name or "").strip()
    fields = _Blank(
        name=name or "there",
        first_name=name.split()[0] if name else "there",
        company=str((contact.custom_fields or {}).get("company", "")),
    )
    try:
        return template.format_map(fields).strip()
    except (ValueError, IndexError):  # a stray brace: send the text as written
        return template.strip()
