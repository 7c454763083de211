"""The one protocol every broker connector implements.

A connector knows its broker's API and nothing of actors. The broker actor
(``ult_actors.actors.broker``) drives it: ``connect()``, then
``stream_updates`` started in a nursery next to its mailbox loop, then
commands. Any exception escaping ``stream_updates`` means the connection is
gone: the actor crashes and its supervisor reconnects by restarting it.

Rules every connector keeps (checked by ``tests/brokers/contract.py``):

- ``submit`` receives a request whose ``client_order_id`` is set; it is the
  idempotency key and must reach the broker so that
  ``get_order_by_client_id`` finds the order after a lost reply.
- Broker failures raise the narrowest ``ult_actors.errors.UltError``:
  ``InvalidOrder``, ``InsufficientFunds``, ``RateLimited`` (with
  ``retry_after``), ``BrokerUnavailable`` (transient: 5xx, network, timeouts),
  ``AuthFailed`` (fatal), ``NotFound``.
- A submit whose outcome is not known (reply lost, timeout after sending)
  raises ``BrokerUnavailable``; the caller looks the order up by client id
  before any resubmission.
- Returned ``Order``/``Position``/``Account`` carry ``broker=self.name``.
- Closing positions is native where the venue has a close (Alpaca, OANDA);
  elsewhere ``close_position`` returns ``None`` and the broker actor submits
  ``closing_order`` like any order (journaled first, looked up on retry).

Two capabilities beyond the core protocol (issue 17), each its own protocol
so the broker actor asks ``isinstance(connector, SupportsReplace)``:

- ``SupportsReplace``: change a working order's terms with the venue's own
  replace (Alpaca ``PATCH``, OANDA ``PUT``, TWS ``placeOrder`` again with the
  same id, paper natively).
- ``SupportsOrderLists``: send a bracket / OCO / OTO as the venue's own order
  list. Contingencies a venue lacks (``native_contingencies``) are emulated by
  the service from plain orders.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Generic, NamedTuple, Protocol, TypeVar, runtime_checkable

import msgspec
import trio

from ult_actors.brokers.budget import RateBudget
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
from ult_actors.secrets import read_secret

#: Where a connector delivers order updates; may apply back-pressure.
UpdateSink = Callable[[OrderUpdate], Awaitable[None]]

#: ``conforms``' answers by (connector class, protocol).
_CONFORMS: dict[tuple[type, type], bool] = {}


def conforms(connector: object, protocol: type) -> bool:
    """``isinstance(connector, protocol)`` for one of this module's runtime-checkable
    protocols, worked out once per connector class.

    Python 3.11 walks a protocol's members on every such ``isinstance`` (5-40 us each,
    seven per broker connection as it starts: ~60 ms of 1,000 paper connections' start).
    A connector's capabilities are its class's methods and class attributes, so one
    answer per class holds; a class that finds attributes on the fly (``__getattr__``: a
    wrapper, whose answer is its inner connector's) is asked each time. Callers ``cast``
    once it answers yes (mypy narrows only on ``isinstance``).
    """
    cls = type(connector)
    if hasattr(cls, "__getattr__"):
        return isinstance(connector, protocol)
    key = (cls, protocol)
    known = _CONFORMS.get(key)
    if known is None:
        known = _CONFORMS[key] = isinstance(connector, protocol)
    return known


@runtime_checkable
class Connector(Protocol):
    """A connection to one broker account."""

    #: The configured connection name, e.g. ``paper`` or ``alpaca-paper``.
    name: str

    async def connect(self) -> None:
        """Open the connection and check credentials (``AuthFailed`` if refused)."""

    async def disconnect(self) -> None:
        """Close the connection; safe to call twice or after a failed connect."""

    async def submit(self, request: OrderRequest) -> Order:
        """Send a new order; ``request.client_order_id`` is always set."""

    async def cancel(self, order_id: str) -> Order:
        """Ask the broker to cancel; returns the order as it then stands."""

    async def get_order(self, order_id: str) -> Order:
        """One order by the broker's id (``NotFound`` if unknown)."""

    async def get_order_by_client_id(self, client_order_id: str) -> Order:
        """One order by our client order id (``NotFound`` if it never arrived)."""

    async def open_orders(self) -> list[Order]:
        """Every order not yet in a terminal state."""

    async def positions(self) -> list[Position]:
        """Every non-zero position."""

    async def account(self) -> Account:
        """Cash, buying power and equity."""

    async def close_position(self, position: Position, client_order_id: str) -> Order | None:
        """Close ``position`` with the venue's own close, or return ``None`` if it has none.

        ``None`` tells the caller to send ``closing_order(position, ...)``
        through ``submit``. A venue that cannot carry ``client_order_id`` on
        its close returns the order under the id the venue gave it.
        """

    async def close_all_positions(self) -> list[Order] | None:
        """Close every position with the venue's own call; ``None`` if it has none."""

    async def stream_updates(
        self,
        sink: UpdateSink,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Deliver order updates to ``sink`` until cancelled.

        Calls ``task_status.started()`` once the stream is live, so that a
        sweep of open orders made after it cannot miss an update. Raises
        (typically ``BrokerUnavailable``) when the stream is lost.
        """


@runtime_checkable
class SupportsReplace(Protocol):
    """A connector whose venue replaces (modifies) a working order."""

    async def replace(self, order: Order, change: ReplaceRequest) -> Order:
        """Ask the venue to apply ``change`` to ``order``; returns the replacement.

        ``order`` is the service's record of the working order (its venue id,
        its current terms); ``change.client_order_id`` is always set: the
        replacement's client order id and the idempotency key. It reaches the
        venue where the venue carries one, so that ``get_order_by_client_id``
        finds the replacement after a lost reply, before any resend.

        The returned ``Order`` is the replacement as it now stands: a new
        client order id, the new terms, ``replaces`` = ``order.client_order_id``,
        and the venue id (new at Alpaca and OANDA, the same at TWS and paper).
        It is a new order in the service's books at every venue: its ``qty`` is
        what was left to fill when the replace took effect (``change.qty`` is the
        new total, so ``change.qty - order.filled_qty``) and its ``filled_qty``
        counts only executions after it; the old order keeps its fills. A venue
        that modifies in place (TWS, paper) is sent the total, and its later
        reports of the order (cumulative fills) are reported less what the old
        order had filled, under the new client order id. The old order is
        then ``replaced`` (the stream may report it too; the merge is idempotent).

        Refusals: ``NotReplaceable`` when the venue says the order can no longer
        be replaced (filled, canceled, a race lost to a fill), ``InvalidOrder``
        for terms the venue refuses, the usual transient errors otherwise (the
        caller then looks the replacement up by its client order id).
        """
        ...


@runtime_checkable
class SupportsOrderLists(Protocol):
    """A connector whose venue carries some order lists natively."""

    #: The contingencies this venue carries itself; the service emulates the rest.
    native_contingencies: frozenset[Contingency]

    async def submit_list(self, request: OrderListRequest) -> list[Order]:
        """Send ``request`` as one native list; returns every leg as it now stands.

        Called only for a contingency in ``native_contingencies``. Every leg
        has its ``client_order_id`` set and ``request.list_id`` is set; the
        returned orders carry them (mapped back from the venue's own leg ids
        where the venue assigns its own), each with its ``leg`` (list id,
        contingency, role, parent) filled in, in the order of ``request.legs``. Legs the venue holds until triggered are ``held``.
        ``get_order_by_client_id`` of the first leg finds the list after a lost
        reply. Later changes of any leg arrive on ``stream_updates``.
        """
        ...


@runtime_checkable
class SupportsLegLookup(Protocol):
    """A connector whose venue names some legs of its lists itself (Alpaca's exits)."""

    async def find_leg(self, record: Order) -> Order:
        """The venue's order for the journaled leg ``record``, under ``record``'s client order id.

        For a leg whose venue id the service never learned (the list's answer
        was lost, or the service restarted before it came): found through the
        order the venue keeps it with, by its role there. ``NotFound`` if the
        venue has no such leg.
        """
        ...


@runtime_checkable
class SupportsQuotes(Protocol):
    """A connector that can ask its venue for a symbol's quote (an order's arrival price)."""

    async def quote(self, symbol: str) -> Decimal | None:
        """The venue's mid price (between bid and ask) of ``symbol`` now; ``None``: it
        quotes none. One request; transport failures raise as any request's do."""
        ...


@runtime_checkable
class SupportsResync(Protocol):
    """A connector that recovers what its update stream missed by asking afterwards (issue 18).

    After a dropped, silent or gappy stream, the broker actor calls ``resync``
    before it lets new orders through again. No shipped connector needs it:
    Alpaca's, IB's and OANDA's ``stream_updates`` deliver what was missed
    (Alpaca: orders updated since the last update delivered; IB: the executions
    since the gap, with open and completed orders; OANDA: every transaction
    since the last one delivered) through the sink before they report started,
    each counted as delivered only once the sink has returned for it, so a
    crash while the actor applies one delivers it again. A ``resync`` list
    returned before the actor applies it cannot promise that; a connector whose
    stream cannot catch up by itself implements this instead.
    """

    async def resync(self) -> list[OrderUpdate]:
        """Every change the stream missed since the last update it delivered, in order.

        Executions carry their venue execution id (``Fill.fill_id``), so one the
        stream did deliver is not applied twice. Raises ``BrokerUnavailable`` when
        the venue cannot be asked; the caller then retries (the gate stays shut).
        """
        ...


@runtime_checkable
class SupportsRequestBudget(Protocol):
    """A connector that charges every request it sends to its account's budget (issue 18).

    The broker actor hands it the account's ``RateBudget``; each request the
    connector sends then waits for a token (``RateBudget.charge``), its own
    extra calls (lookups, listing pages, a resync) included.
    """

    def use_budget(self, budget: RateBudget) -> None:
        """Charge every later request to ``budget``."""
        ...


@runtime_checkable
class SupportsValidatedOrders(Protocol):
    """A connector whose venue checks every order itself (the paper venue), and can leave
    out the broker-independent checks (``validation.validate_order``) for a request
    that has passed them already.

    The broker actor marks only the orders the router validated (``PlaceOrder``),
    each just before its ``submit``. The mark names the request object itself, and
    requests are frozen, so ``submit`` skips the checks only for that very request:
    anything else it gets (a close-out, an emulated list's leg, a resubmission, a
    request a wrapper rebuilt) is checked in full.
    """

    def mark_validated(self, request: OrderRequest) -> None:
        """``request`` (this object) passed ``validate_order``; its next ``submit`` follows."""
        ...


@runtime_checkable
class AnswersInProcess(Protocol):
    """A connector that may answer a submit without leaving the process (the paper
    venue matching at once): the broker actor lets the order's own task run its step
    (``runtime.direct.StepEntry``). A venue over the network never does."""

    @property
    def answers_in_process(self) -> bool:
        """Whether a submit is answered in this process, with no wait on anything outside."""
        ...


@runtime_checkable
class AnswersAtOnce(Protocol):
    """A connector answering in process that also answers by a plain call: the broker
    actor then begins an order's step without its cancel scope (``StepEntry``'s ``begin``)."""

    @property
    def answers_now(self) -> bool:
        """Whether ``answer_now`` may be called: it answers as an awaited submit would."""
        ...

    def answer_now(
        self, request: OrderRequest, *, validated: bool
    ) -> tuple[Order, tuple[OrderUpdate, ...]]:
        """While ``answers_now``: the submit's answer (``AnswersWithNews``'s ``order`` and
        ``news``) by a plain call; ``validated``: ``request`` passed ``validate_order``.

        A plain tuple (a ``SubmitAnswer`` is one too): building the named tuple, a
        tuple subclass, is ~1.4k instructions an order, the plain one a few dozen.
        """
        ...


class SubmitAnswer(NamedTuple):
    """A submit's answer with the venue's news of the order made within the call."""

    #: The order as it stands after the call (as ``submit`` returns it).
    order: Order
    #: The order's updates made within the call, oldest first (a market order's fill,
    #: with the order's state after it); the update stream does not deliver them.
    news: tuple[OrderUpdate, ...]


@runtime_checkable
class AnswersWithNews(Protocol):
    """A connector whose venue may change an order within its submit call (the paper
    venue matching at once) and can hand those updates back with the answer, so the
    broker actor takes the answer and its fill as one update instead of two.
    """

    async def submit_answer(self, request: OrderRequest) -> SubmitAnswer:
        """``submit(request)``, with the order's news of the call kept off the stream."""
        ...

    def redeliver(self, news: Sequence[OrderUpdate]) -> None:
        """Put ``news`` (a ``SubmitAnswer``'s) on the update stream after all: the caller
        could not take them in. The stream delivers them as it would have."""
        ...


@runtime_checkable
class SupportsStreamState(Protocol):
    """A connector whose update stream reconnects by itself, telling when it is down.

    While the stream is down the venue may fill orders nobody hears of; the
    broker actor shows the connection ``degraded`` and holds new orders until
    the stream is back and has delivered what it missed.
    """

    def watch_stream(self, hook: Callable[[str | None], None]) -> None:
        """Call ``hook(why)`` when the stream is lost, ``hook(None)`` once it is back in step."""
        ...


S = TypeVar("S", bound=msgspec.Struct)


def _as_configured(settings: S, state_dir: Path, name: str) -> S:
    return settings


@dataclass(frozen=True)
class BrokerKind(Generic[S]):
    """How to configure and build connectors of one kind (each venue package exports one).

    The settings Struct, its environment overrides and the connector factory
    are typed against each other, so a reader (and mypy) sees what a kind is.
    A factory imports its connector module only when called: a service that
    runs only the paper broker never imports httpx.
    """

    name: str
    #: The kind's settings Struct (every field defaulted).
    settings_class: type[S]
    #: ``base`` with the kind's environment overrides applied.
    settings_from_env: Callable[[Mapping[str, str], S], S]
    #: ``(name, settings, **kwargs)`` -> a function making a fresh connector.
    make_factory: Callable[..., Callable[[], Connector]]
    #: Environment variables whose presence adds a connection of this kind.
    auto_enable_vars: tuple[str, ...] = ()
    #: Settings with defaults that depend on the service's state directory filled in.
    place_state: Callable[[S, Path, str], S] = _as_configured
    #: Its connector books fills itself, on the service's thread (a venue in process):
    #: its factory takes ``booking``, the ``SharedBooking`` of the service's books.
    books_fills: bool = False

    def settings_type(self) -> type[S]:
        """The kind's settings Struct (all fields defaulted)."""
        return self.settings_class

    def from_env(self, env: Mapping[str, str], base: S) -> S:
        """``base`` with the kind's environment overrides applied."""
        return self.settings_from_env(env, base)

    def auto_enable(self, env: Mapping[str, str]) -> bool:
        """Whether a credential of this kind is set (environment or credentials directory)."""
        return any(read_secret(name, env) for name in self.auto_enable_vars)

    def with_state_dir(self, settings: S, state_dir: Path, name: str) -> S:
        """``settings`` of connection ``name`` with its files placed under ``state_dir``."""
        return self.place_state(settings, state_dir, name)

    def factory(self, name: str, settings: S, **kwargs: Any) -> Callable[[], Connector]:
        """A function making a fresh connector (one per actor incarnation).

        A kind whose incarnations must share state (OANDA's transaction cursor,
        IB's order ids) makes that state here, once, for all of them.
        """
        return self.make_factory(name, settings, **kwargs)


def closing_order(position: Position, client_order_id: str) -> OrderRequest:
    """The market order that takes ``position`` to flat."""
    return OrderRequest(
        symbol=position.symbol,
        side="sell" if position.qty > 0 else "buy",
        qty=abs(position.qty),
        type="market",
        time_in_force="day",
        broker=position.broker,
        client_order_id=client_order_id,
    )
