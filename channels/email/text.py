"""Text out of email bodies: charsets that lie, HTML, quoted history and signatures.

Quoted history and signatures are cut with maintained libraries, not home-made patterns:
quotequail on HTML (Gmail, Outlook and Apple Mail quote blocks), mail-parser-reply on text
("On ... wrote:" lines in several languages, `>` quotes, signatures, disclaimers). HTML
becomes readable text with inscriptis (blocks, lists and tables laid out; scripts dropped).
Everything returned is valid UTF-8 without NUL characters, which the store requires.
"""

from __future__ import annotations

import codecs
import logging
import re

import quotequail
from inscriptis import get_text
from mailparser_reply import EmailReplyParser

log = logging.getLogger("channels.email")

QUOTE_LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "pl", "sv", "da", "cs"]
"""Languages whose reply headers and signatures mail-parser-reply recognizes for us."""
MAX_TEXT = 20_000
"""Longest text stored for one message; the raw message keeps everything."""
_REPLY_WINDOW = 100_000
_SURROGATES = re.compile("[\ud800-\udfff]")
_SINGLE_BYTE = ("ascii", "iso8859", "cp125", "latin", "mac-roman")
_replies = EmailReplyParser(languages=QUOTE_LANGUAGES)


def has_raw_bytes(value: str) -> bool:
    """Whether `value` carries undecoded 8-bit bytes (as the email parser escapes them)."""
    return bool(_SURROGATES.search(value))


def clean(value: str) -> str:
    """Valid UTF-8 without NULs: raw 8-bit bytes smuggled into a header are decoded too."""
    if _SURROGATES.search(value):
        try:
            value = decode_text(value.encode("utf-8", "surrogateescape"), None)
        except UnicodeEncodeError:  # lone surrogates that are not escaped bytes
            value = value.encode("utf-8", "replace").decode("utf-8")
    return value.replace("\x00", "")


def decode_text(data: bytes, declared: str | None) -> str:
    """Decode text whose declared charset may be wrong or missing.

    Valid UTF-8 beyond ASCII wins over a declared single-byte charset (the usual lie); then
    come the declared charset, UTF-8, Windows-1252, and Latin-1 (which never fails).
    """
    candidates: list[str] = []
    if _single_byte(declared) and _is_utf8_beyond_ascii(data):
        candidates.append("utf-8")
    candidates += [c for c in (declared, "utf-8", "cp1252") if c]
    for charset in candidates:
        try:
            return clean(data.decode(charset)).replace("\r\n", "\n")
        except (LookupError, UnicodeDecodeError):
            continue
    return clean(data.decode("latin-1")).replace("\r\n", "\n")


def _single_byte(charset: str | None) -> bool:
    if charset is None:
        return True
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        return True
    return name.startswith(_SINGLE_BYTE)


def _is_utf8_beyond_ascii(data: bytes) -> bool:
    if data.isascii():
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def html_to_text(html: str) -> str:
    """Readable text of an HTML body."""
    if not html.strip():
        return ""
    try:
        return clean(get_text(html)).strip()
    except Exception:
        log.warning("an HTML body could not be laid out; keeping its bare text")
        return clean(re.sub(r"<[^>]*>", " ", html)).strip()


def unquoted_html(html: str) -> str:
    """The HTML before the quoted history, with the "On ... wrote:" line."""
    try:
        parts = quotequail.quote_html(html, quote_intro_line=True)
    except Exception:
        return html
    return "".join(chunk for expanded, chunk in parts if expanded)


def strip_reply(text: str) -> str:
    """The newest reply in `text`: quoted history, reply headers and signature cut."""
    window = text[:_REPLY_WINDOW].strip()
    if not window:
        return ""
    try:
        parsed = _replies.read(window)
    except Exception:
        log.warning("quote stripping failed; keeping the whole text")
        return window
    first = parsed.replies[0].body.strip() if parsed.replies else ""
    return first or (parsed.latest_reply or "").strip() or window
