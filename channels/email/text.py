"""Text out of email bodies: charsets that lie, and HTML.

HTML becomes readable text with inscriptis (blocks, lists and tables laid out; scripts
dropped); `quote_marked_text` also marks what an HTML mail quotes (its <blockquote>s) with
`>` and its rules (<hr>) with a line, as a plain-text mail would, so `channels.email.reply`
cuts both kinds of mail by the same marks. Everything returned is valid UTF-8 without NUL
characters, which the store requires.
"""

from __future__ import annotations

import codecs
import logging
import re

from inscriptis import get_text
from lxml import etree
from lxml import html as lxml_html

log = logging.getLogger("channels.email")

MAX_TEXT = 20_000
"""Longest text stored for one message; the raw message keeps everything."""
MAX_MARKED_HTML = 2_000_000
"""Longest HTML whose quotes are marked; a longer one is laid out once, unmarked."""
_RULE = "_" * 32
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_SURROGATES = re.compile("[\ud800-\udfff]")
_SINGLE_BYTE = ("ascii", "iso8859", "cp125", "latin", "mac-roman")


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


def quote_marked_text(html: str) -> str:
    """Readable text of an HTML body with its quoted parts marked `>` and its rules drawn."""
    if not html.strip() or len(html) > MAX_MARKED_HTML:
        return html_to_text(html)
    try:
        # lxml refuses a str that declares its encoding; the str is decoded already.
        root = lxml_html.fromstring(_XML_DECLARATION.sub("", html, count=1))
        for quote in root.xpath("//blockquote[not(ancestor::blockquote)]"):
            _replace(quote, _quoted(_outer_text(quote)))
        for rule in root.xpath("//hr"):
            _replace(rule, _RULE)
        marked = etree.tostring(root, encoding="unicode")
    except Exception:  # lxml refuses some broken markup; the unmarked text is still good
        log.warning("the quotes of an HTML body could not be marked; laying it out unmarked")
        return html_to_text(html)
    return html_to_text(marked)


def _quoted(text: str) -> str:
    return "\n".join(f"> {line.strip()}".rstrip() for line in text.splitlines())


def _replace(element: lxml_html.HtmlElement, text: str) -> None:
    """Put `text` where `element` was, as a block of its own lines."""
    block = lxml_html.Element("pre")
    block.text = f"\n{text}\n"
    block.tail = element.tail
    parent = element.getparent()
    if parent is None:
        return
    parent.replace(element, block)


def _outer_text(element: lxml_html.HtmlElement) -> str:
    return html_to_text(etree.tostring(element, encoding="unicode", with_tail=False))
