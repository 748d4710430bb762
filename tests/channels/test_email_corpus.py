"""Real reply emails (tests/fixtures/email_corpus): nothing the sender wrote is lost.

Each email goes through the real intake (`parse_email`, then `inbound_of`) and its stored text
is held to the hand-made labels: every passage the sender wrote is there, and no passage of
the quoted history is, except where the parse was unsure and kept the whole text on purpose.
That allowance is capped at a tenth of the corpus (none of it is used today): keeping the
text whole trades a quote for the certainty that nothing is lost, and a parser that took the
trade for most mail would show the agent whole threads again. The quotes kept as context
between answers written inline are no history: the labels do not list them as quoted.
`python -m bench.email_corpus` prints the same figures and every stored text.
"""

from __future__ import annotations

import pytest

from bench.email_corpus import CORPUS_DIR, Label, evaluate, judge, load_labels

KEPT_WHOLE_ALLOWANCE = 0.1


def test_every_label_names_a_shipped_email_and_every_email_is_labelled() -> None:
    labels = load_labels()
    shipped = {
        p.relative_to(CORPUS_DIR).as_posix()
        for p in CORPUS_DIR.rglob("*")
        if p.suffix in (".eml", ".html", ".txt")
    }

    assert {label.path for label in labels} == shipped
    assert len(labels) >= 60
    assert all(label.said for label in labels)


@pytest.mark.parametrize("label", load_labels(), ids=lambda label: label.path)
def test_the_stored_text_keeps_every_passage_the_sender_wrote(label: Label) -> None:
    judged = judge(label)

    assert judged.lost == (), judged.stored
    assert judged.quoted_left_in == (), judged.stored


def test_the_whole_text_is_kept_for_at_most_a_tenth_of_the_corpus() -> None:
    report = evaluate()

    assert len(report.kept_whole) <= KEPT_WHOLE_ALLOWANCE * len(report.judged), [
        judged.label.path for judged in report.kept_whole
    ]
