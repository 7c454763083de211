"""The v20 transaction stream's delivery promise: every transaction once, in order, none lost.

The stream (newline-delimited JSON, a ``HEARTBEAT`` every 5 s) has no replay,
so a ``TransactionFeed`` joins it with ``/transactions/sinceid`` fetches
around a ``TransactionCursor`` (the id of the last transaction delivered):

- on start, after the stream is open, it fetches everything after the cursor;
- a line at or below the cursor was delivered already and is skipped;
- an id jump, or a heartbeat whose ``lastTransactionID`` is ahead of the
  cursor, means the stream skipped something: it fetches again;
- a stream silent for ``stale_after_s`` (no transaction, no heartbeat) is
  dead: ``read`` raises ``BrokerUnavailable``. Time spent delivering
  (back-pressure, lookups) does not count as silence.

One lock orders the stream's lines and its fetches, so a transaction is never
handed on twice. The cursor moves only after a transaction was delivered, so
a crash while delivering repeats that one transaction rather than losing it.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import trio

from ult_actors.brokers.oanda.wire import TransactionsReply, WireTransaction
from ult_actors.errors import BrokerUnavailable


class TransactionCursor:
    """The id of the last transaction delivered.

    It outlives connector incarnations, so that a restarted actor's stream
    fetches everything after it before going live.
    """

    def __init__(self, last_id: int | None = None) -> None:
        self.last_id = last_id

    def __repr__(self) -> str:
        return f"TransactionCursor(last_id={self.last_id})"


#: Fetch the transactions after an id (``GET .../transactions/sinceid?id=N``).
FetchSince = Callable[[int], Awaitable[TransactionsReply]]
#: Hand one transaction on (it may or may not concern one of our orders).
Deliver = Callable[[WireTransaction], Awaitable[None]]


class TransactionFeed:
    """Delivery of one connection's transactions after ``cursor`` (see the module docstring)."""

    def __init__(
        self,
        cursor: TransactionCursor,
        fetch_since: FetchSince,
        *,
        broker: str,
        stale_after_s: float,
        log: Any,
    ) -> None:
        self.cursor = cursor
        self._fetch_since = fetch_since
        self._broker = broker
        self._stale_after_s = stale_after_s
        self._log = log
        self._lock = trio.Lock()
        #: trio's clock (``trio.current_time()``) when the stream last sent a line, or
        #: opened; ``None`` before it first opened.
        self.last_message_at: float | None = None

    async def backfill(self, deliver: Deliver) -> int:
        """Deliver every transaction after the cursor, in order; how many."""
        async with self._lock:
            return await self._fetch_after(self.cursor, deliver)

    async def _fetch_after(self, cursor: TransactionCursor, deliver: Deliver) -> int:
        delivered = 0
        while True:
            since = cursor.last_id or 0
            reply = await self._fetch_since(since)
            for txn in reply.transactions:
                if txn.id is None or not txn.id.isdigit() or int(txn.id) <= (cursor.last_id or 0):
                    continue
                await deliver(txn)
                cursor.last_id = int(txn.id)
                delivered += 1
            # Paged: ask again until the account's newest is reached (or nothing moves).
            last = cursor.last_id or 0
            if last >= int(reply.lastTransactionID) or last == since:
                break
        if delivered:
            self._log.info("oanda transactions fetched", count=delivered, last=cursor.last_id)
        return delivered

    def opened(self) -> None:
        """The stream is open: a sign of life (its first heartbeat is seconds away)."""
        self.last_message_at = trio.current_time()

    async def read(self, lines: AsyncIterator[str], deliver: Deliver) -> None:
        """Deliver from the stream's lines until they end; raises if the stream goes silent."""
        stale_after_s = self._stale_after_s
        with trio.CancelScope(deadline=trio.current_time() + stale_after_s) as watchdog:
            async for line in lines:
                watchdog.deadline = math.inf
                self.last_message_at = trio.current_time()
                if line.strip():
                    await self.on_line(line, deliver)
                watchdog.deadline = trio.current_time() + stale_after_s
        if watchdog.cancelled_caught:
            self._log.warning("oanda transaction stream silent", silent_s=stale_after_s)
            raise BrokerUnavailable(
                f"OANDA transaction stream silent for {stale_after_s:g} s (no heartbeat)",
                broker=self._broker,
            )

    async def on_line(self, line: str, deliver: Deliver) -> None:
        """Handle one stream line: a heartbeat, a transaction, or garbage (raises)."""
        try:
            txn = msgspec.json.decode(line, type=WireTransaction)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise BrokerUnavailable(
                "OANDA transaction stream sent a line that is not a transaction",
                broker=self._broker,
            ) from None
        async with self._lock:
            last = self.cursor.last_id or 0
            if txn.type == "HEARTBEAT":
                newest = txn.lastTransactionID or ""
                if newest.isdigit() and int(newest) > last:
                    await self._fetch_after(self.cursor, deliver)  # the stream skipped some
                return
            if txn.id is None or not txn.id.isdigit():
                return
            txn_id = int(txn.id)
            if txn_id <= last:
                return  # delivered already, by a fetch
            if txn_id > last + 1:
                await self._fetch_after(self.cursor, deliver)  # a gap: the fetch includes this one
                return
            await deliver(txn)
            self.cursor.last_id = txn_id
