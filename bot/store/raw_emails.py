"""Emails exactly as the mail server delivered them, one row per mailbox position."""

from __future__ import annotations

from sqlalchemy import select

from bot.store.db import Tx
from bot.store.models import RawEmail


async def is_read_at(session: Tx, mailbox: str, uidvalidity: int, uid: int) -> bool:
    """Whether the message at this mailbox position was handled before."""
    query = select(RawEmail.id).where(
        RawEmail.mailbox == mailbox,
        RawEmail.uidvalidity == uidvalidity,
        RawEmail.uid == uid,
    )
    return (await session.execute(query)).first() is not None


async def keep_raw_email(
    session: Tx,
    *,
    message_id: int | None,
    mailbox: str,
    uidvalidity: int,
    uid: int,
    header_message_id: str | None,
    verdict: str,
    raw: bytes,
) -> None:
    """Keep `raw` as read at its mailbox position, beside the inbound message it became
    (`message_id`, None when it was not recorded as one) and the verdict intake gave it."""
    session.add(
        RawEmail(
            message_id=message_id,
            mailbox=mailbox,
            uidvalidity=uidvalidity,
            uid=uid,
            header_message_id=header_message_id,
            verdict=verdict,
            size=len(raw),
            raw=raw,
        )
    )
