"""What a transaction promises the code around it: state kept in memory on the strength of
its writes is put back when it does not commit."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.store.db import Database, on_rollback


async def test_undo_runs_when_the_transaction_rolls_back_and_not_when_it_commits(
    db: Database,
) -> None:
    undone: list[str] = []
    async with db.transaction() as session:
        on_rollback(session, lambda: undone.append("committed"))
    assert undone == []
    with pytest.raises(RuntimeError, match="the write failed"):
        await _fail_after(db, lambda: undone.append("first"), lambda: undone.append("second"))
    assert undone == ["second", "first"]  # last registered, first undone
    async with db.transaction() as session:
        pass  # a new transaction starts with nothing to undo
    assert undone == ["second", "first"]


async def _fail_after(db: Database, *undo: Callable[[], None]) -> None:
    async with db.transaction() as session:
        for step in undo:
            on_rollback(session, step)
        raise RuntimeError("the write failed")
