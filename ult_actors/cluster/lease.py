"""The cluster lease in PostgreSQL: who is active, under which fencing epoch, until when.

One row of ``ult_lease`` per cluster. Every time is the database's own
(``now()``), so the instances' clocks never have to agree. Taking the lease
over bumps its epoch; the journal refuses writes of any other epoch
(``journal.postgres.Fence``), so once a standby took over, nothing the old
active does can reach the journal, and nothing it has not journaled leaves
for a broker.

A write holds the lease row ``FOR SHARE`` until it commits, so a holder
stopped inside one (SIGSTOP, a hang, a partition that keeps its TCP
connection open) would block the takeover for ever. The takeover therefore
waits for the row's lock at most ``lock_wait_s`` (``TakeoverBlocked``), and
the standby then ends the database sessions of the holder whose lease ran
out (``end_expired_holders_sessions``): each instance names its connections
``session_tag(cluster, instance)``.

Blocking calls on a psycopg connection: run them off the trio thread.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

_CLAIM_NEW = (
    "INSERT INTO ult_lease (cluster, epoch, holder, expires_at)"
    " VALUES (%s, 1, %s, now() + make_interval(secs => %s))"
    " ON CONFLICT (cluster) DO NOTHING RETURNING epoch"
)
_TAKE_OVER = (
    "UPDATE ult_lease SET epoch = epoch + 1, holder = %s,"
    " expires_at = now() + make_interval(secs => %s)"
    " WHERE cluster = %s AND expires_at < now() RETURNING epoch"
)
_RENEW = (
    "UPDATE ult_lease SET expires_at = now() + make_interval(secs => %s)"
    " WHERE cluster = %s AND epoch = %s RETURNING epoch"
)
_RELEASE = "UPDATE ult_lease SET expires_at = now() WHERE cluster = %s AND epoch = %s"
_LOCK_WAIT = "SELECT set_config('lock_timeout', %s, true)"
_LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout ran out
_END_SESSIONS = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
    " WHERE datname = current_database() AND application_name = %s"
    " AND pid <> pg_backend_pid() AND EXISTS (SELECT 1 FROM ult_lease WHERE cluster = %s"
    " AND holder = %s AND epoch = %s AND expires_at < now())"
)
_READ = (
    "SELECT holder, epoch, EXTRACT(EPOCH FROM expires_at - now())::float8"
    " FROM ult_lease WHERE cluster = %s"
)


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a cluster's lease, at which epoch, and for how many more seconds."""

    holder: str
    epoch: int
    remaining_s: float


class TakeoverBlocked(Exception):
    """The lease ran out, but a session still holds its row locked (its holder stopped
    inside a write): ``end_expired_holders_sessions``, then ask again."""


def session_tag(cluster: str, instance: str) -> str:
    """The ``application_name`` of ``instance``'s database connections: ``ult <cluster>
    <instance>``, or a digest of it where PostgreSQL would cut or alter it (63 bytes,
    printable ASCII), so a tag names exactly one instance of one cluster."""
    tag = f"ult {cluster} {instance}"  # a cluster's name has no space
    if len(tag) <= 63 and tag.isascii() and tag.isprintable():
        return tag
    return f"ult {cluster[:16]} {hashlib.sha256(tag.encode()).hexdigest()[:32]}"


def try_acquire(
    conn: Any, cluster: str, holder: str, lease_s: float, *, lock_wait_s: float = 1.0
) -> int | None:
    """Take the lease if nobody holds it or it ran out; the new epoch, or None.

    ``TakeoverBlocked`` if the lease ran out but its row stayed locked for
    ``lock_wait_s`` (a write in flight commits well within that).
    ``conn`` is in autocommit mode.
    """
    row = conn.execute(_CLAIM_NEW, (cluster, holder, lease_s)).fetchone()
    if row is None:
        try:
            with conn.transaction():
                conn.execute(_LOCK_WAIT, (f"{max(1, round(lock_wait_s * 1000))}ms",))
                row = conn.execute(_TAKE_OVER, (holder, lease_s, cluster)).fetchone()
        except Exception as exc:
            if getattr(exc, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                raise
            raise TakeoverBlocked(
                f"cluster {cluster!r} lease ran out but its row stayed locked"
                f" {lock_wait_s:g} s (its holder stopped inside a write)"
            ) from None
    return int(row[0]) if row is not None else None


def end_expired_holders_sessions(conn: Any, cluster: str) -> tuple[LeaseHolder, int] | None:
    """End every database session of the holder of ``cluster``'s lease if that lease ran
    out: its locks go with them (a transaction it left open rolls back: nothing in it was
    acknowledged). The holder and how many sessions were ended; None if the lease holds.

    Needs the right to signal them (the same database role, or ``pg_signal_backend``).
    """
    held = holder_of(conn, cluster)
    if held is None or held.remaining_s >= 0:
        return None
    tag = session_tag(cluster, held.holder)
    row = conn.execute(_END_SESSIONS, (tag, cluster, held.holder, held.epoch)).fetchone()
    return held, int(row[0])


def renew(conn: Any, cluster: str, epoch: int, lease_s: float) -> bool:
    """Extend the lease of ``epoch`` by ``lease_s`` from now; False if another took it."""
    return conn.execute(_RENEW, (lease_s, cluster, epoch)).fetchone() is not None


def release(conn: Any, cluster: str, epoch: int) -> None:
    """End the lease of ``epoch`` now (a clean stop): a standby need not wait it out."""
    conn.execute(_RELEASE, (cluster, epoch))


def holder_of(conn: Any, cluster: str) -> LeaseHolder | None:
    """The lease as it stands; None if no instance ever held it."""
    row = conn.execute(_READ, (cluster,)).fetchone()
    if row is None:
        return None
    return LeaseHolder(holder=str(row[0]), epoch=int(row[1]), remaining_s=float(row[2]))
