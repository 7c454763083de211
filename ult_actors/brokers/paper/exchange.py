"""What the paper connections on one accounts file share: the file, its writer, one clock.

Every paper connector of a service (by default they all use
``<state_dir>/paper.db``) joins the ``PaperExchange`` of its file on
``connect`` and leaves it on ``disconnect``; the first to join opens the
file and starts the writer's thread and the clock's task, the last to leave
stops them and closes it. A connection name joins at most once at a time
(a second connector of the same account is refused, as before).

The open exchanges are kept per trio run, keyed by file: like a process's
table of open files, two connectors naming one file must share one SQLite
connection and one ``flock``, and an exchange's tasks and thread belong to
the run that opened it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import trio

from ult_actors.brokers.paper.clock import PaperClock
from ult_actors.brokers.paper.store import MEMORY, PaperStore
from ult_actors.brokers.paper.writer import BatchWriter
from ult_actors.errors import BrokerUnavailable

#: Told when the exchange can no longer write: the connection must reconnect.
Failure = Callable[[BaseException], None]


class _Opening:
    """An exchange being opened by the first connector; later ones wait for it."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.exchange: PaperExchange | None = None


_OPEN: trio.lowlevel.RunVar[dict[object, _Opening]] = trio.lowlevel.RunVar("paper_exchanges")


def _open_exchanges() -> dict[object, _Opening]:
    try:
        return _OPEN.get()
    except LookupError:
        table: dict[object, _Opening] = {}
        _OPEN.set(table)
        return table


class PaperExchange:
    """One accounts file open in this trio run, with its writer and clock."""

    def __init__(self, store: PaperStore, key: object) -> None:
        self.store = store
        self.clock = PaperClock()
        self.writer = BatchWriter(store, on_failure=self._failed)
        self._key = key
        #: Connected account names and how to tell each that the file failed.
        self._members: dict[str, Failure] = {}
        #: The last batch of each account that left: it must commit before a reload.
        self._left: dict[str, int] = {}
        self._clock_scope = trio.CancelScope()
        trio.lowlevel.spawn_system_task(self._run_clock, name=f"paper-clock:{store.path}")

    @classmethod
    async def join(cls, path: str | None, account: str, on_failure: Failure) -> PaperExchange:
        """The exchange of ``path`` (opened if need be), with ``account`` a member."""
        table = _open_exchanges()
        # An in-memory file belongs to one connector: never shared.
        key: object = object() if (path or MEMORY) == MEMORY else path
        while True:
            opening = table.get(key)
            if opening is None:
                opening = table[key] = _Opening()
                try:
                    open_store = functools.partial(PaperStore, path, first_account=account)
                    store = await trio.to_thread.run_sync(open_store)
                    try:
                        opening.exchange = cls(store, key)
                    except BaseException:
                        store.close()
                        raise
                except BaseException:
                    del table[key]
                    raise
                finally:
                    opening.done.set()
            await opening.done.wait()
            exchange = opening.exchange
            if exchange is not None:
                break  # else its opener failed: try it ourselves
        exchange._admit(account, on_failure)
        return exchange

    def _admit(self, account: str, on_failure: Failure) -> None:
        if account in self._members:
            raise BrokerUnavailable(
                f"paper account {account} in {self.store.path} is in use by another connection",
                broker=account,
            )
        self._members[account] = on_failure

    async def leave(self, account: str, last_seq: int) -> None:
        """``account`` disconnected (its last staged batch ``last_seq``); the last one closes."""
        if self._members.pop(account, None) is None:
            return
        self._left[account] = last_seq
        if self._members:
            return
        self._forget()
        self._clock_scope.cancel()
        try:
            await self.writer.aclose()
        finally:
            self.store.close()

    def reload_ready(self, account: str) -> bool:
        """Whether what ``account`` wrote before it last left is in the file."""
        return self.writer.committed_seq >= self._left.get(account, 0)

    def _forget(self) -> None:
        table = _open_exchanges()
        opening = table.get(self._key)
        if opening is not None and opening.exchange is self:
            del table[self._key]

    def _failed(self, error: BaseException) -> None:
        # New connectors must open the file afresh (once every member has left).
        self._forget()
        for tell in list(self._members.values()):
            tell(self.writer.unavailable())

    async def _run_clock(self) -> None:
        with self._clock_scope:
            await self.clock.run()
