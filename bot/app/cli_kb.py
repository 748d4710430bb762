"""`crmbot kb`: import help articles into the knowledge base, list them, search them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agents.embeddings import Semantic, build_embedder, embed_missing
from agents.kb import ImportReport, import_paths
from bot.app.cli_common import _run, _settings, _with_db
from bot.store import kb
from bot.store.db import Database
from bot.store.kb_vectors import hybrid_search

kb_cli = typer.Typer(
    help="The knowledge base: help articles the support agent answers from.",
    no_args_is_help=True,
)
EXCERPT = 240
"""Characters of each passage `kb search` prints (all of it with --full)."""


def _chunks(n: int) -> str:
    return f"{n} chunk" if n == 1 else f"{n} chunks"


def _print_report(report: ImportReport) -> None:
    for change in report.changes:
        if change.change == "unchanged":
            continue
        detail = (
            f" ({change.title}, {_chunks(change.chunks)})" if change.change != "removed" else ""
        )
        typer.echo(f"{change.change:<8} {change.shown}{detail}")
    typer.echo(report.summary())


@kb_cli.command("import")
def kb_import(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Article files (.md, .html, .txt) or directories of them"),
    ],
) -> None:
    """Import or update help articles; a directory imported again also loses deleted files.

    Each file may start with a front matter giving its title and url:

        ---
        title: Reset your password
        url: https://help.example.com/password
        ---
    """
    settings = _settings("WARNING")

    async def main() -> None:
        async def work(db: Database) -> None:
            _print_report(await import_paths(db, paths))
            embedder = build_embedder(settings)
            if embedder is None:
                return
            try:
                embedded = await embed_missing(db, embedder)
            finally:
                await embedder.aclose()
            typer.echo(f"embedded {_chunks(embedded)} with {embedder.name} {embedder.model}")

        await _with_db(settings, work)

    _run(main)


@kb_cli.command("list")
def kb_list() -> None:
    """List the stored articles: id, title, chunks, url and file."""
    settings = _settings("WARNING")

    async def main() -> None:
        async def work(db: Database) -> None:
            async with db.reading() as session:
                articles = await kb.list_articles(session)
            if not articles:
                typer.echo("the knowledge base is empty; import articles: crmbot kb import DIR")
            for a in articles:
                typer.echo(f"{a.id:>4}  {a.title}  ({_chunks(a.chunks)})  {a.url or '-'}  {a.path}")

        await _with_db(settings, work)

    _run(main)


def _excerpt(passage: str, full: bool) -> str:
    text = passage if full else " ".join(passage.split())
    return text if full or len(text) <= EXCERPT else text[: EXCERPT - 1].rstrip() + "…"


@kb_cli.command("search")
def kb_search(
    query: Annotated[str, typer.Argument(help="A question or key words")],
    limit: Annotated[int, typer.Option(min=1, max=50, help="How many passages")] = 5,
    full: Annotated[bool, typer.Option(help="Print whole passages")] = False,
) -> None:
    """Search as the support agent does: ranked passages with their scores (0 to 1), fused
    with semantic search when KB_EMBEDDINGS is set."""
    settings = _settings("WARNING")

    async def main() -> None:
        async def work(db: Database) -> None:
            embedder = build_embedder(settings)
            semantic = Semantic.of(embedder) if embedder is not None else None
            try:
                near = await semantic.near(query) if semantic is not None else None
                async with db.reading() as session:
                    hits = await hybrid_search(session, query, limit, near)
            finally:
                if embedder is not None:
                    await embedder.aclose()
            if not hits:
                typer.echo("no matching passage")
            for n, hit in enumerate(hits, 1):
                typer.echo(f"{n}. score {hit.score:.3f}  {hit.heading}  [article {hit.article_id}]")
                if hit.url:
                    typer.echo(f"   {hit.url}")
                typer.echo("   " + _excerpt(hit.passage, full).replace("\n", "\n   "))

        await _with_db(settings, work)

    _run(main)
