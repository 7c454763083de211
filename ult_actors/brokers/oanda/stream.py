"""The v20 transaction stream's delivery promise: every transaction once, in order, none lost.

The stream (newline-delimited JSON, a ``HEARTBEAT`` every 5 s) has no replay,
so a ``TransactionFeed`` joins it with ``/transactions/sinceid`` fetches
around a ``TransactionCursor`` (the id of the last transaction delivered):

- on start, after the stream is open, it fetches everything after the cursor;
- a line at or below the cursor was delivered already and is skipped;
- an id jump, or a heartbeat whose ``lastTransactionID`` is ahead of the
  cursor, means the stream skipped something: it fetches again;
- a stream silent for ``heartbeat_timeout_s`` is dead: ``read`` raises
  ``BrokerUnavailable``. Time spent delivering (back-pressure, lookups) does
  not count as silence.

The cursor moves only after a transaction was delivered, so a crash while
delivering repeats that one transaction rather than losing it.
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
    """One stream session's delivery of transactions after ``cursor``."""

    def __init__(
        self,
        cursor: TransactionCursor,
        fetch_since: FetchSince,
        deliver: Deliver,
        *,
        broker: str,
        heartbeat_timeout_s: float,
        log: Any,
    ) -> None:
        self.cursor = cursor
        self._fetch_since = fetch_since
        self._deliver = deliver
        self._broker = broker
        self._timeout = heartbeat_timeout_s
        self._log = log

    @property
    def _last(self) -> int:
        return self.cursor.last_id or 0

    async def backfill(self) -> int:
        """Deliver every transaction after the cursor, in order; how many."""
        delivered = 0
        while True:
            since = self._last
            reply = await self._fetch_since(since)
            for txn in reply.transactions:
                if txn.id is None or not txn.id.isdigit() or int(txn.id) <= self._last:
                    continue
                await self._deliver(txn)
                self.cursor.last_id = int(txn.id)
                delivered += 1
            # Paged: ask again until the account's newest is reached (or nothing moves).
            if self._last >= int(reply.lastTransactionID) or self._last == since:
                break
        if delivered:
            self._log.info("oanda transactions fetched", count=delivered, last=self._last)
        return delivered

    async def read(self, lines: AsyncIterator[str]) -> None:
        """Deliver from the stream's lines until they end; raises if the stream goes silent."""
        with trio.CancelScope(deadline=trio.current_time() + self._timeout) as watchdog:
            async for line in lines:
                watchdog.deadline = math.inf
                if line.strip():
                    await self.on_line(line)
                watchdog.deadline = trio.current_time() + self._timeout
        if watchdog.cancelled_caught:
            self._log.warning("oanda transaction stream silent", silent_s=self._timeout)
            raise BrokerUnavailable(
                f"OANDA transaction stream silent for {self._timeout:g} s (no heartbeat)",
                broker=self._broker,
            )

    async def on_line(self, line: str) -> None:
        """Handle one stream line: a heartbeat, a transaction, or garbage (raises)."""
        try:
            txn = msgspec.json.decode(line, type=WireTransaction)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise BrokerUnavailable(
                "OANDA transaction stream sent a line that is not a transaction",
                broker=self._broker,
            ) from None
        if txn.type == "HEARTBEAT":
            newest = txn.lastTransactionID or ""
            if newest.isdigit() and int(newest) > self._last:
                await self.backfill()  # the stream skipped something: fetch it
            return
        if txn.id is None or not txn.id.isdigit():
            return
        txn_id = int(txn.id)
        if txn_id <= self._last:
            return  # delivered already, by a fetch
        if txn_id > self._last + 1:
            await self.backfill()  # a gap: the fetch includes this one
            return
        await self._deliver(txn)
        self.cursor.last_id = txn_id
