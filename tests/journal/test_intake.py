"""The journal closes the service's intake gate while its fold is too far behind, and opens
it again once the fold caught up a little; a journal that closes opens it (nothing left to
wait for)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from tests.journal.harness import fill
from ult_actors.actors.journal import JournalSlot
from ult_actors.journal.sqlite import SqliteStore, open_sqlite_store
from ult_actors.runtime.intake import IntakeGate


async def test_the_intake_closes_past_the_unfolded_limit_and_opens_once_the_fold_caught_up(
    tmp_path: Path,
) -> None:
    gate = IntakeGate()
    async with _fold_when_hurried(tmp_path, gate, max_unfolded=10) as store:
        for i in range(10):
            store.record_fill(fill(f"f-{i}"))
        assert not gate.closed  # 10 waiting: at the limit, not past it
        store.record_fill(fill("f-10"))
        assert gate.closed and gate.closings == 1
        await store.in_file()  # the fold catches up: nothing waits, the gate opens
        assert not gate.closed
        store.record_fill(fill("f-11"))
        assert not gate.closed and gate.closings == 1
    # Nothing handed over was lost while the gate was closed: every fill is in the file.
    assert _fills_in(tmp_path / "j.db") == 12


def _fold_when_hurried(
    tmp_path: Path, gate: IntakeGate, *, max_unfolded: int
) -> AbstractAsyncContextManager[SqliteStore]:
    """A journal in ``tmp_path`` closing ``gate`` past ``max_unfolded``, whose fold runs
    only when hurried: what is handed over waits for it."""
    return open_sqlite_store(
        tmp_path / "j.db", fold_interval_s=3600, intake=gate, max_unfolded=max_unfolded
    )


def _fills_in(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM fills").fetchone()[0])
    finally:
        conn.close()


class _OpenedWith(IntakeGate):
    """A gate that notes, each time it opens, what ``seen()`` says then."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: Callable[[], int] = lambda: 0
        self.opened_at: list[int] = []

    def open(self) -> None:
        if self.closed:
            self.opened_at.append(self.seen())
        super().open()


async def test_a_fold_far_behind_reports_its_progress_and_the_intake_opens_before_its_end(
    tmp_path: Path,
) -> None:
    gate = _OpenedWith()
    async with _fold_when_hurried(tmp_path, gate, max_unfolded=4_500) as store:
        log = store._log  # the change log's count of news in the file, as the trio side knows
        assert log is not None
        gate.seen = lambda: log.folded_news
        for i in range(5_000):
            store.record_fill(fill(f"f-{i}"))
        assert gate.closed
        folds = store.folds
        await store.in_file()
        # At most 2,000 jobs a transaction: three for the 5,000, and the gate opened when
        # the first was in (3,000 left: at or below 4,500 less a tenth), not once all were.
        assert store.folds - folds == 3
        assert gate.opened_at == [2_000]
    assert _fills_in(tmp_path / "j.db") == 5_000


def test_a_journal_gone_opens_the_intake() -> None:
    slot = JournalSlot()
    slot.intake.close()
    slot.set(None)  # the journal actor closed its store (a restart): no fold to wait for
    assert not slot.intake.closed
