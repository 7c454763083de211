"""The reply waits for the submit record and the broker's answer, not for the answer's commit.

The answer is journaled in the background: a crash before it is committed
leaves the order ``pending_new`` in the file, and restart reconciliation
settles it from the broker, without sending it again.
"""

from __future__ import annotations

import shutil
import sqlite3
from decimal import Decimal
from pathlib import Path

import trio

from tests.durability.harness import config, journal_of, journal_status, running
from tests.fakes import FakeVenue
from ult_actors.messages import OrderReply, OrderRequest, Reply, Submit


async def test_an_answer_never_committed_is_settled_on_restart_and_not_sent_again(
    tmp_path: Path,
) -> None:
    venue = FakeVenue("fake")
    venue.submit_gate = trio.Event()  # the broker answers when the test says
    first, second = tmp_path / "first", tmp_path / "second"
    journal = first / "journal.db"
    request = OrderRequest(symbol="AAPL", side="buy", qty=Decimal(3), client_order_id="ans-1")
    replies: list[Reply] = []
    answered = trio.Event()

    async with running(config(first), venue) as svc:

        async def submit() -> None:
            replies.append(await svc.gateway.handle(Submit(id=1, order=request)))
            answered.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(submit)
            with trio.fail_after(10):
                while journal_status(journal, "ans-1") is None:  # the submit is on disk
                    await trio.sleep(0.005)
            # From now on no commit gets through: one would wait 5 s for this lock.
            blocker = sqlite3.connect(journal, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
            try:
                venue.submit_gate.set()
                with trio.fail_after(3):
                    await answered.wait()
                [reply] = replies
                assert isinstance(reply, OrderReply) and reply.order.status == "filled"
                assert journal_status(journal, "ans-1") == "pending_new"  # answer not committed
                # What a kill -9 now leaves behind (the WAL keeps every commit).
                second.mkdir()
                for part in ("journal.db", "journal.db-wal"):
                    shutil.copy(first / part, second / part)
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()

    async with running(config(second), venue) as svc:  # started means reconciled
        settled = await journal_of(svc, "ans-1")
        assert (settled.status, settled.filled_qty, settled.outcome) == (
            "filled",
            Decimal(3),
            "definitive",
        )
    assert venue.submits == 1
