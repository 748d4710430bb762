"""Parse modes for the fake Bot API: the plain text a formatted message shows, or the error.

A small subset of Telegram's parsers (https://core.telegram.org/bots/api#formatting-options):
enough to reject the mistakes a bot really makes (an unclosed or unknown HTML tag, an unescaped
MarkdownV2 reserved character, an unbalanced marker) with the description the real API gives.
Entities are not computed; the text that comes back is stripped of markup as Telegram's is.
"""

from __future__ import annotations

import html
import re

HTML_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a"}
    | {"tg-emoji", "code", "pre", "blockquote"}
)
_HTML_TAG = re.compile(r"<(/?)([a-zA-Z][\w-]*)([^<>]*)>")
_HTML_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")

_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_MARKERS = {
    "*": "Bold",
    "_": "Italic",
    "__": "Underline",
    "~": "Strikethrough",
    "||": "Spoiler",
    "[": "TextUrl",
}
_LEGACY_LINK = re.compile(r"\[([^\]]*)\]\(([^)]*)\)")


class EntityParseError(ValueError):
    """The text does not parse; the message is the API's description after "Bad Request: "."""


def plain_text(text: str, parse_mode: str | None) -> str:
    """The text as Telegram shows it once `parse_mode` markup is applied."""
    mode = (parse_mode or "").lower()
    if not mode:
        return text
    parser = {"html": _html, "markdownv2": _markdown_v2, "markdown": _markdown}.get(mode)
    if parser is None:
        raise EntityParseError("unsupported parse_mode")
    return parser(text)


def _fail(text: str, index: int, problem: str, detail: str = "") -> EntityParseError:
    offset = len(text[:index].encode())
    return EntityParseError(f"can't parse entities: {problem} at byte offset {offset}{detail}")


def _html(text: str) -> str:
    out: list[str] = []
    open_tags: list[tuple[str, int]] = []
    i = 0
    while i < len(text):
        if text[i] == "<":
            i = _html_tag(text, i, open_tags)
        elif (entity := _HTML_ENTITY.match(text, i)) is not None:
            out.append(html.unescape(entity.group()))
            i = entity.end()
        else:
            out.append(text[i])
            i += 1
    if open_tags:
        name, start = open_tags[-1]
        raise _fail(text, start, f'Can\'t find end tag corresponding to start tag "{name}"')
    return "".join(out)


def _html_tag(text: str, i: int, open_tags: list[tuple[str, int]]) -> int:
    tag = _HTML_TAG.match(text, i)
    if tag is None:
        raise _fail(text, i, 'Unsupported start tag ""')
    closing, name = tag.group(1) == "/", tag.group(2).lower()
    if name not in HTML_TAGS:
        kind = "end" if closing else "start"
        raise _fail(text, i, f'Unsupported {kind} tag "{name}"')
    if not closing:
        open_tags.append((name, i))
    elif not open_tags:
        raise _fail(text, i, "Unexpected end tag")
    elif open_tags[-1][0] != name:
        expected = open_tags[-1][0]
        raise _fail(text, i, "Unmatched end tag", f', expected "</{expected}>", found "</{name}>"')
    else:
        open_tags.pop()
    return tag.end()


def _markdown_v2(text: str) -> str:
    out: list[str] = []
    open_markers: list[tuple[str, int]] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and 0 < ord(text[i + 1]) < 127:
            out.append(text[i + 1])
            i += 2
        elif char == "`":
            i = _markdown_v2_code(text, i, out)
        elif char == "]" and open_markers and open_markers[-1][0] == "[":
            open_markers.pop()
            i = _markdown_v2_url(text, i + 1)
        elif (char == ">" and (i == 0 or text[i - 1] == "\n")) or text.startswith("![", i):
            i += 1  # a blockquote line, or the "!" of a custom emoji link
        else:
            i = _markdown_v2_marker(text, i, open_markers, out)
    if open_markers:
        marker, start = open_markers[-1]
        raise _fail(text, start, f"Can't find end of {_MDV2_MARKERS[marker]} entity")
    return "".join(out)


def _markdown_v2_marker(
    text: str, i: int, open_markers: list[tuple[str, int]], out: list[str]
) -> int:
    pair = text[i : i + 2]
    marker = pair if pair in ("__", "||") else text[i]
    if marker not in _MDV2_MARKERS:
        if marker in _MDV2_RESERVED:
            raise EntityParseError(
                f"can't parse entities: Character '{marker}' is reserved and must be escaped "
                "with the preceding '\\'"
            )
        out.append(marker)
    elif open_markers and open_markers[-1][0] == marker and marker != "[":
        open_markers.pop()
    elif any(open_marker == marker for open_marker, _ in open_markers):
        raise _fail(text, i, f"Can't find end of {_MDV2_MARKERS[marker]} entity")
    else:
        open_markers.append((marker, i))
    return i + len(marker)


def _markdown_v2_code(text: str, start: int, out: list[str]) -> int:
    fence = "```" if text.startswith("```", start) else "`"
    content: list[str] = []
    i = start + len(fence)
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            content.append(text[i + 1])
            i += 2
        elif text.startswith(fence, i):
            code = "".join(content)
            first, newline, rest = code.partition("\n")
            if fence == "```" and newline and first and " " not in first:
                code = rest  # the first line names the language
            out.append(code)
            return i + len(fence)
        else:
            content.append(text[i])
            i += 1
    raise _fail(text, start, f"Can't find end of {'Pre' if fence == '```' else 'Code'} entity")


def _markdown_v2_url(text: str, i: int) -> int:
    if not text.startswith("(", i):
        raise _fail(text, i, "Can't find end of TextUrl entity")
    j = i + 1
    while j < len(text):
        if text[j] == "\\":
            j += 2
        elif text[j] == ")":
            return j + 1
        else:
            j += 1
    raise _fail(text, i, "Can't find end of a URL")


def _markdown(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and text[i + 1 : i + 2] in ("_", "*", "`", "["):
            out.append(text[i + 1])
            i += 2
        elif char in "*_`":
            end = text.find(char, i + 1)
            if end < 0:
                raise _fail(text, i, "Can't find end of the entity starting")
            out.append(text[i + 1 : end])
            i = end + 1
        elif char == "[":
            link = _LEGACY_LINK.match(text, i)
            if link is None:
                raise _fail(text, i, "Can't find end of the entity starting")
            out.append(link.group(1))
            i = link.end()
        else:
            out.append(char)
            i += 1
    return "".join(out)
