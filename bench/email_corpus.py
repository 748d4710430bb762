"""Real reply emails: is anything the sender wrote lost, is any quoted history left in?

The corpus is `tests/fixtures/email_corpus/`: reply emails from two public test corpora
(talon's, Apache-2.0; the email_reply_parser family's, MIT; its README names them), each
labelled by hand in `labels.yaml` with the passages the sender wrote and passages of the
history they quote. Every email goes through the real intake (`parse_email`, then
`inbound_of`, which makes the stored text) and is judged on that stored text:

- lost: a passage the sender wrote is missing;
- quoted left in: a passage of the quoted history is there although the cut was trusted;
- kept whole: the parse was unsure, so the whole text was stored on purpose (quoted history
  then stays, by design: see `channels/email/reply.py`).

Usage:

    python -m bench.email_corpus [--json PATH] [--show]

`--show` prints each email's stored text. tests/channels/test_email_corpus.py holds lost and
quoted-left-in to 0.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from bench.results_io import Collector, write_results
from channels.email.intake import inbound_of
from channels.email.loops import classify
from channels.email.parse import ParsedEmail, parse_email

BENCHMARK = "email_corpus"
CORPUS_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "email_corpus"
LABELS = CORPUS_DIR / "labels.yaml"
OWN_ADDRESS = "sales@crm.test"
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Label:
    """One corpus email and what its sender wrote."""

    path: str
    """Relative to the corpus directory: an .eml message, or an .html or .txt body."""
    said: tuple[str, ...]
    quoted: tuple[str, ...] = ()
    either: tuple[str, ...] = ()
    transfer_encoding: str = "7bit"


@dataclass(frozen=True, slots=True)
class Judged:
    """One email's stored text against its label."""

    label: Label
    stored: str
    cut: str
    lost: tuple[str, ...]
    left_in: tuple[str, ...]
    """Quoted passages found in the stored text, whatever the cut."""

    @property
    def kept_whole(self) -> bool:
        return self.cut == "kept_whole"

    @property
    def quoted_left_in(self) -> tuple[str, ...]:
        """Quoted passages left in although the cut was trusted."""
        return () if self.kept_whole else self.left_in


@dataclass
class Report:
    judged: list[Judged] = field(default_factory=list)

    @property
    def lost(self) -> list[Judged]:
        return [j for j in self.judged if j.lost]

    @property
    def quoted_left_in(self) -> list[Judged]:
        return [j for j in self.judged if j.quoted_left_in]

    @property
    def kept_whole(self) -> list[Judged]:
        return [j for j in self.judged if j.kept_whole]


@cache
def load_labels() -> tuple[Label, ...]:
    entries = yaml.safe_load(LABELS.read_text(encoding="utf-8"))
    return tuple(
        Label(
            path=path,
            said=tuple(entry["said"]),
            quoted=tuple(entry.get("quoted", ())),
            either=tuple(entry.get("either", ())),
            transfer_encoding=entry.get("transfer_encoding", "7bit"),
        )
        for path, entry in entries.items()
    )


def raw_message(label: Label) -> bytes:
    """The email as the mailbox would hand it over: a bare body gets minimal headers."""
    data = (CORPUS_DIR / label.path).read_bytes()
    if label.path.endswith(".eml"):
        return data
    subtype = "html" if label.path.endswith(".html") else "plain"
    head = (
        f"From: Sender <sender@corpus.test>\r\nTo: {OWN_ADDRESS}\r\nSubject: Re: corpus\r\n"
        "Message-ID: <reply@corpus.test>\r\nIn-Reply-To: <ours@crm.test>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/{subtype}; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: {label.transfer_encoding}\r\n\r\n"
    )
    return head.encode() + data


def stored(raw: bytes) -> tuple[ParsedEmail, str]:
    """What the email intake stores as the message text."""
    parsed = parse_email(raw)
    verdict = classify(parsed, frozenset({OWN_ADDRESS}))
    return parsed, inbound_of(parsed, verdict, "corpus").text


def contains(text: str, passage: str) -> bool:
    """`passage` is in `text` as whole words, whatever the whitespace."""
    flat, wanted = _SPACES.sub(" ", text), _SPACES.sub(" ", passage).strip()
    return re.search(rf"(?<!\w){re.escape(wanted)}(?!\w)", flat) is not None


def judge(label: Label) -> Judged:
    parsed, text = stored(raw_message(label))
    return Judged(
        label=label,
        stored=text,
        cut=parsed.cut,
        lost=tuple(p for p in label.said if not contains(text, p)),
        left_in=tuple(p for p in label.quoted if contains(text, p)),
    )


def evaluate(labels: tuple[Label, ...] | None = None) -> Report:
    return Report([judge(label) for label in labels or load_labels()])


def _print_report(report: Report, show: bool) -> None:
    for judged in report.judged:
        marks = [f"lost {list(judged.lost)}"] if judged.lost else []
        if judged.quoted_left_in:
            marks.append(f"quoted left in {list(judged.quoted_left_in)}")
        if judged.kept_whole:
            marks.append("kept whole")
        if marks or show:
            print(f"{judged.label.path}: {'; '.join(marks) or 'ok'}")
        if show:
            print("    " + judged.stored.replace("\n", "\n    "))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the figures as JSON records to this file")
    parser.add_argument("--show", action="store_true", help="print every stored text")
    parser.add_argument("--quick", action="store_true", help="accepted for bench.run; no effect")
    parser.add_argument("--database-url", help="accepted for bench.run; no database is used")
    args = parser.parse_args(argv)
    report = evaluate()
    _print_report(report, args.show)
    total = len(report.judged)
    print(f"{total} real reply emails ({CORPUS_DIR.name}):")
    collector = Collector(BENCHMARK, None, number_format=",.0f")
    collector.add("corpus", "emails", total, "", None)
    collector.add("corpus", "sender_text_lost", len(report.lost), "emails", "0")
    collector.add("corpus", "quoted_history_left_in", len(report.quoted_left_in), "emails", "0")
    collector.add("corpus", "kept_whole_unsure", len(report.kept_whole), "emails", None)
    write_results(args.json, collector.records)


if __name__ == "__main__":
    main()
