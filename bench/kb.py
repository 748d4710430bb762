"""Knowledge-base search: recall of the labelled questions, and search latency.

Imports the shipped sample knowledge base (`agents/templates/kb/`) into a scratch database
made by the project's migrations, then asks each question of `questions.yaml` and measures:

- recall@1 and recall@3: the share of questions whose labelled article is the first hit, or
  among the first three hits (hits are passages; an article counts once it has one);
- the share of answers the support agent sends, drafts for staff or hands off, on those
  questions and on questions the sample cannot answer (`bench.kb_answers`);
- p50 and p99 of one search (`bot.store.kb.search`, limit 3, in its own read session) over
  every question, on the sample (about 70 chunks) and on the sample copied `--copies` times
  (default 50, `--quick` 10), where recall means nothing but latency shows how it scales
  (on PostgreSQL after an ANALYZE, as autovacuum would run after such an import).

Usage:

    python -m bench.kb [--database-url URL] [--json PATH] [--quick] [--copies N]

tests/agents/test_kb_recall.py holds the same recall to a floor on both databases.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from sqlalchemy import text

from agents.definition import TEMPLATES_DIR
from agents.kb import article_files, import_paths, read_article
from bench.concurrency import backend_of, scratch_database
from bench.kb_answers import OUTCOMES, answer_all, outside_questions
from bench.results_io import Collector, Record, write_results
from bot.store import kb
from bot.store.db import Database

BENCHMARK = "kb"
KB_DIR = TEMPLATES_DIR / "kb"
KB_BASE = KB_DIR.resolve().as_posix()
"""Where the sample's articles are stored from: their paths start with it."""
QUESTIONS = KB_DIR / "questions.yaml"
RECALL_1_TARGET, RECALL_3_TARGET = ">= 0.9", ">= 0.95"
LATENCY_TARGET, SCALED_LATENCY_TARGET = "< 25", "< 50"
"""p99 of one search: the sample, and the sample copied (a few thousand chunks)."""
ROUNDS, QUICK_ROUNDS = 5, 2


@dataclass(frozen=True, slots=True)
class Question:
    """A customer question and the article (a path relative to the KB directory) answering it."""

    text: str
    article: str


@dataclass
class Evaluation:
    """How the search did on a question set."""

    questions: int = 0
    first: int = 0
    top3: int = 0
    misses: list[tuple[str, str, list[str]]] = field(default_factory=list)
    """(question, expected article, the articles of the first three hits), missed at 3."""
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def recall_at_1(self) -> float:
        return self.first / self.questions if self.questions else math.nan

    @property
    def recall_at_3(self) -> float:
        return self.top3 / self.questions if self.questions else math.nan


def load_questions(path: Path = QUESTIONS) -> list[Question]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [Question(item["q"], item["article"]) for item in data["questions"]]


async def article_names(db: Database, base: str) -> dict[int, str]:
    """Stored article id -> its path relative to the directory `base` (as questions name them)."""
    async with db.reading() as session:
        articles = await kb.list_articles(session)
    return {a.id: a.path.removeprefix(base.rstrip("/") + "/") for a in articles}


async def timed_search(db: Database, query: str, limit: int) -> tuple[list[kb.Hit], float]:
    started = time.perf_counter()
    async with db.reading() as session:
        hits = await kb.search(session, query, limit)
    return hits, (time.perf_counter() - started) * 1000


async def evaluate(db: Database, questions: list[Question], base: str = KB_BASE) -> Evaluation:
    """Ask every question of articles imported from the directory `base` once: recall at 1
    and 3 (and the latencies of these searches)."""
    names = await article_names(db, base)
    result = Evaluation(questions=len(questions))
    for question in questions:
        hits, ms = await timed_search(db, question.text, 3)
        found = [names.get(h.article_id, "?") for h in hits]
        result.latencies_ms.append(ms)
        result.first += found[:1] == [question.article]
        if question.article in found:
            result.top3 += 1
        else:
            result.misses.append((question.text, question.article, found))
    return result


async def measure_answers(url: str, db: Database, questions: list[Question], out: Results) -> None:
    """The support agent's outcomes (bench.kb_answers) on answerable and outside questions."""
    async with db.reading() as session:
        articles = await kb.list_articles(session)
    titles = {a.path.removeprefix(KB_BASE + "/"): a.title for a in articles}
    answerable = await answer_all(url, [(q.text, q.article) for q in questions], titles, "labelled")
    outside = await answer_all(
        url, [(q, None) for q in outside_questions(QUESTIONS)], titles, "outside"
    )
    for case, shares in (
        (f"answerable questions ({answerable.asked})", answerable),
        (f"outside the kb ({outside.asked})", outside),
    ):
        for outcome in OUTCOMES:
            target = "0" if (shares is outside and outcome == "sent") else None
            out.add(case, f"share_{outcome}", shares.share(outcome), "", target)
    cited = answerable.cited_right / answerable.asked if answerable.asked else math.nan
    out.add(
        f"answerable questions ({answerable.asked})", "share_sent_citing_label", cited, "", None
    )


async def latencies(db: Database, questions: list[Question], rounds: int) -> list[float]:
    measured = []
    for _ in range(rounds):
        for question in questions:
            measured.append((await timed_search(db, question.text, 3))[1])
    return measured


async def add_copies(db: Database, copies: int) -> int:
    """Store the sample `copies` more times under made-up paths; the chunks now stored."""
    drafts = [read_article(p) for p in article_files(KB_DIR)]
    for n in range(copies):
        async with db.transaction() as session:
            for draft in drafts:
                copy = dataclasses.replace(draft, path=f"copy-{n}:{draft.path}")
                await kb.put_article(session, copy)
    async with db.reading() as session:
        return sum(a.chunks for a in await kb.list_articles(session))


async def analyze(db: Database) -> None:
    """On PostgreSQL, gather the planner's statistics, as autovacuum soon would after a bulk
    import (SQLite gets no ANALYZE: the app never runs one)."""
    if not db.is_sqlite:
        async with db.transaction() as session:
            await session.execute(text("ANALYZE kb_articles, kb_chunks"))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


@dataclass
class Results(Collector):
    """The knowledge-base figures: recall as ratios, latency as p50 and p99."""

    def add_latency(self, case: str, measured: list[float], target: str) -> None:
        self.add(case, "p50_ms", statistics.median(measured), "ms", None)
        self.add(case, "p99_ms", percentile(measured, 0.99), "ms", target)


async def measure(url: str, args: argparse.Namespace, out: Results) -> None:
    questions = load_questions()
    db = Database(url)
    try:
        await db.migrate()
        report = await import_paths(db, [KB_DIR])
        case = f"sample kb ({report.count('added')} articles, {len(questions)} questions)"
        evaluation = await evaluate(db, questions)
        out.add(case, "recall_at_1", evaluation.recall_at_1, "", RECALL_1_TARGET)
        out.add(case, "recall_at_3", evaluation.recall_at_3, "", RECALL_3_TARGET)
        for text, expected, found in evaluation.misses:
            print(f"    missed: {text!r}: expected {expected}, found {found}")
        await measure_answers(url, db, questions, out)
        rounds = QUICK_ROUNDS if args.quick else ROUNDS
        out.add_latency(case, await latencies(db, questions, rounds), LATENCY_TARGET)
        copies = args.copies if args.copies is not None else (10 if args.quick else 50)
        chunks = await add_copies(db, copies)
        await analyze(db)
        out.add_latency(
            f"sample kb x{copies + 1} ({chunks} chunks)",
            await latencies(db, questions, rounds),
            SCALED_LATENCY_TARGET,
        )
    finally:
        await db.dispose()


async def main(args: argparse.Namespace) -> list[Record]:
    backend = backend_of(args.database_url) if args.database_url else "sqlite"
    out = Results(BENCHMARK, backend, number_format=".3f")
    print(f"{backend}: knowledge-base search")
    async with scratch_database(args.database_url) as url:
        await measure(url, args, out)
    return out.records


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--json", default=None, help="write the records here")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and copies")
    parser.add_argument("--copies", type=int, default=None, help="copies for the scale case")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    write_results(arguments.json, asyncio.run(main(arguments)))
