"""Builds the whole actor tree from a configuration: ``build_service(config)``.

No globals: every piece (bus, journal slot, mailboxes, supervisors) is made
here and handed to the actors that use it, so tests build as many services as
they like. The tree, in start order::

    ult (root, one_for_one)
    ├── journal
    ├── brokers (one_for_one)
    │   └── broker.<name> ...
    ├── positions
    ├── risk
    ├── router
    └── ipc
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import trio

from ult_actors import __version__
from ult_actors.actors.broker import (
    BrokerActorDeps,
    RetryPolicy,
    broker_actor,
    broker_mailbox,
)
from ult_actors.actors.commands import BrokerCommand
from ult_actors.actors.connections import ConnectionBoard
from ult_actors.actors.gateway import ServiceGateway
from ult_actors.actors.journal import JournalSlot, journal_actor
from ult_actors.actors.positions import PositionBook, PositionsDeps, positions_actor
from ult_actors.actors.reconcile import ReconcilePolicy
from ult_actors.actors.risk import (
    RiskCommand,
    RiskDeps,
    RiskGate,
    RiskLimits,
    RiskState,
    in_force,
    risk_actor,
    setting_of,
)
from ult_actors.actors.router import RouterCommand, RouterDeps, router_actor
from ult_actors.actors.trading_state import FILE_NAME as TRADING_STATE_FILE
from ult_actors.actors.trading_state import load_trading_state
from ult_actors.brokers.base import Connector
from ult_actors.brokers.budget import budget_for
from ult_actors.brokers.registry import broker_kind
from ult_actors.cluster.fencing import LeaseDeadline, fenced
from ult_actors.collector import hold_while_starting
from ult_actors.config import ServiceConfig, check_ranges, default_state_dir
from ult_actors.fills import FillLedger, SharedAdvance
from ult_actors.holding import SharedBooking
from ult_actors.journal import StoreOpener, memory_store_opener, sqlite_store_opener
from ult_actors.messages import (
    ActorHealth,
    ActorHealthChanged,
    ClusterHealth,
    Event,
    GetPositions,
    HealthSnapshot,
    NatsHealth,
    TradingSetting,
    TradingState,
)
from ult_actors.runtime.actor import ActorContext
from ult_actors.runtime.busy_poll import busy_polling
from ult_actors.runtime.health import HealthListener
from ult_actors.runtime.intake import IntakeGate
from ult_actors.runtime.jitter import SeededJitter
from ult_actors.runtime.mailbox import Mailbox
from ult_actors.runtime.pubsub import EventBus
from ult_actors.runtime.supervisor import Backoff, ChildSpec, Supervisor

#: Extra children appended to the root after the router (the IPC server, in ``serve``).
ExtraChild = Callable[["Service"], ChildSpec]


@dataclass(frozen=True)
class Mailboxes:
    """Every actor's mailbox, made before the actors that send to it are built."""

    router: Mailbox[RouterCommand]
    risk: Mailbox[RiskCommand]
    positions: Mailbox[GetPositions]
    brokers: dict[str, Mailbox[BrokerCommand]]


@dataclass
class Service:
    """One service instance: its tree, its front door and its shared plumbing."""

    config: ServiceConfig
    root: Supervisor
    bus: EventBus[Event]
    journal: JournalSlot
    mailboxes: Mailboxes
    risk_state: RiskState
    book: PositionBook
    #: What the risk and router actors are built from (a test injects faults here).
    risk_deps: RiskDeps
    router_deps: RouterDeps
    state_dir: Path
    now_ns: Callable[[], int] = time.time_ns
    started_at: int = 0
    #: Brokers that held open orders the journal had none of at start (adopted), by
    #: broker: the service runs degraded and says so (health, STATUS, the log).
    adopted_unjournaled: dict[str, int] = field(default_factory=dict)
    #: Log lines dropped so far (``serve`` points it at its log writer).
    log_lines_dropped: Callable[[], int] = lambda: 0
    #: Open legs of emulated order lists by broker (each broker actor keeps its count).
    emulated_legs: dict[str, int] = field(default_factory=dict)
    #: Each broker connection's state, stream age and request budget.
    connections: ConnectionBoard | None = None
    #: With ``[cluster]``: this instance's role, for health (set by the cluster member).
    cluster_health: Callable[[], ClusterHealth | None] = lambda: None
    #: With ``[nats]``: the NATS connection, for health (set by the ``nats`` child).
    nats_health: Callable[[], NatsHealth | None] = lambda: None
    #: The front door for IPC: made from the mailboxes and this service's health.
    gateway: ServiceGateway = field(init=False)

    def __post_init__(self) -> None:
        self.gateway = ServiceGateway(
            router=self.mailboxes.router,
            risk=self.mailboxes.risk,
            positions=self.mailboxes.positions,
            brokers=self.mailboxes.brokers,
            journal=self.journal,
            bus=self.bus,
            health=self.health,
            submit_timeout_s=self.config.service.submit_timeout_s,
            now_ns=self.now_ns,
        )

    @property
    def brokers(self) -> dict[str, Mailbox[BrokerCommand]]:
        """Each broker actor's mailbox, by broker name."""
        return self.mailboxes.brokers

    @property
    def trading_state(self) -> TradingState:
        """The global trading state (risk's; a broker's own may be stricter)."""
        return self.risk_state.trading

    def degraded(self) -> list[str]:
        """Why the service runs degraded, one reason each; empty when it does not."""
        return [
            f"journal had no record of {count} open order{'s' if count != 1 else ''}"
            f" at {broker} (adopted)"
            for broker, count in sorted(self.adopted_unjournaled.items())
        ]

    def health(self) -> HealthSnapshot:
        """The whole tree's health, root first, in start order."""
        return HealthSnapshot(
            actors=[self.root.own_entry(), *self.root.snapshot()],
            pid=os.getpid(),
            version=__version__,
            started_at=self.started_at,
            taken_at=self.now_ns(),
            trading_state=self.trading_state,
            trading=setting_of(self.risk_state),
            broker_trading=self.broker_trading(),
            degraded=self.degraded(),
            log_lines_dropped=self.log_lines_dropped(),
            emulated_legs={b: n for b, n in sorted(self.emulated_legs.items()) if n},
            connections=(
                self.connections.health(self.root.snapshot())
                if self.connections is not None
                else {}
            ),
            cluster=self.cluster_health(),
            nats=self.nats_health(),
        )

    def broker_trading(self) -> dict[str, TradingSetting]:
        """Each broker's trading state in force (the stricter of the global one and its own)."""
        return {name: in_force(self.risk_state, name) for name in sorted(self.brokers)}

    def brokers_up(self) -> tuple[int, int]:
        """(running broker actors, configured broker actors)."""
        rows = [h for h in self.root.snapshot() if h.parent == "brokers"]
        return sum(1 for h in rows if h.state == "running"), len(rows)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the tree until cancelled; ``started`` once every actor is up.

        Raises ``SupervisorGaveUp`` (inside an exception group) when the root gives up.
        """
        self.started_at = self.now_ns()

        def started() -> None:
            release_collector()
            self.root.health.state = "running"
            self.root.health.started_at = self.now_ns()
            if self.adopted_unjournaled:
                structlog.get_logger().bind(actor="ult").warning(
                    "starting degraded: the journal had no record of orders open at brokers;"
                    " they are adopted (check the journal's path and history)",
                    adopted=dict(sorted(self.adopted_unjournaled.items())),
                )
            task_status.started()

        def failed(error: BaseException) -> None:
            self.root.health.state = "failed"

        ctx: ActorContext[Any] = ActorContext(
            "ult", None, incarnation=1, on_started=started, on_failed=failed
        )
        self.root.health.state = "starting"
        # Start-up's objects live as long as the service: no collector passes over them on
        # the way (about a third of 1,000 paper connections' start to ready; ready5).
        release_collector = hold_while_starting()
        try:
            with busy_polling(self.config.service.busy_poll_us * 1000):
                await self.root.run(ctx)
        except BaseException:
            self.root.health.state = "failed"
            raise
        finally:
            release_collector()
            if self.root.health.state != "failed":
                self.root.health.state = "stopped"


@dataclass(frozen=True)
class _Shared:
    """What every actor of one service is built with."""

    config: ServiceConfig
    bus: EventBus[Event]
    journal: JournalSlot
    mailboxes: Mailboxes
    now_ns: Callable[[], int]


@dataclass
class _Brokers:
    """The broker actors: their mailboxes and specs, and what they report back."""

    mailboxes: dict[str, Mailbox[BrokerCommand]] = field(default_factory=dict)
    children: list[ChildSpec] = field(default_factory=list)
    #: Broker by the name of its actor.
    actors: dict[str, str] = field(default_factory=dict)
    #: The service's, filled in by broker actors.
    adopted_unjournaled: dict[str, int] = field(default_factory=dict)
    emulated_legs: dict[str, int] = field(default_factory=dict)
    connections: ConnectionBoard = field(default_factory=lambda: ConnectionBoard(time.time_ns))


def build_service(
    config: ServiceConfig,
    *,
    env: dict[str, str] | None = None,
    now_ns: Callable[[], int] = time.time_ns,
    rng: random.Random | None = None,
    connector_factories: dict[str, Callable[[], Connector]] | None = None,
    store_opener: StoreOpener | None = None,
    extra_children: list[ExtraChild] | None = None,
    reconcile: ReconcilePolicy | None = None,
    lease: LeaseDeadline | None = None,
) -> Service:
    """Build a service from ``config``; nothing runs until ``Service.run``.

    ``lease`` (a cluster's active instance): no venue is sent a change once it ran out.

    ``ConfigError`` naming the key if a value is out of its range.
    """
    check_ranges(config)
    # What is built here lives as long as the service, as what ``Service.run`` starts does:
    # no collector passes over it on the way (1,000 paper connections: a full pass of
    # 30-35 ms within the build; ready6).
    release_collector = hold_while_starting()
    try:
        return _build_service(
            config,
            env=dict(os.environ) if env is None else env,
            now_ns=now_ns,
            rng=rng or random.Random(),
            connector_factories=connector_factories or {},
            store_opener=store_opener,
            extra_children=extra_children or [],
            reconcile=reconcile or ReconcilePolicy(),
            lease=lease,
        )
    finally:
        release_collector()


def _build_service(
    config: ServiceConfig,
    *,
    env: dict[str, str],
    now_ns: Callable[[], int],
    rng: random.Random,
    connector_factories: dict[str, Callable[[], Connector]],
    store_opener: StoreOpener | None,
    extra_children: list[ExtraChild],
    reconcile: ReconcilePolicy,
    lease: LeaseDeadline | None,
) -> Service:
    """``build_service``'s work, the collector held."""
    state_dir = (
        Path(config.service.state_dir) if config.service.state_dir else default_state_dir(env)
    )
    bus: EventBus[Event] = EventBus()
    slot = JournalSlot()
    backoff = _backoff(config)
    # One booking of each fill for risk's books, the positions book and the paper venues'
    # accounts (``SharedBooking``): the same fill on the same figures worked out once.
    booking = SharedBooking()
    # And their ledgers' advance by each order event: the same report on the same entry
    # worked out once (``SharedAdvance``).
    advance = SharedAdvance()
    brokers = _broker_actors(
        config,
        state_dir,
        bus=bus,
        journal=slot,
        rng=rng,
        now_ns=now_ns,
        connector_factories=connector_factories,
        reconcile=reconcile,
        lease=lease,
        booking=booking,
    )
    shared = _Shared(
        config=config,
        bus=bus,
        journal=slot,
        mailboxes=Mailboxes(
            router=Mailbox(capacity=4096),
            risk=Mailbox(capacity=4096),
            positions=Mailbox(capacity=1024),
            brokers=brokers.mailboxes,
        ),
        now_ns=now_ns,
    )
    brokers_sup = _brokers_supervisor(config, brokers, backoff, rng=rng, now_ns=now_ns)
    trading_state_path = state_dir / TRADING_STATE_FILE
    risk_state = _risk_state(config, trading_state_path, booking, FillLedger(shared=advance))
    risk_gate = RiskGate(shared.mailboxes.risk)
    risk_deps = _risk_deps(shared, risk_state, trading_state_path, risk_gate)
    router_deps = _router_deps(shared, risk_gate)
    book = PositionBook(booking=booking, applied=FillLedger(shared=advance))
    if store_opener is None:
        store_opener = _default_store_opener(config, state_dir, slot.intake)

    sup = config.supervision
    root = Supervisor(
        "ult",
        [
            ChildSpec(id="journal", start=journal_actor(slot, store_opener)),
            brokers_sup.as_child(),
            _positions_child(shared, book, brokers.actors),
            ChildSpec(id="risk", start=risk_actor(risk_deps), mailbox=shared.mailboxes.risk),
            ChildSpec(
                id="router", start=router_actor(router_deps), mailbox=shared.mailboxes.router
            ),
        ],
        strategy="one_for_one",
        max_restarts=sup.root_max_restarts,
        period_s=sup.root_period_s,
        backoff=backoff,
        rng=random.Random(rng.random()),
        now_ns=now_ns,
        listener=_health_publisher(bus, now_ns),
    )
    service = Service(
        config=config,
        root=root,
        bus=bus,
        journal=slot,
        mailboxes=shared.mailboxes,
        risk_state=risk_state,
        book=book,
        risk_deps=risk_deps,
        router_deps=router_deps,
        state_dir=state_dir,
        now_ns=now_ns,
        adopted_unjournaled=brokers.adopted_unjournaled,
        emulated_legs=brokers.emulated_legs,
        connections=brokers.connections,
    )
    for extra in extra_children:
        root.add_child(extra(service))
    return service


def _backoff(config: ServiceConfig) -> Backoff:
    """The restart backoff every supervisor of the tree uses."""
    sup = config.supervision
    return Backoff(
        initial_s=sup.backoff_initial_ms / 1000,
        cap_s=sup.backoff_cap_ms / 1000,
        multiplier=sup.backoff_multiplier,
        stable_after_s=sup.stable_after_s,
    )


def _broker_actors(
    config: ServiceConfig,
    state_dir: Path,
    *,
    bus: EventBus[Event],
    journal: JournalSlot,
    rng: random.Random,
    now_ns: Callable[[], int],
    connector_factories: dict[str, Callable[[], Connector]],
    reconcile: ReconcilePolicy,
    lease: LeaseDeadline | None,
    booking: SharedBooking,
) -> _Brokers:
    """One broker actor (mailbox and child spec) per enabled broker, in config order."""
    retry = RetryPolicy(
        enabled=config.retry.enabled,
        max_retries=config.retry.max_retries,
        delay_s=config.retry.delay_ms / 1000,
        max_delay_s=config.retry.max_delay_ms / 1000,
    )
    brokers = _Brokers(connections=ConnectionBoard(now_ns, publish=bus.publish))
    for entry in config.enabled_brokers:
        if entry.name in connector_factories:
            make = connector_factories[entry.name]
        else:
            kind = broker_kind(entry.kind)
            settings = kind.with_state_dir(entry.settings, state_dir, entry.name)
            if kind.books_fills:
                make = kind.factory(entry.name, settings, now_ns=now_ns, booking=booking)
            else:
                make = kind.factory(entry.name, settings, now_ns=now_ns)
        if lease is not None:
            make = fenced(make, lease)
        mailbox = broker_mailbox(capacity=4096)
        brokers.mailboxes[entry.name] = mailbox
        deps = BrokerActorDeps(
            name=entry.name,
            make_connector=make,
            journal=journal,
            bus=bus,
            retry=retry,
            # Its seed drawn now, as before, its generator made only if a submit retries.
            rng=SeededJitter(rng.random()),
            now_ns=now_ns,
            # Submits in flight at once per broker. Paper too: one at a time, each order
            # waited for its own journal fsyncs and group commit had nothing to group
            # (measured: pipelined 530 -> 2,080 orders/s, CPU/order 1.3 -> 0.43 ms).
            concurrency=64,
            reconcile=reconcile,
            on_adopted_unjournaled=brokers.adopted_unjournaled.__setitem__,
            on_emulated_legs=brokers.emulated_legs.__setitem__,
            on_unavailable=entry.on_unavailable,
            budget=budget_for(entry.name, entry.kind, entry.requests_per_s, entry.request_burst),
            on_connection_state=brokers.connections.report,
        )
        if deps.budget is not None:
            brokers.connections.budgets[entry.name] = deps.budget
        child_id = f"broker.{entry.name}"
        brokers.connections.actors[child_id] = entry.name
        brokers.actors[child_id] = entry.name
        brokers.children.append(ChildSpec(id=child_id, start=broker_actor(deps), mailbox=mailbox))
    return brokers


def _brokers_supervisor(
    config: ServiceConfig,
    brokers: _Brokers,
    backoff: Backoff,
    *,
    rng: random.Random,
    now_ns: Callable[[], int],
) -> Supervisor:
    """The ``brokers`` supervisor: one broker's outage must not take the others down."""
    sup = config.supervision
    return Supervisor(
        "brokers",
        brokers.children,
        strategy="one_for_one",
        max_restarts=sup.max_restarts,
        period_s=sup.period_s,
        backoff=backoff,
        rng=random.Random(rng.random()),
        now_ns=now_ns,
        # One broker's outage must not take the others (or the process) down.
        park_s=sup.park_s,
        # A connection that cannot connect is tried again at least this often, unparked.
        connect_cap_s=sup.connect_backoff_cap_s,
        # No connection depends on another: each connects (and disconnects) at once.
        independent=True,
    )


def _risk_state(
    config: ServiceConfig, trading_state_path: Path, booking: SharedBooking, applied: FillLedger
) -> RiskState:
    """Risk's state at start: the trading state saved last, else ``risk.initial_state``."""
    saved = load_trading_state(trading_state_path)
    if saved is not None:
        return RiskState(
            trading=saved.trading,
            broker_trading=dict(saved.broker_trading),
            settings=saved.who_set(),
            booking=booking,
            applied=applied,
        )
    return RiskState(
        trading=config.risk.initial_state,
        settings={"": TradingSetting(state=config.risk.initial_state, reason="risk.initial_state")},
        booking=booking,
        applied=applied,
    )


def _positions_child(shared: _Shared, book: PositionBook, actors: dict[str, str]) -> ChildSpec:
    """The positions actor: the book of positions, pulled from brokers and folded from fills."""
    interval = shared.config.positions.sync_interval_s
    deps = PositionsDeps(
        brokers=shared.mailboxes.brokers,
        bus=shared.bus,
        book=book,
        sync_interval_s=interval,
        now_ns=shared.now_ns,
        risk=shared.mailboxes.risk,
        retry_delay_s=min(1.0, interval / 10),
        unreported_retry_s=min(5.0, interval),
        actors=actors,
        journal=shared.journal,
    )
    return ChildSpec(
        id="positions", start=positions_actor(deps), mailbox=shared.mailboxes.positions
    )


def _risk_deps(shared: _Shared, state: RiskState, state_path: Path, gate: RiskGate) -> RiskDeps:
    """The risk actor's: limits on every order, the trading state, the kill switch."""
    risk = shared.config.risk
    return RiskDeps(
        limits=RiskLimits(
            max_order_qty=risk.max_order_qty,
            max_order_notional=risk.max_order_notional,
            max_position_per_symbol=risk.max_position_per_symbol,
            max_open_orders=risk.max_open_orders,
            max_orders_per_second=risk.max_orders_per_second,
            daily_loss_limit=risk.daily_loss_limit,
            allowed_symbols=frozenset(risk.allowed_symbols),
        ),
        brokers=shared.mailboxes.brokers,
        bus=shared.bus,
        state=state,
        now_ns=shared.now_ns,
        state_path=state_path,
        journal=shared.journal,
        gate=gate,
    )


def _router_deps(shared: _Shared, risk_gate: RiskGate) -> RouterDeps:
    """The router actor's: it validates, de-duplicates and routes each order to a broker."""
    service = shared.config.service
    return RouterDeps(
        brokers=shared.mailboxes.brokers,
        risk=shared.mailboxes.risk,
        journal=shared.journal,
        default_broker=service.default_broker,
        rules=[(r.pattern, r.broker) for r in shared.config.routing],
        submit_timeout_s=service.submit_timeout_s,
        risk_gate=risk_gate,
    )


def _health_publisher(bus: EventBus[Event], now_ns: Callable[[], int]) -> HealthListener:
    """Publish each change of an actor's health on the bus (topic ``health``)."""

    def publish(h: ActorHealth) -> None:
        bus.publish(
            ActorHealthChanged(
                name=h.name,
                state=h.state,
                restarts=h.restarts,
                error=h.last_error.message if h.last_error else None,
                ts=now_ns(),
            )
        )

    return publish


def _default_store_opener(
    config: ServiceConfig, state_dir: Path, intake: IntakeGate | None = None
) -> StoreOpener:
    """The SQLite journal at ``journal.path`` (default ``<state dir>/journal.db``), or the
    PostgreSQL one at ``journal.url``.

    ``journal.enabled = false`` keeps orders in memory only: nothing survives a restart.
    """
    if config.journal.enabled and config.journal.url:
        from ult_actors.journal.postgres import postgres_store_opener  # psycopg is optional

        return postgres_store_opener(
            config.journal.url, sync_interval_s=config.journal.sync_interval_ms / 1000
        )
    path = journal_path(config, state_dir)
    if path is None:
        return memory_store_opener()
    return sqlite_store_opener(
        path,
        synchronous=config.journal.synchronous,
        sync_interval_s=config.journal.sync_interval_ms / 1000,
        intake=intake,  # closed while the fold falls behind: the IPC stops reading
    )


def journal_path(config: ServiceConfig, state_dir: Path) -> Path | None:
    """Where the journal file lives; ``None`` when the journal is disabled."""
    journal = config.journal
    if not journal.enabled:
        return None
    return Path(journal.path).expanduser() if journal.path else state_dir / "journal.db"
