"""The knowledge-base store: one search on SQLite FTS5 and PostgreSQL full text, same scores."""

from __future__ import annotations

import hashlib
import math

import pytest
from sqlalchemy import func, select

from bot.store import kb
from bot.store.db import Database
from bot.store.kb import ArticleDraft, Section
from bot.store.models import KbArticle, KbChunk


def draft(
    path: str, title: str, *sections: tuple[str, str], url: str | None = None
) -> ArticleDraft:
    body = "\n\n".join(text for _, text in sections)
    digest = hashlib.sha256(f"{title}\n{body}".encode()).hexdigest()
    return ArticleDraft(
        path=path,
        title=title,
        url=url,
        body=body,
        content_hash=digest,
        sections=tuple(Section(f"{title} › {h}" if h else title, t) for h, t in sections),
    )


REFUNDS = draft(
    "/kb/refunds.md",
    "Refunds",
    ("", "Annual plans cancelled within 30 days are refunded in full."),
    ("Monthly plans", "Monthly plans are not refunded for the rest of the month."),
    url="https://help.example.com/refunds",
)
PASSWORD = draft(
    "/kb/password.md",
    "Reset your password",
    ("", "Click Forgot password on the sign-in page; the link is valid for an hour."),
    ("No email", "Check the spam folder for the reset email, then ask for a new link."),
)
TELEGRAM = draft(
    "/kb/telegram.md",
    "Connect Telegram",
    ("", "Create a bot with BotFather and paste its token under Channels."),
)


async def put(db: Database, *drafts: ArticleDraft) -> list[str]:
    async with db.transaction() as session:
        return [(await kb.put_article(session, d))[1] for d in drafts]


async def search(db: Database, query: str, limit: int = 5) -> list[kb.Hit]:
    async with db.reading() as session:
        return await kb.search(session, query, limit)


async def test_the_article_about_the_question_comes_first(db: Database) -> None:
    await put(db, REFUNDS, PASSWORD, TELEGRAM)

    [best, *rest] = await search(db, "I never got the password reset email")

    assert (best.title, best.heading) == ("Reset your password", "Reset your password › No email")
    assert best.passage.startswith("Check the spam folder")
    assert all(hit.title == "Reset your password" for hit in rest)  # nothing else has the words
    refund = (await search(db, "Can I get a refund on my annual plan?", limit=1))[0]
    assert (refund.title, refund.url) == ("Refunds", "https://help.example.com/refunds")
    assert refund.article_id == (await ids(db))["/kb/refunds.md"]
    telegram = await search(db, "botfather token")
    assert [h.title for h in telegram] == ["Connect Telegram"] and telegram[0].score == 1.0


async def ids(db: Database) -> dict[str, int]:
    async with db.reading() as session:
        return {a.path: a.id for a in await kb.list_articles(session)}


async def test_stemming_finds_other_forms_of_a_word(db: Database) -> None:
    await put(db, REFUNDS, PASSWORD, TELEGRAM)
    hits = await search(db, "refunding cancellations")  # refunded, cancelled
    assert hits and hits[0].title == "Refunds"


def _idf(total: int, having: int) -> float:
    return math.log(1 + (total - having + 0.5) / (having + 0.5))


async def test_the_score_is_the_share_of_the_questions_words_weighted_by_rarity(
    db: Database,
) -> None:
    await put(db, REFUNDS, PASSWORD, TELEGRAM)  # five chunks
    # "monthly" is in one chunk (heading and text), "plans" in two, "zebra" in none.
    [hit] = await search(db, "monthly plans zebra", limit=1)
    monthly, plans, zebra = _idf(5, 1), _idf(5, 2), _idf(5, 0)
    assert hit.heading == "Refunds › Monthly plans"
    assert hit.score == round((monthly + plans) / (monthly + plans + zebra), 3)
    # The same numbers on either database: each counts the same words in the same chunks.
    assert hit.score == 0.476

    [full] = await search(db, "monthly plans", limit=1)
    assert full.score == 1.0


async def test_scores_lie_between_zero_and_one_and_unknown_words_lower_them(db: Database) -> None:
    await put(db, REFUNDS, PASSWORD, TELEGRAM)
    known = await search(db, "reset password link")
    unknown = await search(db, "reset password link for salesforce sandbox")
    assert all(0 < h.score <= 1 for h in known + unknown)
    assert known[0].score == 1.0
    assert unknown[0].title == known[0].title and unknown[0].score < 0.5


async def test_questions_with_no_content_words_or_no_match_find_nothing(db: Database) -> None:
    await put(db, REFUNDS, PASSWORD)
    assert await search(db, "") == []
    assert await search(db, "how do I do it?") == []  # stop words only
    assert await search(db, "xylophone quartet") == []
    assert await search(db, "password", limit=0) == []


@pytest.mark.parametrize(
    "query",
    [
        'password" OR "refund',
        "password*",
        "NEAR(password refund)",
        "-password",
        "title:password",
        "(password) AND {refund}",
        "pass\x00word",
        "パスワード password",
    ],
)
async def test_search_syntax_in_a_question_is_only_words(db: Database, query: str) -> None:
    await put(db, REFUNDS, PASSWORD)
    hits = await search(db, query)
    assert all(0 <= h.score <= 1 for h in hits)


async def test_a_long_question_counts_its_first_words(db: Database) -> None:
    await put(db, REFUNDS, PASSWORD)
    words = " ".join(f"word{n}" for n in range(40))
    assert len(kb.query_terms(f"password {words}")) == kb.MAX_TERMS
    [hit, *_] = await search(db, f"password {words}")
    assert hit.title == "Reset your password"


async def test_storing_the_same_article_again_changes_nothing(db: Database) -> None:
    assert await put(db, REFUNDS, PASSWORD) == ["added", "added"]
    async with db.reading() as session:
        before = await session.scalar(select(func.max(KbChunk.id)))

    assert await put(db, REFUNDS, PASSWORD) == ["unchanged", "unchanged"]
    async with db.reading() as session:
        assert await session.scalar(select(func.max(KbChunk.id))) == before
        assert await session.scalar(select(func.count()).select_from(KbArticle)) == 2


async def test_a_changed_article_replaces_its_chunks_and_its_index(db: Database) -> None:
    await put(db, REFUNDS, PASSWORD)
    changed = draft(
        "/kb/refunds.md",
        "Refunds and credits",
        ("", "We give account credit instead of refunds for unused days."),
        url="https://help.example.com/credits",
    )
    assert await put(db, changed) == ["updated"]

    assert await search(db, "rest of the month") == []  # the old text is not found any more
    [hit] = await search(db, "account credit unused days")
    assert (hit.title, hit.url) == ("Refunds and credits", "https://help.example.com/credits")
    async with db.reading() as session:
        [summary] = [a for a in await kb.list_articles(session) if a.path == "/kb/refunds.md"]
    assert (summary.chunks, summary.id) == (1, (await ids(db))["/kb/refunds.md"])


async def test_removing_missing_articles_keeps_other_directories(db: Database) -> None:
    other = draft("/kb-old/faq.md", "Old FAQ", ("", "Password tips from the old help center."))
    nested = draft("/kb/sub/faq.md", "Nested", ("", "Password questions, nested."))
    await put(db, REFUNDS, PASSWORD, nested, other)

    async with db.transaction() as session:
        removed = await kb.remove_missing(session, "/kb", ["/kb/refunds.md"])

    assert removed == ["/kb/password.md", "/kb/sub/faq.md"]
    assert {h.title for h in await search(db, "password")} == {"Old FAQ"}
    async with db.reading() as session:
        assert [a.path for a in await kb.list_articles(session)] == [
            "/kb-old/faq.md",
            "/kb/refunds.md",
        ]
        assert await session.scalar(select(func.count()).select_from(KbChunk)) == 3


async def test_a_root_with_like_wildcards_removes_only_its_own_articles(db: Database) -> None:
    mine = draft("/kb_1%/a.md", "Mine", ("", "Password help."))
    theirs = draft("/kbx1x/a.md", "Theirs", ("", "Password help too."))
    await put(db, mine, theirs)
    async with db.transaction() as session:
        assert await kb.remove_missing(session, "/kb_1%", []) == ["/kb_1%/a.md"]
    assert [h.title for h in await search(db, "password")] == ["Theirs"]


async def test_list_articles_counts_chunks_by_title(db: Database) -> None:
    await put(db, TELEGRAM, REFUNDS, PASSWORD)
    async with db.reading() as session:
        listed = await kb.list_articles(session)
    assert [(a.title, a.chunks) for a in listed] == [
        ("Connect Telegram", 1),
        ("Refunds", 2),
        ("Reset your password", 2),
    ]


async def test_an_overlong_title_and_heading_trail_are_cut_to_fit(db: Database) -> None:
    long = draft("/kb/long.md", "T" * 500, ("H" * 2000, "Password help."))
    await put(db, long)
    [hit] = await search(db, "password")
    assert (len(hit.title), len(hit.heading)) == (kb.TITLE_CHARS, kb.HEADING_CHARS)
