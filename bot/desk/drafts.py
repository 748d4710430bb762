"""Drafts on the staff desk: shown to staff with Approve / Edit / Reject, decided once.

- Approve sends the draft as the agent wrote it (with its sources, for an answer).
- Edit is a staff member's reply to the draft's post: their text is sent instead, and they
  are offered to save it to the knowledge base with the customer's question.
- Reject sends nothing.

Every decision is audited with who made it. A decision is a compare-and-set on the draft
(`bot.store.drafts.settle`), so two staff members deciding at once cannot both send it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from bot.core.safe_text import visible, visible_line
from bot.desk.outreach import send_outreach
from bot.desk.staff import StaffMember, notify_staff, reach
from bot.store import drafts, outbox
from bot.store.audit import AuditLog
from bot.store.db import Tx
from bot.store.kb import ArticleDraft, Section, put_article
from bot.store.models import Draft

SAVE_TITLE_CHARS = 120
DRAFT_HELP = (
    "Approve sends it as written. To change it, reply to this message with the corrected "
    "text (or press Edit first). Reject sends nothing."
)
WHY = {
    "no_citation": "it cites no article found in this conversation",
    "low_confidence": "the best passage matched too weakly",
    "review:pricing": "it is about pricing, which this agent's definition has reviewed",
    "review:contract": "it is about a contract, which this agent's definition has reviewed",
    "outreach": "a first message to a prospect is always reviewed",
}


def with_sources(text: str, citations: list[dict[str, Any]]) -> str:
    """The answer with the articles it rests on appended: title and link, once each."""
    seen: dict[int, str] = {}
    for cited in citations:
        if cited.get("article_id") in seen:
            continue
        title, url = cited.get("title") or "Help article", cited.get("url")
        seen[cited["article_id"]] = f"{title}: {url}" if url else str(title)
    if not seen:
        return text
    lines = list(seen.values())
    label = "Source" if len(lines) == 1 else "Sources"
    return f"{text}\n\n{label}: " + "; ".join(lines)


def draft_card(draft: Draft) -> str:
    """What staff see: why it is a draft, the question, the draft, its sources."""
    why = WHY.get(draft.reason, draft.reason)
    lines = [f"📝 Draft #{draft.id} by {draft.agent}, not sent: {visible_line(why)}"]
    if draft.confidence is not None:
        lines[0] += f" (confidence {draft.confidence:.2f})"
    if draft.question:
        lines += ["", "Question: " + visible_line(draft.question)]
    if draft.subject:
        lines += ["Subject: " + visible_line(draft.subject)]
    lines += ["", visible(draft.text)]
    sources = [
        f"{visible_line(str(c.get('title', '')))} ({float(c.get('score') or 0):.2f})"
        + (f" {c['url']}" if c.get("url") else "")
        for c in draft.citations
    ] + [visible_line(url) for url in draft.sources]
    if sources:
        lines += ["", "Sources: " + "; ".join(sources)]
    lines += ["", DRAFT_HELP]
    return "\n".join(lines)


async def post_draft(session: Tx, draft: Draft) -> None:
    """Queue the draft's card, with its buttons, in the contact's staff topic (once)."""
    await notify_staff(
        session,
        key=f"draft:{draft.id}:post",
        conversation_id=draft.conversation_id,
        contact_id=draft.contact_id,
        text=draft_card(draft),
        kind="draft",
        meta={"draft_id": draft.id},
    )


async def _send_reply(session: Tx, draft: Draft, text: str, staff: StaffMember) -> str:
    """Queue an answer draft's text to the customer on the conversation's channel."""
    found = await reach(session, draft.contact_id)
    if isinstance(found, str):
        return found
    conversation, address = found.conversation, found.address
    await outbox.enqueue(
        session,
        key=f"draft:{draft.id}:send",
        conversation_id=conversation.id,
        contact_id=draft.contact_id,
        channel=conversation.channel,
        recipient=address,
        text=text,
        author="agent" if draft.status == "approved" else "staff",
        run_id=draft.run_id,
        meta={"draft_id": draft.id, "staff": staff.actor, "staff_name": staff.name},
    )
    return "sent"


async def _send(session: Tx, draft: Draft, text: str, staff: StaffMember) -> str:
    if draft.kind == "outreach":
        return await send_outreach(session, draft, text, staff)
    return await _send_reply(session, draft, text, staff)


async def _audit(
    audit: AuditLog, session: Tx, draft: Draft, staff: StaffMember, **more: Any
) -> None:
    await audit.append(
        session,
        "draft_decided",
        {"draft": draft.id, "kind": draft.kind, "decision": draft.status, **more},
        actor=staff.actor,
        run_id=draft.run_id,
        conversation_id=draft.conversation_id,
    )


async def decide_draft(
    session: Tx, audit: AuditLog, *, draft_id: int, approve: bool, staff: StaffMember
) -> str:
    """Approve (send as written) or reject a pending draft, once; returns what happened."""
    draft = await drafts.get_draft(session, draft_id)
    if draft is None:
        return "unknown draft"
    text = with_sources(draft.text, draft.citations) if approve else None
    status = "approved" if approve else "rejected"
    if not await drafts.settle(session, draft, status, decided_by=staff.name, final_text=text):
        return f"already {draft.status} by {draft.decided_by}"
    if text is not None:
        outcome = await _send(session, draft, text, staff)
        if outcome != "sent":
            raise DraftNotSent(outcome)
    await _audit(audit, session, draft, staff, text=text)
    return status


class DraftNotSent(Exception):
    """The decision could not be carried out (e.g. the contact has no address any more):
    raised so that the caller's transaction rolls the decision back."""


async def edit_draft(
    session: Tx, audit: AuditLog, *, draft_id: int, text: str, staff: StaffMember
) -> str:
    """Send a staff member's corrected text instead of the draft, once; offer to save it."""
    draft = await drafts.get_draft(session, draft_id)
    if draft is None:
        return "unknown draft"
    text = text.strip()
    if not text:
        return "the corrected text is empty"
    if not await drafts.settle(session, draft, "edited", decided_by=staff.name, final_text=text):
        return f"already {draft.status} by {draft.decided_by}"
    outcome = await _send(session, draft, text, staff)
    if outcome != "sent":
        raise DraftNotSent(outcome)
    await _audit(audit, session, draft, staff, text=text, draft_text=draft.text)
    if draft.kind == "reply" and draft.question:
        await notify_staff(
            session,
            key=f"draft:{draft.id}:offer-save",
            conversation_id=draft.conversation_id,
            contact_id=draft.contact_id,
            text=f"✏️ Sent your corrected answer to draft #{draft.id}. Save it to the knowledge "
            "base, with the customer's question, so the agent can answer it next time?",
            kind="draft_save_offer",
            meta={"draft_id": draft.id, "save_offer": True},
        )
    return "edited"


def saved_article(draft: Draft) -> ArticleDraft:
    """A staff answer as a knowledge-base article: the question as its title, then the answer."""
    question = " ".join(draft.question.split())
    title = (
        question if len(question) <= SAVE_TITLE_CHARS else question[: SAVE_TITLE_CHARS - 1] + "…"
    )
    answer = draft.final_text or draft.text
    body = f"{question}\n\n{answer}"
    return ArticleDraft(
        path=f"staff-answer:{draft.id}",
        title=title,
        url=None,
        body=body,
        content_hash=hashlib.sha256(body.encode()).hexdigest(),
        sections=(Section(title, body),),
    )


async def save_to_kb(session: Tx, audit: AuditLog, *, draft_id: int, staff: StaffMember) -> str:
    """Store an edited answer as a new article (once); returns what happened."""
    draft = await drafts.get_draft(session, draft_id)
    if draft is None:
        return "unknown draft"
    if draft.status != "edited" or draft.kind != "reply":
        return "only an edited answer can be saved"
    if draft.article_id is not None:
        return f"already saved as article {draft.article_id}"
    article, _ = await put_article(session, saved_article(draft))
    await drafts.mark_saved(session, draft, article.id)
    await audit.append(
        session,
        "draft_saved_to_kb",
        {"draft": draft.id, "article": article.id, "title": article.title},
        actor=staff.actor,
        run_id=draft.run_id,
        conversation_id=draft.conversation_id,
    )
    return f"saved as article {article.id}"
