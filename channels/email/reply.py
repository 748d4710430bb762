"""The new part of a reply: quoted history, reply headers and signatures cut, and nothing else.

Losing what a customer wrote is worse than keeping a quote, so a line goes only on a mark
the mail client left, never on a guess about what text looks like:

- lines quoted with `>` (a quote between two parts the sender wrote, as in answers written
  under the questions they answer, stays as context: an answer means little without it);
- a reply header and what it heads: "On ... wrote:" in a dozen languages (mail-parser-reply's
  patterns, and headers a client broke over three lines), "-----Original Message-----", a
  block of From/Sent/To/Subject lines (on one line or several, in a dozen languages), and the
  attribution line just above the first quote ("02.04.2012 14:20 ... <bob@example.com>:");
- a signature: after a "-- " line, a "Sent from my iPhone" line, a sign-off such as "Best,"
  followed only by a name and a title, a "--Name" line, a mailing-list footer.

Text below a quote (bottom-posting) is kept, and so are lists, indented lines and lines that
start with dashes. A forwarded message is never cut. When the parse is unsure the whole text
is kept (`Cut.KEPT_WHOLE`): when nothing would be left, and when a header the sender may have
written themselves (two From/To-like lines, or a header right after their own "see below:")
would remove more unquoted text than the part kept.
"""

from __future__ import annotations

import bisect
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from mailparser_reply.constants import MAIL_LANGUAGES

log = logging.getLogger("channels.email")

QUOTE_LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pl", "sv", "da", "cs", "ja", "ko", "zh")
"""Languages whose reply headers, sign-offs and "sent from" lines mail-parser-reply knows."""
REPLY_WINDOW = 100_000
"""Characters of a body read for its reply (a stored text is shorter still)."""
CONTEXT_QUOTE_LINES = 12
"""A quote between two parts the sender wrote is kept up to this many lines."""
SIGNATURE_LINES = 10
"""Lines after a "-- " delimiter beyond which it is text, not a signature."""


class Cut(StrEnum):
    """What was cut from a body."""

    NONE = "none"
    """Nothing: the text is all the sender's."""
    HISTORY = "history"
    """Quoted history, reply headers or a signature, at marks the mail client left."""
    KEPT_WHOLE = "kept_whole"
    """The parse was unsure, so the whole text is kept."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A body split into what the sender wrote and what it carried along."""

    new: str
    """The part the sender wrote (the whole text when `cut` is `KEPT_WHOLE`)."""
    cut: Cut


def split_reply(text: str) -> Reply:
    """What the sender wrote in `text`, or all of `text` when that cannot be told. Never
    raises."""
    window = text[:REPLY_WINDOW]
    whole = text.strip()
    if not window.strip():
        return Reply(whole, Cut.NONE)
    try:
        body = _Body(window.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
        kept, unsure = body.kept_lines()
    except Exception:  # a bug here must cost a quote, never the message
        log.exception("a reply could not be split; keeping its whole text")
        return Reply(whole, Cut.KEPT_WHOLE)
    new = _joined(kept)
    if not new or unsure > len(new):
        return Reply(whole, Cut.KEPT_WHOLE)
    same = _SPACES.sub(" ", new) == _SPACES.sub(" ", whole)
    return Reply(new, Cut.NONE if same else Cut.HISTORY)


def strip_reply(text: str) -> str:
    """The newest reply in `text`: quoted history, reply headers and signature cut."""
    return split_reply(text).new


# Patterns -----------------------------------------------------------------------------------

_SPACES = re.compile(r"\s+")
_WROTE_VERBS = (
    r"wrote|writes|schrieb|a écrit|escribió|ha scritto|skrev|schreef|napisał(?:\(a\))?|"
    r"napsal(?:\(a\))?|написал(?:а|\(а\))?|пишет|kirjoitti|escreveu|írta|yazdı"
)
_WROTE_END = re.compile(rf"(?:^|[\s>\"')])(?:{_WROTE_VERBS})\s*:$", re.IGNORECASE)
_HEADER_OPENER = re.compile(
    r"^(?:[-\s]*(?:On|Le|Am|El|Il|Op|Den|Dne|Dnia|Em|W dniu|В|Il giorno)\s|\d)", re.IGNORECASE
)
_LIBRARY_WROTE = re.compile(
    "|".join(
        f"(?:{MAIL_LANGUAGES[lang]['wrote_header']})"
        for lang in QUOTE_LANGUAGES
        if MAIL_LANGUAGES.get(lang, {}).get("wrote_header")
    ),
    re.MULTILINE | re.IGNORECASE,
)
_FROM_FIELDS = r"From|Von|De|Da|Van|Från|Fra|Od|От|От кого|Lähettäjä"
_OTHER_FIELDS = (
    r"Sent|To|Subject|Date|Cc|Bcc|Reply-To|Gesendet|An|Betreff|Datum|Envoyé|À|Objet|Inviato|A|"
    r"Oggetto|Ogg|Data|Enviado|Enviada em|Para|Asunto|Assunto|Fecha|Verzonden|Aan|Onderwerp|"
    r"Skickat|Till|Ämne|Sendt|Til|Emne|Dato|Odesláno|Komu|Předmět|Отправлено|Кому|Тема|Дата|"
    r"Копия|Wysłano|Do|Temat"
)
_FIELD = re.compile(rf"^[*\s]*({_FROM_FIELDS}|{_OTHER_FIELDS})[ \t]*\*?:\*?(?:\s|$)", re.IGNORECASE)
_FROM_FIELD = re.compile(rf"^(?:{_FROM_FIELDS})$", re.IGNORECASE)
_INLINE_FIELDS = re.compile(r"(?:^|\s)(From|Date|To|Subject|Sent|Cc):\s", re.IGNORECASE)
_ORIGINAL = re.compile(
    r"^-{2,}\s*(?:Original Message|Ursprüngliche Nachricht|Message d'origine|Mensaje original|"
    r"Messaggio originale|Oorspronkelijk bericht|Oprindelig meddelelse|Ursprungligt meddelande|"
    r"Исходное сообщение|Původní zpráva|Wiadomość oryginalna)\s*-{2,}$",
    re.IGNORECASE,
)
_FORWARD = re.compile(
    r"^(?:-{2,}\s*(?:Forwarded message|Weitergeleitete Nachricht|Message transféré|"
    r"Mensaje reenviado|Messaggio inoltrato|Doorgestuurd bericht|Пересланное сообщение)\s*-{2,}|"
    r"Begin forwarded message:|Anfang der weitergeleiteten Nachricht:|"
    r"Début du message réexpédié :?)$",
    re.IGNORECASE,
)
_SEPARATOR = re.compile(r"^[-_=*]{5,}$")
_LIST_ITEM = re.compile(r"^(?:[-*•–·+]|\d{1,3}[.)])\s")
_HYPHEN_NAME = re.compile(r"^[-–—]{1,2} ?[^\W\d][\w.'’-]*(?: [^\W\d][\w.'’-]*){0,2}$")
_SENT_FROM = re.compile(
    "^(?:"
    + "|".join(
        [p for lang in QUOTE_LANGUAGES if (p := MAIL_LANGUAGES[lang].get("sent_from"))]
        + [
            "Sent with",
            "Sent from Mail for",
            "Sent from Yahoo Mail",
            "Inviato da",
            "Envoyé de mon",
            "Von meinem",
            "Enviado desde",
            "Enviado do meu",
            "Отправлено с",
        ]
    )
    + r")\b",
    re.IGNORECASE,
)
_SIGN_OFF = re.compile(
    "^(?:"
    + "|".join(
        [s for lang in QUOTE_LANGUAGES for s in MAIL_LANGUAGES[lang].get("signatures", ()) if s]
        + ["Thanks", "Thank you", "Many thanks", "Cheers", "Regards", "Best", "Best wishes"]
        + ["Warm regards", "Sincerely", "Yours", "С уважением", "Спасибо", "Grüße", "Merci"]
    )
    + r")(?!\w)[\s,.!]*(?:\S+\s*){0,3}$",
    re.IGNORECASE,
)
_FOOTER_SEPARATOR = re.compile(r"^_{20,}$")
_FOOTER_HINT = re.compile(r"https?://|@|mailing list|unsubscribe", re.IGNORECASE)


# Lines and spans ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Span:
    """A reply header: lines [start, end)."""

    start: int
    end: int
    strong: bool
    """False for a bare two-line From/To block, which a customer may have typed or pasted."""


class _Body:
    """A body's lines, and the decisions about each of them."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.bare = [line.strip() for line in lines]
        self.quoted = [b.startswith(">") for b in self.bare]
        self.limit = next((i for i, b in enumerate(self.bare) if _FORWARD.match(b)), len(lines))
        self.headers = {s.start: s for s in _merged(self._header_spans())}
        self.unsure = 0
        """Unquoted characters under a header that may have been the sender's own."""

    def kept_lines(self) -> tuple[list[str], int]:
        """The lines to keep, and how many unquoted characters an unsure cut removed."""
        segments = _trimmed([self._trim_signature(s) for s in self._segments()])
        news = [i for i, (kind, _) in enumerate(segments) if kind == "new"]
        kept: list[str] = []
        for index, (kind, lines) in enumerate(segments):
            if kind == "new":
                kept += lines
            elif kind == "quote" and news and index < news[-1] and (news[0] < index or news[1:]):
                kept += _context(lines)  # between answers: what they answer
        kept += self.lines[self.limit :]
        return kept, self.unsure

    # Segments: runs of new text, quotes, and the history under a header.

    def _segments(self) -> list[tuple[str, list[str]]]:
        segments: list[tuple[str, list[str]]] = []
        i = 0
        while i < self.limit:
            span = self.headers.get(i)
            if span is not None:
                i = self._after_header(span, segments)
            elif self.quoted[i]:
                end = self._quote_end(i)
                segments.append(("quote", self.lines[i:end]))
                i = end
            else:
                end = self._text_end(i)
                segments.append(("new", self.lines[i:end]))
                i = end
        return segments

    def _after_header(self, span: _Span, segments: list[tuple[str, list[str]]]) -> int:
        segments.append(("header", self.lines[span.start : span.end]))
        i = span.end
        while i < self.limit and not self.bare[i]:
            i += 1
        if i < self.limit and self.quoted[i]:
            end = self._quote_end(i)
            segments.append(("quote", self.lines[i:end]))
            return end
        # History without quote marks (Outlook's style) runs to the end of the body. It may
        # be the sender's after all: a header they typed, or text they paste after a colon.
        if not span.strong or self._introduces(span.start):
            self.unsure += sum(len(b) for b in self.bare[i : self.limit])
        segments.append(("history", self.lines[i : self.limit]))
        return self.limit

    def _introduces(self, start: int) -> bool:
        """Whether the text above line `start` ends with a colon ("see the mail below:")."""
        above = next((j for j in range(start - 1, -1, -1) if self.bare[j]), None)
        return above is not None and not self.quoted[above] and self.bare[above].endswith(":")

    def _quote_end(self, i: int) -> int:
        j = i
        while j < self.limit and j not in self.headers:
            if not (self.quoted[j] or not self.bare[j] or self._continues_quote(j)):
                break
            j += 1
        while j > i and not self.bare[j - 1]:
            j -= 1
        return j

    def _continues_quote(self, j: int) -> bool:
        """A quoted line's wrapped tail that lost its ">" (some clients re-wrap quotes)."""
        before, after = j - 1, j + 1
        return (
            before >= 0
            and after < self.limit
            and self.quoted[before]
            and self.quoted[after]
            and len(self.bare[before]) >= 60
            and self.bare[j][:1].islower()
        )

    def _text_end(self, i: int) -> int:
        j = i + 1
        while j < self.limit and not self.quoted[j] and j not in self.headers:
            j += 1
        return j

    # Signatures, at the end of each part the sender wrote.

    def _trim_signature(self, segment: tuple[str, list[str]]) -> tuple[str, list[str]]:
        kind, lines = segment
        if kind != "new":
            return segment
        bare = [line.strip() for line in lines]
        filled = [i for i, b in enumerate(bare) if b]
        # Every kind of signature has at most SIGNATURE_LINES lines under its first one.
        for rank, i in enumerate(filled[-SIGNATURE_LINES - 1 :]):
            below = [bare[j] for j in filled[-SIGNATURE_LINES - 1 :][rank + 1 :]]
            if _starts_signature(lines[i], bare, i, below):
                return kind, lines[:i]
        return segment

    # Headers.

    def _header_spans(self) -> Iterator[_Span]:
        for i in range(self.limit):
            if _ORIGINAL.match(self.bare[i]) and not self.quoted[i]:
                yield _Span(i, i + 1, strong=True)
        yield from self._wrote_headers()
        yield from self._library_headers()
        yield from self._field_blocks()
        yield from self._attribution()

    def _wrote_headers(self) -> Iterator[_Span]:
        for i in range(self.limit):
            if self.quoted[i] or not _WROTE_END.search(self.bare[i]):
                continue
            start = self._header_start(i)
            if re.search(r"\d|@", " ".join(self.bare[start : i + 1])):
                yield _Span(start, i + 1, strong=True)

    def _header_start(self, i: int) -> int:
        """Where a reply header ending on line `i` starts: the line itself, or up to two
        lines above when it is the tail of a header the sender's client broke ("<a@b.c>
        wrote:") and a line there opens one ("On ...", a date)."""
        if _HEADER_OPENER.match(self.bare[i]):
            return i
        for start in range(i - 1, max(i - 3, -1), -1):
            bare = self.bare[start]
            if not bare or self.quoted[start] or len(bare) > 120 or bare[-1] in ".!?:":
                break
            if _HEADER_OPENER.match(bare):
                return start
        return i

    def _library_headers(self) -> Iterator[_Span]:
        joined = "\n".join(self.bare[: self.limit])
        starts = list(_offsets(self.bare[: self.limit]))
        for match in _LIBRARY_WROTE.finditer(joined):
            first = bisect.bisect_right(starts, match.start()) - 1
            last = bisect.bisect_right(starts, max(match.end() - 1, match.start())) - 1
            # The patterns may take in the line above; a sentence there is not a header's.
            if not self.quoted[first] and (first == last or self.bare[first][-1:] not in ".,!?;:"):
                yield _Span(first, last + 1, strong=True)

    def _field_blocks(self) -> Iterator[_Span]:
        i = 0
        while i < self.limit:
            if self.quoted[i]:
                i += 1
                continue
            if _inline_fields(self.bare[i]):
                yield _Span(self._separator_above(i), i + 1, strong=True)
                i += 1
                continue
            end = i
            while end < self.limit and not self.quoted[end] and _FIELD.match(self.bare[end]):
                end += 1
            names = [m.group(1) for m in map(_FIELD.match, self.bare[i:end]) if m]
            if end - i >= 2 and any(_FROM_FIELD.match(n.strip()) for n in names):
                start = self._separator_above(i)
                strong = end - i >= 3 or start < i or self._quote_below(end)
                yield _Span(start, end, strong)
            i = max(end, i + 1)

    def _separator_above(self, i: int) -> int:
        j = i - 1
        while j >= 0 and not self.bare[j]:
            j -= 1
        if j >= 0 and (_SEPARATOR.match(self.bare[j]) or _ORIGINAL.match(self.bare[j])):
            return j
        return i

    def _quote_below(self, end: int) -> bool:
        j = end
        while j < self.limit and not self.bare[j]:
            j += 1
        return j < self.limit and self.quoted[j]

    def _attribution(self) -> Iterator[_Span]:
        """The line(s) just above the first quote that introduce it: "<date> <name>:"."""
        first = next((i for i in range(self.limit) if self.quoted[i]), None)
        if first is None:
            return
        end = first
        while end > 0 and not self.bare[end - 1]:
            end -= 1
        if end == 0 or self.quoted[end - 1]:
            return
        start = self._header_start(end - 1)
        head = " ".join(self.bare[start:end])
        if head.endswith(":") and re.search(r"\d|@", head):
            yield _Span(start, end, strong=True)


def _offsets(lines: list[str]) -> Iterator[int]:
    offset = 0
    for line in lines:
        yield offset
        offset += len(line) + 1


def _merged(spans: Iterable[_Span]) -> list[_Span]:
    """Overlapping header spans as one (the strongest reading wins)."""
    merged: list[_Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if merged and span.start < merged[-1].end:
            last = merged[-1]
            merged[-1] = _Span(last.start, max(last.end, span.end), last.strong or span.strong)
        else:
            merged.append(span)
    return merged


def _inline_fields(bare: str) -> bool:
    """A header flattened into one line: "Date: ... From: ... To: ... Subject: ..."."""
    names = {m.group(1).lower() for m in _INLINE_FIELDS.finditer(bare)}
    return len(names) >= 3 and "from" in names


# Signatures ---------------------------------------------------------------------------------


def _starts_signature(raw: str, bare: list[str], i: int, below: list[str]) -> bool:
    """Whether the signature starts on line `i` of a part, `below` being the filled lines
    under it."""
    line = bare[i]
    if line == "--":
        if raw.rstrip("\n") == "-- ":  # RFC 3676's delimiter: meant as one
            return len(below) <= SIGNATURE_LINES
        return len(below) <= 6 and not any(_LIST_ITEM.match(b) or b[-1] in "?" for b in below)
    if _FOOTER_SEPARATOR.match(line):
        return 0 < len(below) <= 5 and any(_FOOTER_HINT.search(b) for b in below)
    if _SENT_FROM.match(line) and len(line.split()) <= 7 and "," not in line:
        return _name_lines(below)
    if any(bare[:i]) and _SIGN_OFF.match(line) and len(line) <= 40:
        return bool(below) and _name_lines(below)
    if _HYPHEN_NAME.match(line) and i > 0 and not below:
        above = [b for b in bare[:i] if b]
        return bool(above) and not bare[i - 1] and not _LIST_ITEM.match(above[-1])
    return False


def _name_lines(lines: list[str]) -> bool:
    """Lines that can be a name, a title or a company: short, no sentence, no list."""
    return len(lines) <= 4 and all(
        len(b) <= 50
        and len(b.split()) <= 6
        and not b[0].islower()
        and b[-1] not in "?!:"
        and not _LIST_ITEM.match(b)
        for b in lines
    )


# Assembly -----------------------------------------------------------------------------------


def _trimmed(segments: list[tuple[str, list[str]]]) -> list[tuple[str, list[str]]]:
    """Segments without the parts that became empty."""
    return [(k, lines) for k, lines in segments if any(line.strip() for line in lines)]


def _context(lines: list[str]) -> list[str]:
    """A quote the sender answered below, kept short: the answer needs its question."""
    content = [line for line in lines if line.strip().lstrip(">").strip()]
    if len(content) > CONTEXT_QUOTE_LINES:
        content = [*content[: CONTEXT_QUOTE_LINES - 1], "> […]"]
    return ["", *content, ""]


def _joined(lines: list[str]) -> str:
    text = "\n".join(line.rstrip() for line in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n").strip()
