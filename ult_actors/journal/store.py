"""What the service needs of an order journal: the ``OrderStore`` protocol and its opener."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from ult_actors.messages import Fill, Order, ReportQuery
from ult_actors.report.inputs import CostInputs


class OrderStore(Protocol):
    """What the service needs of a journal."""

    #: Why the store cannot be written now (e.g. "disk full"); None while it can.
    unavailable: str | None

    async def availability_changed(self) -> None:
        """Return at the next change of ``unavailable``."""

    async def record(
        self, order: Order, *, event: str = "update", fsync_by_ack: bool = False
    ) -> None:
        """Store ``order`` as the latest state of its client order id; return once durable.
        ``fsync_by_ack``: the store may return before a machine crash would spare the
        record (a ``kill -9`` never takes it), if the caller awaits ``durable`` before it
        acknowledges the order (``synchronous = "full"``: its fsync runs meanwhile)."""

    def record_now(
        self,
        order: Order,
        *,
        event: str = "update",
        fsync_by_ack: bool = False,
        answer_follows: bool = False,
    ) -> Awaitable[None] | None:
        """``record`` begun by a plain call: ``None`` once the record is as durable as
        ``record`` would return it, else the wait for the rest of ``record`` (to await).
        ``answer_follows``: the caller gives ``record_answer`` before anything else runs."""

    def record_answer(self, order: Order) -> None:
        """The answer to the record ``record_now(..., answer_follows=True)`` made last:
        ``order``, its state now (the record's own order if no answer came), stored as
        ``record_soon`` stores news; the store may write the record in this state instead
        of twice (the record as made stays durable until then)."""

    def records_now(self, fsync_by_ack: bool = False) -> bool:
        """Whether a ``record_now`` made now is likely to return ``None`` (nothing to wait
        for: no writer's turn); ``fsync_by_ack``: for a record whose ack awaits ``durable``
        (its fsync may still run when it returns: ``acks_wait``)."""

    def acks_wait(self) -> bool:
        """Whether a record made ``fsync_by_ack`` returned before it was as durable as
        ``record`` promises: its order's ack awaits ``durable`` first."""

    def lacks(self, client_order_id: str) -> bool:
        """Whether the store surely has no record of ``client_order_id``, told without a
        read (``False``: it has one, or only a read would tell)."""

    async def durable(self, client_order_id: str) -> None:
        """Return once what ``record(..., fsync_by_ack=True)`` returned before is as durable
        as ``record`` promises; ``JournalUnavailable`` if it cannot be (the order
        ``client_order_id`` was sent)."""

    def durable_now(self, client_order_id: str) -> bool:
        """``durable`` by a plain call where it can be had without a wait of the loop's
        (``JournalUnavailable`` likewise): True once durable, False to await ``durable``."""

    def record_soon(self, order: Order, *, event: str = "update") -> None:
        """Store ``order`` without waiting until it is durable (the brokers' news about an
        order already sent: a crash before it is durable leaves that order to restart
        reconciliation). Visible to ``get`` at once."""

    def record_fill(self, fill: Fill) -> None:
        """Store one execution (with its fees) once, in the background like ``record_soon``."""

    async def get(self, client_order_id: str) -> Order | None:
        """The latest state of one order by client order id."""

    async def get_by_order_id(self, order_id: str) -> Order | None:
        """The latest state of one order by broker order id."""

    async def find_by_order_id(self, order_id: str) -> list[Order]:
        """Every order, at any broker, whose broker order id is ``order_id``."""

    async def list_orders(
        self, *, open_only: bool = False, broker: str | None = None, limit: int = 1000
    ) -> list[Order]:
        """Orders, newest first."""

    async def non_terminal(self, broker: str | None = None) -> list[Order]:
        """Every order not yet final (restart reconciliation works from these)."""

    async def cost_inputs(self, query: ReportQuery) -> CostInputs:
        """What a cost report on ``query`` is computed from: the orders it may cover
        (created since ``query.since_ns``, of its broker), each with its fills, and
        every broker's last fill of a symbol (an order's opportunity cost is priced
        at it). A superset: the report filters exactly. Read as the report is built,
        off the trio thread; what was recorded before this call is in it."""


#: Opens a store for one journal incarnation; the journal actor calls it on each (re)start.
StoreOpener = Callable[[], AbstractAsyncContextManager[OrderStore]]
