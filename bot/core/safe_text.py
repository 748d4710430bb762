"""Text from outside, shown to staff with its invisible controls made visible.

A customer's name or message can carry control characters, terminal escapes (ESC [ 2 J clears
a terminal that shows a log) or Unicode direction overrides: U+202E before "gnp.exe" makes it
read "exe.png", and isolates can make a line say something it does not. Staff-facing text
shows each such character as a visible token instead, so what staff read is what was written.
The store always keeps the original text; this is for display only.

- C0 controls and DEL become their Unicode control pictures (ESC -> "␛", BEL -> "␇"), so an
  escape sequence stays readable as a whole ("␛[2J"); newline and tab are kept.
- C1 controls and bidi controls become "⟨U+202E⟩".
"""

from __future__ import annotations

_KEPT = frozenset({ord("\n"), ord("\t")})
_C0 = [code for code in range(0x20) if code not in _KEPT]
_C1 = list(range(0x80, 0xA0))
BIDI_CONTROLS = frozenset({0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)})
"""Arabic letter mark, LRM/RLM, embeddings and overrides (U+202A-E), isolates (U+2066-9)."""

_TABLE: dict[int, str] = {
    **{code: chr(0x2400 + code) for code in _C0},
    0x7F: "\u2421",  # ␡
    **{code: f"⟨U+{code:04X}⟩" for code in (*_C1, *sorted(BIDI_CONTROLS))},
}
_LINE_BREAKS = {ord("\n"): "⏎", 0x2028: "⏎", 0x2029: "⏎", ord("\t"): " "}


def visible(text: str) -> str:
    """`text` with every control and direction override shown as a visible token."""
    return text.translate(_TABLE)


def visible_line(text: str) -> str:
    """For a field that is one line (a name, a title, a quoted message in a list): line breaks
    become "⏎" too, so the text cannot start a line of its own that looks like ours."""
    return visible(text).translate(_LINE_BREAKS)
