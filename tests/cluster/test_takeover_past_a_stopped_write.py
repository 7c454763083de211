"""An active instance stopped inside a journal write (SIGSTOP, a hang, a partition that keeps
its TCP connection open) holds the lease row locked: once its lease ran out, the standby
still takes over, and the stopped instance's journal can write nothing more."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import trio

from tests.journal.harness import order
from ult_actors.cluster.lease import try_acquire
from ult_actors.cluster.member import ClusterMember
from ult_actors.errors import JournalUnavailable
from ult_actors.journal.postgres import Fence, open_postgres_store
from ult_actors.journal.postgres_schema import migrate

LEASE_S = 1.0


class Warnings:
    """A member's log: keeps its warnings."""

    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.warnings.append((event, fields))

    def info(self, event: str, **fields: Any) -> None:
        pass

    error = info


async def test_the_standby_takes_over_from_an_active_stopped_inside_a_write(
    postgres_url: str,
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        migrate(conn)
        assert try_acquire(conn, "c", "a", LEASE_S) == 1  # a wins, then renews nothing
    async with open_postgres_store(postgres_url, fence=Fence("c", 1, "a")) as a_journal:
        # a's writer inside a batch's transaction, past the fence check, and stopped there.
        writer = await trio.to_thread.run_sync(a_journal._begin)
        await trio.to_thread.run_sync(lambda: a_journal._check_fence(writer.cursor()))

        log = Warnings()
        b = ClusterMember(postgres_url, "c", "b", lease_s=LEASE_S, log=log)
        serving = trio.Event()
        won: list[Fence] = []

        async def serve_active(fence: Fence) -> None:
            won.append(fence)
            serving.set()
            await trio.sleep_forever()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(b.run, serve_active)
            # The lease runs out after LEASE_S; then a poll or two: bounded, never for ever.
            with trio.fail_after(30):
                await serving.wait()
            nursery.cancel_scope.cancel()
        assert won == [Fence("c", 2, "b")]
        assert log.warnings == [
            (
                "lease ran out with its row locked: ended the old holder's sessions",
                {"cluster": "c", "holder": "a", "epoch": 1, "sessions": 2},
            )
        ]  # a's writer and its reading connection

        # a wakes: its open transaction is gone, and nothing it records is written.
        with pytest.raises(psycopg.OperationalError):
            await trio.to_thread.run_sync(writer.execute, "COMMIT")
        with trio.fail_after(30), pytest.raises(JournalUnavailable, match="fenced"):
            await a_journal.record(order("after-takeover"), event="submit")
