"""One instance of an active/standby cluster: standby until it wins the lease, active while
it holds it, standby again the moment it loses it.

While active, the lease is renewed every ``lease_s / 4``. It is lost when a
renewal finds another epoch in the row (a standby took over) or when
``lease_s`` has passed on this instance's monotonic clock since the last
renewal was sent (the database may already count it as run out: a pause,
a cut network). Either way the active service is cancelled at once: its
brokers' connections close and nothing more is sent. Until then ``lease``
holds the local deadline every send to a venue checks first (``fencing``). A standby asks for the
lease every ``poll_s`` and takes it over once it ran out; if the old holder stopped inside
a write (its row lock held), the standby ends that holder's database sessions first
(``lease.end_expired_holders_sessions``).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal
from urllib.parse import urlsplit

import structlog
import trio

from ult_actors.cluster.fencing import LeaseDeadline
from ult_actors.cluster.lease import (
    TakeoverBlocked,
    end_expired_holders_sessions,
    holder_of,
    release,
    renew,
    session_tag,
    try_acquire,
)
from ult_actors.cluster.outage_log import OutageLog
from ult_actors.journal.postgres import Fence, connect, redacted
from ult_actors.journal.postgres_schema import migrate
from ult_actors.messages import ClusterHealth
from ult_actors.secrets import MASK

#: How often, at most, a database that stays unreachable is logged again.
DB_LOG_EVERY_S = 30.0


def default_instance_name() -> str:
    """``host:pid``: unique among instances of one cluster, and says where to look."""
    import os

    return f"{socket.gethostname()}:{os.getpid()}"


class ClusterMember:
    """This instance's role in cluster ``name``, kept by the lease in the database at ``url``."""

    def __init__(
        self,
        url: str,
        name: str,
        instance: str,
        *,
        lease_s: float = 5.0,
        poll_s: float | None = None,
        log: Any = None,
        db_log_every_s: float = DB_LOG_EVERY_S,
        now_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.url = url
        self.name = name
        self.instance = instance
        self.lease_s = lease_s
        self.renew_s = lease_s / 4
        self.poll_s = poll_s if poll_s is not None else min(0.5, lease_s / 10)
        self.log = log if log is not None else structlog.get_logger().bind(actor="cluster")
        self.role: Literal["active", "standby"] = "standby"
        self.epoch = 0
        #: The instance holding the lease, as last seen ("" if none).
        self.active = ""
        #: Why the last active spell ended (None: it has not, or the service stopped).
        self.lost: str | None = None
        #: Why the lease cannot be read or renewed ("" while the database answers), and
        #: since when (ns since the epoch).
        self.problem = ""
        self.problem_since = 0
        self._now_ns = now_ns
        self._db_outage = OutageLog(
            self.log,
            "cluster database unreachable",
            "cluster database reachable again",
            every_s=db_log_every_s,
        )
        self._conn: Any = None
        #: The expired holder (name, epoch) whose sessions the last poll ended, and how
        #: many (logged by the poll's task); the last one logged.
        self._ended: tuple[str, int, int] | None = None
        self._ended_logged: tuple[str, int, int] | None = None
        #: Until when this instance may send to venues: its brokers' connectors check it.
        self.lease = LeaseDeadline(margin_s=lease_s / 10)

    def health(self) -> ClusterHealth:
        """This instance's role, as ``ult health`` shows it."""
        return ClusterHealth(
            name=self.name,
            instance=self.instance,
            role=self.role,
            active=self.instance if self.role == "active" else self.active,
            epoch=self.epoch,
            problem=self.problem,
            problem_since=self.problem_since,
        )

    async def run(self, serve_active: Callable[[Fence], Awaitable[None]]) -> None:
        """Alternate standby and active until ``serve_active`` returns (the service stopped).

        ``serve_active(fence)`` runs the whole service, its journal fenced by
        ``fence``; it is cancelled when the lease is lost.
        """
        try:
            while True:
                epoch, asked_at = await self._wait_for_lease()
                if await self._serve_while_held(epoch, asked_at, serve_active):
                    return
        finally:
            with trio.CancelScope(shield=True):
                await self._release()

    # -- standby ------------------------------------------------------------------

    async def _wait_for_lease(self) -> tuple[int, float]:
        """Ask for the lease every ``poll_s`` until it is ours; the epoch it was won at and
        when (trio's clock) the winning request was sent: the lease runs from no earlier."""
        self.role = "standby"
        reported = None
        while True:
            asked_at = trio.current_time()
            try:
                epoch: int | None = await self._db(self._acquire_or_look)
            except Exception as exc:
                if not _is_db_error(exc):
                    raise
                self._db_outage.failed(self._unreachable(exc))
                epoch = None
            else:
                self._answered()
            if self._ended is not None and self._ended != self._ended_logged:
                old_holder, old_epoch, count = self._ended_logged = self._ended
                # None ended: the lock is not the old holder's (another role's session,
                # an instance that does not name its connections); said once, not per poll.
                self.log.warning(
                    "lease ran out with its row locked: ended the old holder's sessions",
                    cluster=self.name,
                    holder=old_holder,
                    epoch=old_epoch,
                    sessions=count,
                )
            self._ended = None
            if epoch is not None:
                self.epoch, self.role, self.lost = epoch, "active", None
                self.log.info(
                    "cluster lease won: active",
                    cluster=self.name,
                    epoch=epoch,
                    previous=self.active,
                )
                return epoch, asked_at
            if self.active != reported:
                reported = self.active
                self.log.info("standby", cluster=self.name, active=self.active or None)
            await trio.sleep(self.poll_s)

    def _acquire_or_look(self, conn: Any) -> int | None:
        try:
            epoch = try_acquire(
                conn, self.name, self.instance, self.lease_s, lock_wait_s=self.poll_s
            )
        except TakeoverBlocked:
            # Its locks go with its sessions; the next poll takes the lease over.
            ended = end_expired_holders_sessions(conn, self.name)
            if ended is not None:
                self._ended = (ended[0].holder, ended[0].epoch, ended[1])
            epoch = None
        if epoch is None:
            now = holder_of(conn, self.name)
            self.active = now.holder if now is not None else ""
            if now is not None:
                self.epoch = now.epoch
        return epoch

    # -- active -------------------------------------------------------------------

    async def _serve_while_held(
        self, epoch: int, won_at: float, serve_active: Callable[[Fence], Awaitable[None]]
    ) -> bool:
        """Run the service while the lease holds; True if the service itself stopped."""
        stopped = False
        async with trio.open_nursery() as nursery:

            async def serve() -> None:
                nonlocal stopped
                await serve_active(Fence(self.name, epoch, self.instance))
                stopped = True
                nursery.cancel_scope.cancel()

            nursery.start_soon(self._hold, epoch, won_at, nursery.cancel_scope)
            nursery.start_soon(serve)
        if not stopped:
            self.role, self.active = "standby", ""  # who won it is known at the next look
            self.log.error(
                "cluster lease lost: brokers stopped, now standby",
                cluster=self.name,
                epoch=epoch,
                why=self.lost,
            )
        return stopped

    async def _hold(self, epoch: int, won_at: float, scope: trio.CancelScope) -> None:
        """Renew the lease every ``renew_s``; cancel ``scope`` the moment it is lost."""
        valid_until = won_at + self.lease_s
        self.lease.held_until(valid_until)
        while True:
            await trio.sleep_until(min(trio.current_time() + self.renew_s, valid_until))
            if trio.current_time() >= valid_until:
                self.lost = f"not renewed within lease_s ({self.lease_s:g} s)"
                break
            sent = trio.current_time()
            with trio.move_on_at(valid_until):
                try:
                    held = await self._db(lambda conn: renew(conn, self.name, epoch, self.lease_s))
                except Exception as exc:
                    if not _is_db_error(exc):
                        raise
                    self.log.warning("lease renewal failed", error=self._unreachable(exc))
                    continue  # tried again until valid_until
                self._answered()
                if not held:
                    self.lost = "another instance took the lease over"
                    break
                valid_until = sent + self.lease_s
                self.lease.held_until(valid_until)
        self.lease.lost()
        scope.cancel()

    async def _release(self) -> None:
        """A clean stop while active: end the lease now, so a standby takes over at once."""
        if self.role != "active" or self.lost is not None:
            return
        epoch = self.epoch
        with trio.move_on_after(2):
            try:
                await self._db(lambda conn: release(conn, self.name, epoch))
            except Exception as exc:
                if not _is_db_error(exc):
                    raise
        self.role = "standby"

    # -- the database ---------------------------------------------------------------

    def _unreachable(self, exc: BaseException) -> str:
        """``database unreachable: Type: first line``, the URL's password masked; kept as
        this instance's ``problem`` until the database answers again."""
        lines = str(exc).strip().splitlines()
        text = f"database unreachable: {type(exc).__name__}: {lines[0] if lines else ''}"
        password = urlsplit(self.url).password
        if password:  # libpq may quote the connection string it was given
            text = text.replace(password, MASK)
        if not self.problem:
            self.problem_since = self._now_ns()
        self.problem = text
        return text

    def _answered(self) -> None:
        """The database answered: no problem any more."""
        self.problem, self.problem_since = "", 0
        self._db_outage.ended()

    async def _db(self, call: Callable[[Any], Any]) -> Any:
        """``call(conn)`` on a thread, connecting (and migrating) first when needed.

        If the caller gives up waiting (cancelled), the thread is left to finish
        on its own and its connection is not used again.
        """

        def work() -> Any:
            conn = self._conn
            if conn is None or conn.closed:
                conn = connect(
                    self.url,
                    connect_timeout_s=max(1.0, self.lease_s / 2),
                    application_name=session_tag(self.name, self.instance),
                )
                migrate(conn, where=redacted(self.url))
                self._conn = conn
            try:
                return call(conn)
            except BaseException:
                if conn.broken:
                    conn.close()
                raise

        conn_before = self._conn
        try:
            return await trio.to_thread.run_sync(work, abandon_on_cancel=True)
        except trio.Cancelled:
            if self._conn is conn_before:
                self._conn = None  # the abandoned thread may still be using it
            raise


def _is_db_error(exc: BaseException) -> bool:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the journal refuses to start without it
        return False
    return isinstance(exc, psycopg.Error | OSError)
