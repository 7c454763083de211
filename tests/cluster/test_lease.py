"""The lease row: one holder at a time, a takeover bumps the epoch, a stale epoch renews
nothing, a released lease is free at once, a holder stopped inside a write loses its
sessions once its lease ran out. Times are the database's own."""

from __future__ import annotations

import psycopg
import pytest
import trio

from ult_actors.cluster.lease import (
    TakeoverBlocked,
    end_expired_holders_sessions,
    holder_of,
    release,
    renew,
    session_tag,
    try_acquire,
)
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


async def test_a_takeover_blocked_by_an_expired_holders_open_write_ends_its_sessions(
    postgres_url: str,
) -> None:
    with connect(postgres_url) as conn:
        assert try_acquire(conn, "c", "a", 0.5) == 1
        # a stopped inside a write: the journal's fence check holds the row FOR SHARE.
        stuck = psycopg.connect(postgres_url, application_name=session_tag("c", "a"))
        stuck.execute("SELECT epoch FROM ult_lease WHERE cluster = 'c' FOR SHARE")
        bystander = psycopg.connect(postgres_url, application_name=session_tag("c", "x"))
        other = psycopg.connect(postgres_url, application_name=session_tag("d", "a"))
        assert end_expired_holders_sessions(conn, "c") is None  # the lease holds: no one
        with trio.fail_after(10):  # the lease runs out on the database's clock
            while (held := holder_of(conn, "c")) is not None and held.remaining_s >= 0:
                await trio.sleep(0.02)
        with pytest.raises(TakeoverBlocked):
            try_acquire(conn, "c", "b", 5.0, lock_wait_s=0.05)
        ended = end_expired_holders_sessions(conn, "c")
        assert ended is not None and (ended[0].holder, ended[0].epoch, ended[1]) == ("a", 1, 1)
        with trio.fail_after(10):  # its backend exits, and its lock with it
            while (epoch := try_acquire(conn, "c", "b", 5.0, lock_wait_s=0.05)) is None:
                await trio.sleep(0.02)
        assert epoch == 2
        with pytest.raises(psycopg.OperationalError):
            stuck.execute("COMMIT")  # nothing of its transaction is kept
        # Another instance of the cluster, and a's namesake in another cluster, go on.
        assert bystander.execute("SELECT 1").fetchone() == (1,)
        assert other.execute("SELECT 1").fetchone() == (1,)
        for c in (stuck, bystander, other):
            c.close()


def test_a_session_tag_names_one_instance_of_one_cluster_as_postgresql_keeps_it() -> None:
    assert session_tag("prod", "host-1:4242") == "ult prod host-1:4242"
    long_one, long_two = "h" * 70 + "1", "h" * 70 + "2"
    assert session_tag("prod", long_one) != session_tag("prod", long_two)
    assert session_tag("prod", "hôte:1") != session_tag("prod", "h?te:1")
    for tag in (session_tag("prod", long_one), session_tag("prod", "hôte:1")):
        assert len(tag.encode()) <= 63 and tag.isascii() and tag.isprintable()
