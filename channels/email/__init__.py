"""The email channel: IMAP in (supervised, exactly once), SMTP out (through the outbox).

- `parse`: raw message -> `ParsedEmail` (the new text of a reply, attachments, thread headers).
- `loops`: which mail is never answered (auto-replies, bulk, lists, bounces, our own) and the
  per-contact cap on automatic replies.
- `imap`: the mailbox reader: lease, IDLE or polling, reconnects, persisted UID cursor.
- `intake`: one fetched message -> the store (recorded, ignored, or applied as a bounce).
- `compose`, `smtp`, `outbound`: outbox item -> MIME reply in its thread -> SMTP.
- `service`: all of it inside a host (the app).
"""
