"""The embedded paper broker: a simulated venue that needs no account and no network.

It is the default connection (``kind = "paper"``) and what ``scripts/serve``
runs with no configuration. The venue (``paper.venue``) matches orders
against a seeded random walk of prices (``paper.feed``), books fills into a
cash account with positions and P&L (``paper.account``) and keeps all of it
in a SQLite file (``paper.store``), so the account survives restarts:
every broker-actor incarnation builds a fresh ``PaperConnector`` from the
same settings, and ``connect()`` reloads the same book, as reconnecting to a
real broker would. ``ult paper reset`` (``reset_paper_state``) starts afresh.

Time: the venue's clock ticks every ``tick_interval_s`` (trio time) while
``stream_updates`` runs; with ``latency_ms`` above 0, orders are
acknowledged at once and matched that much later, also by the stream task.
Tests drive prices by hand with ``set_price`` and ``tick``.
"""

from __future__ import annotations

import math
import random
import sqlite3
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec
import trio

from ult_actors.brokers.base import UpdateSink
from ult_actors.brokers.paper.feed import PriceFeed
from ult_actors.brokers.paper.settings import (
    PaperSettings,
    check_paper_settings,
    start_prices,
)
from ult_actors.brokers.paper.store import PaperStore, reset_store, unusable_account
from ult_actors.brokers.paper.venue import PaperVenue
from ult_actors.errors import BrokerUnavailable, ConfigError
from ult_actors.messages import Account, Order, OrderRequest, OrderUpdate, Position

__all__ = ["PaperConnector", "reset_paper_state"]


def reset_paper_state(path: str) -> bool:
    """Delete the paper account stored at ``path``; the next connect starts with fresh cash.

    Returns whether there was an account to delete. Raises ``BrokerUnavailable``
    while a service has the account open: stop the service first.
    """
    return reset_store(path)


class PaperConnector:
    """The connector protocol onto a ``PaperVenue`` (see ``ult_actors.brokers.base``)."""

    def __init__(
        self,
        name: str,
        settings: PaperSettings,
        *,
        now_ns: Callable[[], int] = time.time_ns,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self._now_ns = now_ns
        #: Drives the price walk; seeded from ``settings.seed`` unless injected.
        self._rng = rng if rng is not None else random.Random(settings.seed)
        self._venue: PaperVenue | None = None
        self._stream_scope: trio.CancelScope | None = None
        # The venue emits synchronously; the stream task hands updates to the sink.
        # Unbounded: the venue cannot wait, and its output is bounded by the orders sent.
        self._updates_in, self._updates_out = trio.open_memory_channel[OrderUpdate](math.inf)
        self._arrivals_in, self._arrivals_out = trio.open_memory_channel[tuple[float, str]](
            math.inf
        )

    @property
    def venue(self) -> PaperVenue:
        """The connected venue (``BrokerUnavailable`` before ``connect``/after ``disconnect``)."""
        if self._venue is None:
            raise BrokerUnavailable(f"paper broker {self.name} is not connected", broker=self.name)
        return self._venue

    async def connect(self) -> None:
        """Open (or create) the account file and load the book."""
        check_paper_settings(self.settings)
        if self._venue is not None:
            return
        store = PaperStore(self.settings.state_path)
        try:
            feed = PriceFeed(
                self._rng,
                start_prices=start_prices(self.settings),
                default_start_price=self.settings.default_start_price,
                volatility_bps=self.settings.volatility_bps,
                price_decimals=self.settings.price_decimals,
            )
            self._venue = PaperVenue(
                self.name,
                self.settings,
                store,
                feed,
                now_ns=self._now_ns,
                emit=self._updates_in.send_nowait,
            )
        except (sqlite3.Error, msgspec.DecodeError, ArithmeticError, ValueError) as exc:
            # A damaged file: refusing it beats a restart loop (ConfigError is fatal).
            store.close()
            if isinstance(exc, ConfigError):
                raise
            raise unusable_account(store.path, exc) from None
        except BaseException:
            store.close()
            raise
        await trio.lowlevel.checkpoint()

    async def disconnect(self) -> None:
        """Close the account file; safe to call twice."""
        venue, self._venue = self._venue, None
        if self._stream_scope is not None:
            self._stream_scope.cancel()  # a deliberate close ends the stream quietly
        if venue is not None:
            venue.store.close()
        await trio.lowlevel.checkpoint_if_cancelled()

    async def submit(self, request: OrderRequest) -> Order:
        """Place an order; matched before returning unless ``latency_ms`` > 0."""
        # No schedule point on the way: the broker actor runs paper inline and
        # a yield per order would cost more than the match itself.
        await trio.lowlevel.checkpoint_if_cancelled()
        latency = self.settings.latency_ms
        order = self.venue.submit(request, in_transit=latency > 0)
        if latency > 0:
            self._arrivals_in.send_nowait((trio.current_time() + latency / 1000, order.id))
        return order

    async def cancel(self, order_id: str) -> Order:
        await trio.lowlevel.checkpoint_if_cancelled()
        return self.venue.cancel(order_id)

    async def get_order(self, order_id: str) -> Order:
        await trio.lowlevel.checkpoint_if_cancelled()
        return self.venue.get(order_id)

    async def get_order_by_client_id(self, client_order_id: str) -> Order:
        await trio.lowlevel.checkpoint_if_cancelled()
        return self.venue.get_by_client_id(client_order_id)

    async def open_orders(self) -> list[Order]:
        await trio.lowlevel.checkpoint_if_cancelled()
        return self.venue.open_orders()

    async def positions(self) -> list[Position]:
        await trio.lowlevel.checkpoint_if_cancelled()
        return self.venue.positions()

    async def account(self) -> Account:
        await trio.lowlevel.checkpoint_if_cancelled()
        return self.venue.account_info()

    async def close_position(self, position: Position, client_order_id: str) -> Order | None:
        """The paper venue has no close of its own: ``None``, so the closing order is a market order."""
        return None

    async def close_all_positions(self) -> list[Order] | None:
        """The paper venue has no close-all of its own: ``None`` (each position is closed in turn)."""
        return None

    async def stream_updates(
        self, sink: UpdateSink, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Deliver the venue's updates, and run its clock and latency, until cancelled."""
        self.venue  # noqa: B018  # refuse to stream when not connected
        async with trio.open_nursery() as nursery:
            self._stream_scope = nursery.cancel_scope
            if self.settings.tick_interval_s > 0:
                nursery.start_soon(self._run_clock)
            nursery.start_soon(self._deliver_arrivals)
            task_status.started()
            async for update in self._updates_out:
                await sink(update)

    async def _run_clock(self) -> None:
        interval = self.settings.tick_interval_s
        while True:
            await trio.sleep(interval)
            self.venue.tick()

    async def _deliver_arrivals(self) -> None:
        # Latency is the same for every order, so arrival order is due order.
        async for due, order_id in self._arrivals_out:
            await trio.sleep_until(due)
            self.venue.arrive(order_id)

    # -- driving the simulated market (tests and rehearsals) ----------------------

    def set_price(self, symbol: str, price: Decimal | str | int) -> None:
        """Move ``symbol`` to ``price`` now and match its resting orders."""
        self.venue.set_price(symbol, Decimal(price))

    def tick(self) -> None:
        """One step of the price walk, as the clock would take it."""
        self.venue.tick()

    def price(self, symbol: str) -> Decimal:
        """The current price of ``symbol``."""
        return self.venue.feed.price(symbol)
