"""A connector wrapper that breaks calls the way a remote broker does, on purpose.

``FaultyConnector`` wraps any ``Connector`` and consults one ``FaultPlan``
before and after each call. The plan holds two kinds of fault:

- **drawn**: with probability ``rate`` a call fails, its kind drawn by the
  weights in ``SUBMIT_FAULTS`` / ``QUERY_FAULTS`` from a ``random.Random``
  seeded by ``seed`` (so a run can be replayed); the update stream drops
  after exponentially distributed intervals of mean ``stream_drop_every_s``.
  Each is appended to ``log_path`` as one JSON line (one ``write`` each, so
  a ``kill -9`` loses none already made).
- **switched** by the caller: ``gate`` holds submits until set, ``pull``
  cuts the update stream now, ``crash_after_apply`` makes the next N submits
  reach the venue and then raise ``RuntimeError`` (what a bug looks like: the
  broker actor crashes with the order applied and unanswered, and the crash
  report names the exception's type, as it would a real one).

Fault kinds on a call:

- ``drop``: the connection drops before the broker read the request (not applied);
- ``http_5xx``: the broker answers 503 (not applied);
- ``http_429``: rate limited, with a retry-after (not applied);
- ``slow``: the reply comes late (applied);
- ``lose_reply``: the broker applied the order, then the reply was lost;
- ``actor_crash``: the broker actor crashes right after the order was applied;
- ``stream_drop``: the update stream is cut, which restarts the broker actor.

A replace, an order list and a submit answered with its news are broken as a
submit is (gate, drawn faults, ``crash_after_apply``; a reply lost after the
venue applied the order leaves its news to the venue's stream). The wrapper
offers them only where the connector it wraps does: ``FaultyConnector(inner,
plan)`` is built as the subclass with exactly ``inner``'s capabilities, so the
service's ``isinstance`` checks of ``SupportsReplace`` / ``SupportsOrderLists``
/ ``AnswersWithNews`` answer through the wrapper as they would without it.
"""

from __future__ import annotations

import functools
import json
import os
import random
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import trio

from ult_actors.brokers.base import (
    AnswersWithNews,
    Connector,
    SubmitAnswer,
    SupportsOrderLists,
    SupportsReplace,
    UpdateSink,
)
from ult_actors.errors import BrokerUnavailable, RateLimited
from ult_actors.messages import (
    Account,
    Contingency,
    Order,
    OrderListRequest,
    OrderRequest,
    OrderUpdate,
    Position,
    ReplaceRequest,
)

T = TypeVar("T")

#: Relative weights of the fault kinds drawn on a submit.
SUBMIT_FAULTS = {
    "drop": 3,
    "http_5xx": 3,
    "http_429": 2,
    "slow": 2,
    "lose_reply": 3,
    "actor_crash": 1,
}
#: Relative weights of the fault kinds drawn on a query or a cancel.
QUERY_FAULTS = {"drop": 2, "http_5xx": 2, "http_429": 1, "slow": 1}


class FaultPlan:
    """What goes wrong, and when: seeded draws, switches the caller flips, and a log of each fault.

    With the defaults nothing is drawn; only the switches act.
    """

    def __init__(
        self,
        seed: int = 0,
        rate: float = 0.0,
        log_path: Path | None = None,
        *,
        stream_drop_every_s: float = 0.0,
    ) -> None:
        self.rng = random.Random(seed)
        self.rate = rate
        self.stream_drop_every_s = stream_drop_every_s
        self._fd = (
            os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600) if log_path else None
        )
        #: While set to an event not yet set, submits wait for it.
        self.gate: trio.Event | None = None
        #: Set it to cut the update stream now; the next incarnation gets a fresh one.
        self.pull = trio.Event()
        #: The next N submits reach the venue, then raise ``RuntimeError``.
        self.crash_after_apply = 0
        #: How many times a wrapped connector connected (the first connect and each restart).
        self.connects = 0

    def roll(self, op: str, weights: dict[str, int]) -> str | None:
        """The fault for this call, or ``None``."""
        if self.rng.random() >= self.rate:
            return None
        kinds = list(weights)
        kind = self.rng.choices(kinds, weights=[weights[k] for k in kinds])[0]
        self.note(kind, op)
        return kind

    def note(self, kind: str, op: str) -> None:
        """Record one fault in the log file (if there is one)."""
        if self._fd is not None:
            os.write(self._fd, json.dumps({"kind": kind, "op": op}).encode() + b"\n")

    def slow_s(self) -> float:
        """How late a ``slow`` reply comes."""
        return self.rng.uniform(0.01, 0.15)

    def close(self) -> None:
        """Close the log file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class FaultyConnector:
    """A connector that breaks calls to the one it wraps, as its ``FaultPlan`` says.

    Constructing it yields the subclass that has ``replace`` and ``submit_list``
    exactly when ``inner`` has them.
    """

    def __new__(cls, inner: Connector, plan: FaultPlan) -> FaultyConnector:
        if cls is FaultyConnector:
            cls = _with_capabilities(
                isinstance(inner, SupportsReplace),
                isinstance(inner, SupportsOrderLists),
                isinstance(inner, AnswersWithNews),
            )
        return super().__new__(cls)

    def __init__(self, inner: Connector, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan
        self.name = inner.name

    async def _fail(self, kind: str | None, what: str) -> None:
        """Raise (or wait) as fault ``kind`` does before the call reaches the broker."""
        if kind == "drop":
            raise BrokerUnavailable(f"injected: connection dropped{what}", broker=self.name)
        if kind == "http_5xx":
            raise BrokerUnavailable("injected: HTTP 503", broker=self.name)
        if kind == "http_429":
            raise RateLimited("injected: HTTP 429", retry_after=0.02, broker=self.name)
        if kind == "slow":
            await trio.sleep(self.plan.slow_s())

    async def connect(self) -> None:
        self.plan.connects += 1
        await self.inner.connect()

    async def disconnect(self) -> None:
        await self.inner.disconnect()

    async def _applied(
        self,
        op: str,
        call: Callable[[], Awaitable[T]],
        unanswered: Callable[[T], None] = lambda _result: None,
    ) -> T:
        """Run ``call`` (one that places or changes orders) broken as a submit is;
        ``unanswered(result)`` when the venue applied it and the caller is not told."""
        if self.plan.gate is not None:
            await self.plan.gate.wait()
        kind = self.plan.roll(op, SUBMIT_FAULTS)
        await self._fail(kind, " before the order")
        result = await call()
        if kind in ("lose_reply", "actor_crash") or self.plan.crash_after_apply > 0:
            unanswered(result)
        if kind == "lose_reply":
            raise BrokerUnavailable("injected: reply lost after the order was applied")
        if kind == "actor_crash":
            raise RuntimeError("injected: broker actor crashed after the order was applied")
        if self.plan.crash_after_apply > 0:
            self.plan.crash_after_apply -= 1
            raise RuntimeError("injected: connection reset after the venue took the order")
        return result

    async def submit(self, request: OrderRequest) -> Order:
        return await self._applied("submit", lambda: self.inner.submit(request))

    async def cancel(self, order_id: str) -> Order:
        await self._fail(self.plan.roll("cancel", QUERY_FAULTS), "")
        return await self.inner.cancel(order_id)

    async def get_order(self, order_id: str) -> Order:
        await self._fail(self.plan.roll("lookup", QUERY_FAULTS), "")
        return await self.inner.get_order(order_id)

    async def get_order_by_client_id(self, client_order_id: str) -> Order:
        await self._fail(self.plan.roll("lookup", QUERY_FAULTS), "")
        return await self.inner.get_order_by_client_id(client_order_id)

    async def open_orders(self) -> list[Order]:
        await self._fail(self.plan.roll("open_orders", QUERY_FAULTS), "")
        return await self.inner.open_orders()

    async def positions(self) -> list[Position]:
        await self._fail(self.plan.roll("positions", QUERY_FAULTS), "")
        return await self.inner.positions()

    async def account(self) -> Account:
        return await self.inner.account()

    async def close_position(self, position: Position, client_order_id: str) -> Order | None:
        return await self.inner.close_position(position, client_order_id)

    async def close_all_positions(self) -> list[Order] | None:
        return await self.inner.close_all_positions()

    async def stream_updates(
        self,
        sink: UpdateSink,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.inner.stream_updates, sink)
            task_status.started()
            await self._stream_cut()

    async def _stream_cut(self) -> None:
        """Return never, or raise ``BrokerUnavailable`` when the plan cuts the stream."""
        plan = self.plan
        pulled = plan.pull
        if plan.stream_drop_every_s > 0:
            with trio.move_on_after(plan.rng.expovariate(1 / plan.stream_drop_every_s)):
                await pulled.wait()
                plan.pull = trio.Event()  # the next incarnation runs until pulled again
                raise BrokerUnavailable("injected: update stream cut", broker=self.name)
            plan.note("stream_drop", "stream")
            raise BrokerUnavailable("injected: update stream dropped", broker=self.name)
        await pulled.wait()
        plan.pull = trio.Event()
        raise BrokerUnavailable("injected: update stream cut", broker=self.name)


class _FaultyReplace(FaultyConnector):
    """The wrapper of a connector whose venue replaces orders."""

    async def replace(self, order: Order, change: ReplaceRequest) -> Order:
        inner: Any = self.inner  # a SupportsReplace, as __new__ chose this class
        return await self._applied("replace", lambda: inner.replace(order, change))


class _FaultyLists(FaultyConnector):
    """The wrapper of a connector whose venue carries order lists."""

    @property
    def native_contingencies(self) -> frozenset[Contingency]:
        """The wrapped connector's, unchanged."""
        inner: Any = self.inner
        return frozenset(inner.native_contingencies)

    async def submit_list(self, request: OrderListRequest) -> list[Order]:
        inner: Any = self.inner
        return await self._applied("submit_list", lambda: inner.submit_list(request))


class _FaultyAnswers(FaultyConnector):
    """The wrapper of a connector that answers a submit with its news."""

    async def submit_answer(self, request: OrderRequest) -> SubmitAnswer:
        inner: Any = self.inner  # an AnswersWithNews, as __new__ chose this class
        return await self._applied(
            "submit",
            lambda: inner.submit_answer(request),
            lambda answer: inner.redeliver(answer.news),  # the venue streams them
        )

    def redeliver(self, news: Sequence[OrderUpdate]) -> None:
        inner: Any = self.inner
        inner.redeliver(news)


@functools.cache
def _with_capabilities(replace: bool, lists: bool, answers: bool) -> type[FaultyConnector]:
    """The wrapper class with these capabilities of the wrapped connector."""
    mixins = ((_FaultyReplace, replace), (_FaultyLists, lists), (_FaultyAnswers, answers))
    bases = tuple(mixin for mixin, has in mixins if has) or (FaultyConnector,)
    return bases[0] if len(bases) == 1 else type("FaultyConnector", bases, {})
