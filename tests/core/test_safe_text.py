"""Controls and direction overrides in outside text are shown, never acted on."""

from __future__ import annotations

import pytest

from bot.core.safe_text import BIDI_CONTROLS, visible, visible_line


def test_plain_text_newlines_and_tabs_are_unchanged() -> None:
    text = "Hi Ann,\n\tyour invoice #4471 — 12 € ✓ שלום مرحبا"
    assert visible(text) == text


def test_c0_controls_become_control_pictures() -> None:
    assert visible("a\x00b\x07c\x08d\re\x7f") == "a␀b␇c␈d␍e␡"


def test_an_ansi_escape_sequence_is_visible_as_a_whole() -> None:
    assert visible("\x1b[31mred\x1b[0m \x1b[2J") == "␛[31mred␛[0m ␛[2J"
    assert visible("\x1b]0;title\x07") == "␛]0;title␇"


def test_c1_controls_are_shown_by_code_point() -> None:
    assert visible("a\x9b31mb\x85c") == "a⟨U+009B⟩31mb⟨U+0085⟩c"


@pytest.mark.parametrize("code", sorted(BIDI_CONTROLS))
def test_every_direction_control_is_shown_by_code_point(code: int) -> None:
    assert visible(f"x{chr(code)}y") == f"x⟨U+{code:04X}⟩y"


def test_the_listed_direction_controls_are_all_covered() -> None:
    expected = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}
    assert expected == BIDI_CONTROLS


def test_an_override_cannot_reverse_a_file_name() -> None:
    assert visible("Ann\u202egnp.exe") == "Ann⟨U+202E⟩gnp.exe"


def test_a_one_line_field_cannot_start_a_line_of_its_own() -> None:
    assert visible_line("Ann\nWhy: VIP\u2028Deal:\tx\x1b") == "Ann⏎Why: VIP⏎Deal: x␛"
