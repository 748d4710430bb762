"""The shipped sample knowledge base answers its labelled questions (recall of the search).

The floors sit just under what was measured when they were set (45 questions; SQLite:
recall@1 0.956, recall@3 1.0; PostgreSQL: recall@1 0.933, recall@3 0.978), so a change that
makes search worse fails here; `python -m bench.kb` prints the figures and the misses.
"""

from __future__ import annotations

from agents.kb import import_paths
from bench.kb import KB_DIR, evaluate, load_questions
from bot.store.db import Database

RECALL_AT_1_FLOOR = 0.9
RECALL_AT_3_FLOOR = 0.95


def test_every_question_names_a_shipped_article() -> None:
    questions = load_questions()
    assert len(questions) >= 30
    assert {q.article for q in questions} <= {
        p.relative_to(KB_DIR).as_posix() for p in KB_DIR.iterdir() if p.name != "questions.yaml"
    }


async def test_the_sample_questions_find_their_articles(db: Database) -> None:
    report = await import_paths(db, [KB_DIR])
    assert report.count("added") >= 10

    result = await evaluate(db, load_questions())

    misses = "\n".join(f"{q!r}: expected {a}, found {f}" for q, a, f in result.misses)
    assert result.recall_at_3 >= RECALL_AT_3_FLOOR, misses
    assert result.recall_at_1 >= RECALL_AT_1_FLOOR, misses
