"""The embedded paper broker: a simulated venue that needs no account and no network.

It is the default connection (``kind = "paper"``) and what ``scripts/serve``
runs with no configuration. The venue (``paper.venue``) matches orders
against a seeded random walk of prices (``paper.feed``), books fills into a
cash account with positions and P&L (``paper.account``) and keeps all of it
in the SQLite file every paper connection of the service shares
(``paper.store``, opened through ``paper.exchange``), so the account
survives restarts: every broker-actor incarnation builds a fresh
``PaperConnector`` from the same settings, and ``connect()`` reloads the
same book, as reconnecting to a real broker would. ``ult paper reset``
(``reset_paper_state``) starts afresh.

An account the file does not have yet is opened on first use (an order, or
a test driving its prices); until then the connector answers queries as a
fresh account would, so a thousand configured connections cost little until
they trade.

Nothing the venue did is reported before it would survive a ``kill -9``:
each venue call writes its changes to the change log before it returns
(``paper.writer``), so answers and updates need no wait; the file takes
them in a few ms later, off the trio thread.

Time: the shared clock (``paper.clock``) ticks the venue every
``tick_interval_s`` (trio time) while ``stream_updates`` runs; with
``latency_ms`` above 0, orders are acknowledged at once and matched that
much later. Tests drive prices by hand with ``set_price`` and ``tick``.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

import msgspec
import trio

from ult_actors.brokers.base import SubmitAnswer, UpdateSink
from ult_actors.brokers.paper.clock import PaperClock
from ult_actors.brokers.paper.exchange import PaperExchange
from ult_actors.brokers.paper.feed import PriceFeed
from ult_actors.brokers.paper.settings import (
    PaperSettings,
    check_paper_settings,
    start_prices,
)
from ult_actors.brokers.paper.store import reset_store, unusable_account
from ult_actors.brokers.paper.venue import PaperVenue
from ult_actors.errors import BrokerUnavailable, ConfigError, NotFound
from ult_actors.holding import SharedBooking
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
from ult_actors.mypyc_hints import mypyc_attr

__all__ = ["PaperConnector", "reset_paper_state"]

T = TypeVar("T")


def reset_paper_state(path: str, account: str | None = None) -> bool:
    """Delete the paper account ``account`` stored at ``path`` (all of them: ``None``).

    The next connect starts with fresh cash. Returns whether there was an
    account to delete. Raises ``BrokerUnavailable`` while a service has the
    file open: stop the service first.
    """
    return reset_store(path, account)


@mypyc_attr(allow_interpreted_subclasses=True)
class PaperConnector:
    """The connector protocol onto a ``PaperVenue`` (see ``ult_actors.brokers.base``).

    Compiled in the compiled build (its per-order calls: ``answer_now``, ``price``);
    open to interpreted subclasses, as tests' and the chaos bench's are.
    """

    #: Every order list is the venue's own (``SupportsOrderLists``). A class variable:
    #: compiled, an instance attribute would hide a subclass's own from compiled code.
    native_contingencies: ClassVar[frozenset[Contingency]] = frozenset({"bracket", "oco", "oto"})

    def __init__(
        self,
        name: str,
        settings: PaperSettings,
        *,
        now_ns: Callable[[], int] = time.time_ns,
        rng: random.Random | None = None,
        booking: SharedBooking | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self._now_ns = now_ns
        #: The service's books' booking of fills, which the venue's account books through
        #: (``PaperAccount``); ``None``: a booking of its own.
        self._booking = booking
        #: Drives the price walk; seeded from ``settings.seed`` unless injected. Made with
        #: the venue (``_walk``): a Random holds 2.5 KB of state, and most of a thousand
        #: configured connections never open their account.
        self._rng: random.Random | None = rng
        self._exchange: PaperExchange | None = None
        self._venue: PaperVenue | None = None
        self._stream_scope: trio.CancelScope | None = None
        #: Bumped when the stream stops: clock calls made for an older one do nothing.
        self._stream_epoch = 0
        self._streaming = False
        #: The request ``mark_validated`` named last, until ``submit`` takes it.
        self._validated: OrderRequest | None = None
        # The venue emits synchronously; the stream task hands updates to the sink.
        # Unbounded: the venue cannot wait, and its output is bounded by the orders
        # sent. An exception in it ends the stream (the venue or its file failed).
        # A list and the waiting task, not a trio memory channel: 1.8 KB less a
        # connection (its deque, two ordered dicts and two sets; ready6).
        #: Updates (or the failure) queued for the stream, in order.
        self._queued: list[OrderUpdate | BaseException] = []
        #: The stream's task while it waits for the next update (``None``: not waiting).
        self._reader: trio.lowlevel.Task | None = None
        #: The updates of orders whose ``submit_answer`` runs now, by client order id:
        #: they go back with the answer, not on the stream.
        self._claims: dict[str, list[OrderUpdate]] = {}

    @property
    def venue(self) -> PaperVenue:
        """The account's venue, opened on first use (``BrokerUnavailable`` when not connected)."""
        if self._venue is None:
            self._venue = self._open_venue()
        return self._venue

    def _joined(self) -> PaperExchange:
        if self._exchange is None:
            raise BrokerUnavailable(f"paper broker {self.name} is not connected", broker=self.name)
        return self._exchange

    def _open_venue(self) -> PaperVenue:
        exchange = self._joined()
        if not exchange.reload_ready(self.name):
            raise BrokerUnavailable(
                f"paper account {self.name}: its last writes are still being saved",
                broker=self.name,
            )
        store = exchange.store
        try:
            feed = PriceFeed(
                self._walk(),
                start_prices=start_prices(self.settings),
                default_start_price=self.settings.default_start_price,
                volatility_bps=self.settings.volatility_bps,
                price_decimals=self.settings.price_decimals,
            )
            venue = PaperVenue(
                self.name,
                self.settings,
                store.load(self.name),
                feed,
                store=store,
                writer=exchange.writer,
                now_ns=self._now_ns,
                emit=self._emit,
                booking=self._booking,
            )
        except (msgspec.DecodeError, ArithmeticError, ValueError) as exc:
            # A damaged account: refusing it beats a restart loop (ConfigError is fatal).
            if isinstance(exc, ConfigError):
                raise
            raise unusable_account(store.path, exc) from None
        if self._streaming:
            self._start_ticks(venue)
        return venue

    def _walk(self) -> random.Random:
        """The price walk's Random: the injected one, else made now from ``settings.seed``
        and kept (a venue opened again continues the same walk)."""
        rng = self._rng
        if rng is None:
            rng = self._rng = random.Random(self.settings.seed)
        return rng

    def _opened(self) -> PaperVenue | None:
        """The venue if the account exists; ``None`` for one never used (fresh)."""
        if self._venue is None and self.name not in self._joined().store.accounts:
            return None
        return self.venue

    async def connect(self) -> None:
        """Join the accounts file; load the account if the file has it."""
        check_paper_settings(self.settings)
        if self._exchange is not None:
            return
        self._exchange = await PaperExchange.join(self.settings.state_path, self.name, self._fail)
        try:
            if self.name in self._exchange.store.accounts:
                self.venue  # noqa: B018  # an account with a past resumes now
        except BaseException:
            await self.disconnect()
            raise

    async def disconnect(self) -> None:
        """Leave the accounts file once the account's writes are in; safe to call twice."""
        venue, self._venue = self._venue, None
        exchange, self._exchange = self._exchange, None
        self._stream_epoch += 1
        if self._stream_scope is not None:
            self._stream_scope.cancel()  # a deliberate close ends the stream quietly
        if exchange is None:
            await trio.lowlevel.checkpoint_if_cancelled()
            return
        last = 0
        try:
            if venue is not None and exchange.writer.failure is None:
                venue.save_prices()
                last = venue.staged_seq
                await exchange.writer.durable(last)
        finally:
            await exchange.leave(self.name, last)

    def _fail(self, error: BaseException) -> None:
        """The venue or its file failed: the stream ends with ``error``."""
        self._put(error)

    @property
    def answers_in_process(self) -> bool:
        """Matched at once, here (``latency_ms`` 0): no wait on anything outside (``AnswersInProcess``)."""
        return self.settings.latency_ms == 0

    def mark_validated(self, request: OrderRequest) -> None:
        """``request``, this very object, passed ``validate_order``: the next ``submit`` of
        it checks only the venue's own rules (``SupportsValidatedOrders``)."""
        self._validated = request

    async def submit(self, request: OrderRequest) -> Order:
        """Place an order; matched before returning unless ``latency_ms`` > 0."""
        # Taken before any await: another order's mark may come in the meantime.
        validated, self._validated = request is self._validated, None
        await trio.lowlevel.checkpoint_if_cancelled()
        return self._place(request, validated)

    def _place(self, request: OrderRequest, validated: bool) -> Order:
        latency = self.settings.latency_ms
        venue = self.venue
        order = venue.submit(request, in_transit=latency > 0, validated=validated)
        if latency > 0:
            arrive = functools.partial(self._arrive, venue, order.id)
            self._clock().call_at(trio.current_time() + latency / 1000, arrive)
        return order

    @property
    def answers_now(self) -> bool:
        """Whether ``answer_now`` answers as ``submit_answer`` would (``AnswersAtOnce``):
        while ``answers_in_process``, unless a subclass makes its own ``submit`` (one that
        waits, counts or fails, as tests' do), which only the awaited submit goes through."""
        return self.answers_in_process and type(self).submit is PaperConnector.submit

    def answer_now(
        self, request: OrderRequest, *, validated: bool
    ) -> tuple[Order, tuple[OrderUpdate, ...]]:
        """``submit_answer`` as a plain call: nothing in it waits (``AnswersAtOnce``).
        ``validated``: ``request`` passed ``validate_order`` (as ``mark_validated`` says)."""
        coid = request.client_order_id
        assert coid is not None, "the broker actor sets it"
        news: list[OrderUpdate] = []
        self._claims[coid] = news
        try:
            order = self._place(request, validated)
        except BaseException:
            self.redeliver(news)  # the caller never sees them: the stream delivers them
            raise
        finally:
            del self._claims[coid]
        # A plain tuple (``AnswersAtOnce``), not a ``SubmitAnswer``: see there.
        return order, tuple(news)

    async def submit_answer(self, request: OrderRequest) -> SubmitAnswer:
        """``submit``, with the order's updates of the call in the answer (``AnswersWithNews``):
        a market order's fill comes with it, not on the stream."""
        coid = request.client_order_id
        assert coid is not None, "the broker actor sets it"
        news: list[OrderUpdate] = []
        self._claims[coid] = news
        try:
            order = await self.submit(request)
        except BaseException:
            self.redeliver(news)  # the caller never sees them: the stream delivers them
            raise
        finally:
            del self._claims[coid]
        return SubmitAnswer(order, tuple(news))

    def redeliver(self, news: Sequence[OrderUpdate]) -> None:
        """Put ``news`` of a ``submit_answer`` on the update stream after all."""
        for update in news:
            self._put(update)

    def _emit(self, update: OrderUpdate) -> None:
        """The venue's update: to the stream, or to the ``submit_answer`` of its order."""
        if self._claims:
            claimed = self._claims.get(update.order.client_order_id)
            if claimed is not None:
                claimed.append(update)
                return
        self._put(update)

    def _put(self, item: OrderUpdate | BaseException) -> None:
        """Queue ``item`` for the stream, waking it if it waits."""
        self._queued.append(item)
        reader = self._reader
        if reader is not None:
            self._reader = None
            trio.lowlevel.reschedule(reader)

    async def _next_batch(self) -> list[OrderUpdate | BaseException]:
        """Every item queued, once there is one, after one scheduler round (as a memory
        channel's ``receive`` then ``receive_nowait`` until empty: a round per wake-up,
        not per update; a market order emits two, accepted and filled, in one go)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._queued:
            await trio.lowlevel.cancel_shielded_checkpoint()
        else:
            self._reader = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort_wait)
        batch, self._queued = self._queued, []
        return batch

    def _abort_wait(self, _raise_cancel: Any) -> trio.lowlevel.Abort:
        self._reader = None
        return trio.lowlevel.Abort.SUCCEEDED

    async def cancel(self, order_id: str) -> Order:
        return await self._ask(lambda venue: venue.cancel(order_id), self._none(repr(order_id)))

    async def replace(self, order: Order, change: ReplaceRequest) -> Order:
        """The venue's own replace: the old order ``replaced``, the rest on new terms."""
        return await self._ask(
            lambda venue: venue.replace(order.id, change), self._none(repr(order.id))
        )

    async def submit_list(self, request: OrderListRequest) -> list[Order]:
        """A bracket, OCO or OTO as one list at the venue (waiting legs ``held``)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        venue = self.venue
        return venue.submit_list(request)

    async def get_order(self, order_id: str) -> Order:
        return await self._ask(lambda venue: venue.get(order_id), self._none(repr(order_id)))

    async def get_order_by_client_id(self, client_order_id: str) -> Order:
        return await self._ask(
            lambda venue: venue.get_by_client_id(client_order_id),
            self._none(f"with client_order_id {client_order_id!r}"),
        )

    async def open_orders(self) -> list[Order]:
        return await self._ask(PaperVenue.open_orders, list)

    async def positions(self) -> list[Position]:
        return await self._ask(PaperVenue.positions, list)

    async def account(self) -> Account:
        return await self._ask(PaperVenue.account_info, self._fresh_account)

    async def _ask(self, ask: Callable[[PaperVenue], T], fresh: Callable[[], T]) -> T:
        """``ask`` the venue; an account never used yet answers ``fresh()`` without being
        opened. ``BrokerUnavailable`` once the file failed: the venue may hold what it lost."""
        await trio.lowlevel.checkpoint_if_cancelled()
        self._joined().writer.check()
        venue = self._opened()
        if venue is None:
            return fresh()
        return ask(venue)

    def _none(self, which: str) -> Callable[[], Order]:
        """A fresh account's answer for an order: ``NotFound``, worded as the venue's."""

        def fresh() -> Order:
            raise NotFound(f"paper broker {self.name}: no order {which}")

        return fresh

    def _fresh_account(self) -> Account:
        cash = self.settings.starting_cash
        return Account(
            broker=self.name,
            cash=cash,
            buying_power=cash,
            equity=cash,
            currency=self.settings.currency,
        )

    async def close_position(self, position: Position, client_order_id: str) -> Order | None:
        """The paper venue has no close of its own: ``None``, so the closing order is a market order."""
        return None

    async def close_all_positions(self) -> list[Order] | None:
        """The paper venue has no close-all of its own: ``None`` (each position is closed in turn)."""
        return None

    async def stream_updates(
        self, sink: UpdateSink, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Deliver the venue's updates, with its clock running, until cancelled."""
        self._clock()  # refuse to stream when not connected
        with trio.CancelScope() as scope:
            self._stream_scope = scope
            self._streaming = True
            try:
                if self._venue is not None:
                    self._start_ticks(self._venue)
                task_status.started()
                while True:
                    batch = await self._next_batch()
                    taken = 0
                    try:
                        for item in batch:
                            taken += 1
                            if isinstance(item, BaseException):
                                raise item
                            await sink(item)
                    finally:
                        if taken < len(batch):  # ended early: the rest stays queued, in order
                            self._queued[:0] = batch[taken:]
            finally:
                self._streaming = False
                self._stream_epoch += 1

    # -- the shared clock -----------------------------------------------------------

    def _clock(self) -> PaperClock:
        return self._joined().clock

    def _start_ticks(self, venue: PaperVenue) -> None:
        interval = self.settings.tick_interval_s
        if interval > 0:
            due = trio.current_time() + interval
            self._clock().call_at(
                due, functools.partial(self._tick, venue, self._stream_epoch, due)
            )

    def _tick(self, venue: PaperVenue, epoch: int, due: float) -> None:
        if epoch != self._stream_epoch or venue is not self._venue:
            return  # the stream it ticked for has ended
        try:
            venue.tick()
        except Exception as exc:  # a venue fault ends this connection, not the clock
            self._fail(exc)
            return
        due += self.settings.tick_interval_s
        self._clock().call_at(due, functools.partial(self._tick, venue, epoch, due))

    def _arrive(self, venue: PaperVenue, order_id: str) -> None:
        if venue is not self._venue:
            return  # disconnected: a reload makes travelling orders arrive
        try:
            venue.arrive(order_id)
        except Exception as exc:
            self._fail(exc)

    # -- driving the simulated market (tests and rehearsals) ----------------------

    def set_price(self, symbol: str, price: Decimal | str | int) -> None:
        """Move ``symbol`` to ``price`` now and match its resting orders."""
        self.venue.set_price(symbol, Decimal(price))

    def execute(self, order_id: str, qty: Decimal | str | int) -> None:
        """Fill ``qty`` of a resting order now, as if a counterparty came."""
        self.venue.execute(order_id, Decimal(qty))

    def tick(self) -> None:
        """One step of the price walk, as the clock would take it."""
        self.venue.tick()

    def price(self, symbol: str) -> Decimal:
        """The current price of ``symbol``."""
        return self.venue.feed.price(symbol)
