"""The cluster lease in PostgreSQL: who is active, under which fencing epoch, until when.

One row of ``ult_lease`` per cluster. Every time is the database's own
(``now()``), so the instances' clocks never have to agree. Taking the lease
over bumps its epoch; the journal refuses writes of any other epoch
(``journal.postgres.Fence``), so once a standby took over, nothing the old
active does can reach the journal, and nothing it has not journaled leaves
for a broker.

Blocking calls on a psycopg connection: run them off the trio thread.
"""

from __future__ import annotations

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


def try_acquire(conn: Any, cluster: str, holder: str, lease_s: float) -> int | None:
    """Take the lease if nobody holds it or it ran out; the new epoch, or None."""
    row = conn.execute(_CLAIM_NEW, (cluster, holder, lease_s)).fetchone()
    if row is None:
        row = conn.execute(_TAKE_OVER, (holder, lease_s, cluster)).fetchone()
    return int(row[0]) if row is not None else None


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
