"""The lease row: one holder at a time, a takeover bumps the epoch, a stale epoch renews
nothing, a released lease is free at once. Times are the database's own."""

from __future__ import annotations

import psycopg
import trio

from ult_actors.cluster.lease import holder_of, release, renew, try_acquire
from ult_actors.journal.postgres_schema import migrate


def connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    conn = psycopg.connect(url, autocommit=True)
    migrate(conn)
    return conn


async def test_one_holder_at_a_time_and_a_takeover_bumps_the_epoch(postgres_url: str) -> None:
    with connect(postgres_url) as conn:
        assert holder_of(conn, "c") is None
        assert try_acquire(conn, "c", "a", 0.2) == 1
        assert try_acquire(conn, "c", "b", 0.2) is None  # a holds it
        held = holder_of(conn, "c")
        assert held is not None and (held.holder, held.epoch) == ("a", 1)
        with trio.fail_after(10):  # a stops renewing; b asks until the lease ran out
            while (epoch := try_acquire(conn, "c", "b", 5.0)) is None:
                await trio.sleep(0.02)
        assert epoch == 2
        assert not renew(conn, "c", 1, 5.0)  # a's epoch is stale: renews nothing
        assert renew(conn, "c", 2, 5.0)
        assert try_acquire(conn, "other", "a", 5.0) == 1  # clusters are apart


async def test_a_released_lease_is_taken_at_once(postgres_url: str) -> None:
    with connect(postgres_url) as conn:
        assert try_acquire(conn, "c", "a", 60.0) == 1
        release(conn, "c", 1)
        assert try_acquire(conn, "c", "b", 60.0) == 2
        release(conn, "c", 1)  # a stale release frees nothing
        assert try_acquire(conn, "c", "a", 60.0) is None
