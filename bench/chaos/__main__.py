#!/usr/bin/env python3
"""Chaos test: N orders through the real service while its brokers and its process are broken.

Brokers (``--brokers``, default all): the embedded paper broker, behind
seeded faults injected at its connector (``bench/chaos/service.py``:
dropped connections, 5xx, 429, slow replies, orders applied whose reply is
lost, broker actor crashes, update streams cut), and the loopback
simulators (``ult sim alpaca|oanda|ib``, own processes that outlive the
service), broken at random through their admin switches
(``bench/chaos/sims.py``: the same kinds, plus IB's connectivity
lost/restored). The service runs as a process on a socket in a temp dir;
``--clients`` clients submit ``--orders`` orders with their own client order
ids, each to a broker drawn by the seed (the mix: ``bench/chaos/mix.py``;
``--clients-by-broker``: each client keeps to one broker, so a short run is not
held up by every venue's outages in turn):
mostly market orders; resting limits, half of which they cancel; resting
limits they replace (far again, or across the market followed by a second
replace racing the fill); and brackets, OCOs and OTOs (``--lists-at``),
native where the venue has them, held by the service elsewhere. Paper fills
larger orders in parts (a replace then lands after a partial fill, whose fill
the replaced order keeps) and leaves its OCOs and OTOs to the service, so
partial fills release partial emulated children and reduce emulated peers.
``--kills`` times the whole service is killed with SIGKILL and started again
mid-flow; a client that loses its connection sends the same order (same client
order id) again once the service is back, as a client should; a service that gives up is started
again, as systemd would.

At the end, once nothing is in flight, it stops the service and checks from
the brokers' side (each read back through its own connector, and the
paper account file): every client order id exists at most once and no order
exists that nobody sent (duplicates, counted per broker: the paper account's
client order ids, the TWS simulator's order refs from its admin port, and
for Alpaca and OANDA the orders each simulator made by its own
``/_sim/state`` counter beyond those found by client order id); every order a client was told a broker
took is at that broker (lost); every order is in the same state, terminal or
open, in the journal and at the broker (mismatched); positions at each
broker equal the fills in the journal, and the service's own book of
positions (read before it stops) equals the broker's: each fill counted once.
A replacement is an order of its own and so is each piece of an emulated
child (``<child>.2``). Replace links hold: an order ``replaced`` in the
journal has its replacement, linked back, at the broker. No leg works on
after its peer filled (``bench/chaos/links.py``): for every OCO pair and
bracket exit pair, not both filled beyond the pair's quantity and none open
once its peer filled, from the journal and from the brokers' side.
It prints the counts and exits 0 only if duplicates, lost, mismatched,
unsettled, broken replace links and legs working after their peer filled
are all 0 and both position checks agree, and, under the real venues'
request limits (``--venue-limits real``, the default), no simulator answered
a 429 because a limit was reached (the 429 faults aside).

The order stream, the fault schedule of each service start, the simulator
fault schedule and the kill points are fixed by ``--seed``; thread and
network timing can still change which call a fault lands on.

    scripts/chaos --orders 10000 --seed 1   # python -m bench.chaos from the repository root
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import structlog
import trio

from bench.chaos.links import (
    broken_replace_links,
    chain,
    held_after_parent_filled,
    never_sent,
    pairs_decided,
    peers_both_working,
    released_off,
)
from bench.chaos.mix import KINDS, PlannedOrder, make_plan, parse_mix, still_filling
from bench.chaos.sims import (
    SIM_NAMES,
    Sim,
    disarm,
    ib_order_refs,
    inject_faults,
    limit_refusals,
    orders_created,
    start_sims,
    stop_sims,
)
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.brokers.registry import broker_kind
from ult_actors.client import AsyncClient, ConnectionLost, ServiceUnreachable
from ult_actors.config import load_config
from ult_actors.errors import NotFound, RiskRejected, Timeout, UltError
from ult_actors.journal.bodies import decode_order
from ult_actors.journal.schema import ORDER_BODY_SQL
from ult_actors.messages import OPEN_STATUSES, TERMINAL_STATUSES, Order
from ult_actors.testing.process import UltProcess

#: The service this run kills: ``ult serve`` with its paper broker behind faults.
CHILD = [sys.executable, "-m", "bench.chaos.service"]
ROOT = Path(__file__).resolve().parents[2]
BROKERS = ("paper", *SIM_NAMES)
#: Reply statuses that mean the broker took the order.
T = TypeVar("T")
TAKEN = frozenset(
    {"accepted", "partially_filled", "filled", "canceled", "expired", "pending_cancel",
     "pending_replace", "replaced"}
)  # fmt: skip


@dataclass
class Tally:
    """What happened, as the clients and the service saw it."""

    replies: dict[str, Order] = field(default_factory=dict)
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    reconnects: int = 0
    retried_unavailable: int = 0
    kills: int = 0
    exits: int = 0
    starts: int = 0
    canceled: int = 0
    done: int = 0
    replaced: set[str] = field(default_factory=set)
    #: The messages of "internal" errors clients got (a crash the service reported).
    internal: list[str] = field(default_factory=list)
    replace_refused: collections.Counter[str] = field(default_factory=collections.Counter)
    lists: collections.Counter[str] = field(default_factory=collections.Counter)
    #: Orders and lists risk refused, by why: ``reducing``, ``halted`` or the limit's name.
    risk_refused: collections.Counter[str] = field(default_factory=collections.Counter)


class Child:
    """The service process: started, killed, restarted, stopped."""

    def __init__(
        self, base: Path, args: argparse.Namespace, tally: Tally, env: dict[str, str]
    ) -> None:
        self.base = base
        self.env = env
        self.args = args
        self.tally = tally
        self.socket = base / "run" / "ult.sock"
        self.state = base / "state"
        self.faults = base / "faults.jsonl"
        self.log_path = base / "service.log"
        self.proc: UltProcess | None = None
        self.up = trio.Event()
        self.stopping = False

    async def start(self) -> None:
        self.tally.starts += 1
        self.proc = UltProcess(
            ["--socket", str(self.socket), "--state-dir", str(self.state),
             "--faults-log", str(self.faults),
             "--seed", str(self.args.seed * 1000 + self.tally.starts),
             "--fault-rate", str(self.args.fault_rate),
             "--stream-drop-every", str(self.args.stream_drop_every),
             "--synchronous", self.args.synchronous],
            program=CHILD, home=self.base, env=self.env, cwd=ROOT, socket=self.socket,
        )  # fmt: skip
        try:
            await self.proc.astart(timeout=60)
        except RuntimeError:
            raise RuntimeError(f"service exited at start:\n{self.log_tail()}") from None
        self.up.set()

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def kill9_and_restart(self) -> None:
        assert self.proc is not None
        self.up = trio.Event()
        await trio.to_thread.run_sync(self.proc.kill9)
        self.tally.kills += 1
        await self.start()

    async def keep_alive(self) -> None:
        """Like systemd's Restart=on-failure: a service that gave up is started again."""
        while True:
            await trio.sleep(0.2)
            proc = self.proc
            if self.stopping or proc is None or not self.up.is_set():
                continue
            if not proc.alive:
                self.tally.exits += 1
                self.up = trio.Event()
                await self.start()

    async def stop(self) -> None:
        self.stopping = True
        if self.proc is not None and self.proc.alive:
            await self.proc.astop(timeout=30)


async def run_clients(
    child: Child,
    plan: list[PlannedOrder],
    args: argparse.Namespace,
    tally: Tally,
    meanwhile: Callable[[], Awaitable[None]],
) -> None:
    kill_rng = random.Random(args.seed + 1)
    n = len(plan)
    lo, hi = max(1, n // 10), max(2, n * 9 // 10)
    kill_at = set(kill_rng.sample(range(lo, hi), min(args.kills, hi - lo)))
    kill_now = trio.Event()

    async def asked(call: Callable[[], Awaitable[T]]) -> T | UltError:
        """``call``'s answer, asked again on a transient error; connection errors propagate
        (the caller sends the whole plan item again); a refusal is returned."""
        unavailable = 0
        while True:
            try:
                return await call()
            except (ConnectionLost, ServiceUnreachable, Timeout):
                raise
            except UltError as exc:
                if exc.transient and unavailable < 3:
                    # Outcome unknown or try later: asking again with the same id is safe.
                    unavailable += 1
                    tally.retried_unavailable += 1
                    await trio.sleep(max(0.05, exc.retry_after or 0))
                    continue
                if exc.code == "internal":
                    tally.internal.append(str(exc))
                return exc

    def refused(exc: UltError, what: str = "") -> None:
        tally.rejected[f"{what}gave up: {exc.code}" if exc.transient else f"{what}{exc.code}"] += 1
        if isinstance(exc, RiskRejected):
            tally.risk_refused[risk_cause(exc)] += 1

    async def send_list(c: AsyncClient, o: PlannedOrder) -> None:
        assert o.orders is not None
        orders = o.orders
        legs = await asked(partial(c.submit_list, orders))
        if isinstance(legs, UltError):
            refused(legs, f"{orders.contingency}: ")
            return
        tally.lists[orders.contingency] += 1
        for leg in legs:
            tally.replies[leg.client_order_id] = leg

    async def send(c: AsyncClient, o: PlannedOrder) -> None:
        """One plan item to its answer; connection errors propagate (the caller resends it)."""
        if o.orders is not None:
            await send_list(c, o)
            return
        order = await asked(partial(
            c.submit, o.symbol, o.side, o.qty, type=o.type,  # type: ignore[arg-type]
            limit_price=o.limit_price, client_order_id=o.coid, broker=o.broker,
        ))  # fmt: skip
        if isinstance(order, UltError):
            refused(order)
            return
        tally.replies[o.coid] = order
        if order.status == "rejected":
            tally.rejected[(order.reject_reason or "rejected").split(":")[0]] += 1
            return
        target = order
        # Asked again after a reconnect too: the same replacement id is applied once.
        for i, step in enumerate(o.replaces):
            new = await asked(partial(
                c.replace, o.coid if i == 0 else o.replacement_id(i - 1), qty=step.qty,
                limit_price=step.limit_price, client_order_id=o.replacement_id(i),
            ))  # fmt: skip
            if isinstance(new, UltError):
                tally.replace_refused[f"{new.code} at {o.broker}"] += 1
                break
            if new.status != "rejected":  # a replacement that lost the race to a fill
                tally.replaced.add(new.client_order_id)
            tally.replies[new.client_order_id] = new
            target = new
        if o.cancel and target.status in OPEN_STATUSES:
            try:
                await c.cancel(target.client_order_id)
                tally.canceled += 1
            except (ConnectionLost, ServiceUnreachable, Timeout):
                raise
            except UltError:
                pass

    async def client_task(indices: list[int]) -> None:
        pos = 0
        while pos < len(indices):
            await child.up.wait()
            try:
                async with AsyncClient(child.socket, timeout=60) as c:
                    while pos < len(indices):
                        await send(c, plan[indices[pos]])
                        pos += 1
                        tally.done += 1
                        if tally.done in kill_at:
                            kill_now.set()
            except (ConnectionLost, ServiceUnreachable, Timeout):
                # Maybe sent, maybe not: the same order, same id, once the service is back.
                tally.reconnects += 1
                await trio.sleep(0.05)

    async def killer(cancel_scope: trio.CancelScope) -> None:
        nonlocal kill_now
        while True:
            await kill_now.wait()
            kill_now = trio.Event()
            await child.kill9_and_restart()

    shares = client_shares(plan, args.clients, by_broker=args.clients_by_broker)
    async with trio.open_nursery() as outer:
        outer.start_soon(killer, outer.cancel_scope)
        outer.start_soon(child.keep_alive)
        outer.start_soon(meanwhile)
        async with trio.open_nursery() as clients:
            for share in shares:
                clients.start_soon(client_task, share)
        outer.cancel_scope.cancel()


def client_shares(plan: list[PlannedOrder], clients: int, *, by_broker: bool) -> list[list[int]]:
    """Which plan items each client sends, in plan order.

    Dealt round the clients; ``by_broker``: each client keeps to one broker (the
    clients shared evenly among the plan's brokers, at least one each), so a broker
    held up by its faults holds up only its own clients instead of, in turn, all.
    """
    if not by_broker:
        return [list(range(i, len(plan), clients)) for i in range(clients)]
    brokers = sorted({o.broker for o in plan})
    per_broker = max(1, clients // len(brokers))
    shares: list[list[int]] = []
    for broker in brokers:
        mine = [i for i, o in enumerate(plan) if o.broker == broker]
        shares += [mine[k::per_broker] for k in range(per_broker)]
    return shares


async def settle(
    child: Child, brokers: list[str], timeout: float
) -> tuple[list[str], list[Any]]:
    """Wait until nothing is in flight, every broker is connected and the service's book
    holds the journal's fills; (what it still waited on if it timed out, positions).

    A broker actor that failed often under the faults may wait out a long restart
    backoff after they stop: its book stays empty until it is connected again.
    """
    waiting: list[str] = []
    with trio.move_on_after(timeout):
        while True:
            await child.up.wait()
            try:
                async with AsyncClient(child.socket, timeout=30) as client:
                    every = {o.client_order_id: o for o in await client.orders(limit=1_000_000)}
                    # In flight, unknown, or still filling: a market order, or a crossing
                    # limit the venue fills in parts (its next part would reach the
                    # broker's positions and the journal after the book was read).
                    waiting = [
                        f"{o.client_order_id}@{o.broker}:{o.status}"
                        for o in every.values()
                        if o.status in ("pending_new", "pending_cancel", "pending_replace")
                        or (o.status in OPEN_STATUSES and o.outcome == "unknown")
                        or (o.status in OPEN_STATUSES and still_filling(o))
                    ]
                    # A peer the service is still canceling, a child not yet released.
                    waiting += peers_both_working(every, every) + held_after_parent_filled(every)
                    connections = (await client.health()).connections
                    waiting += [
                        f"broker {b} not connected"
                        for b in brokers
                        if b not in connections or connections[b].state != "ready"
                    ]
                    if not waiting:
                        # The book may still be taking in the last fills, or putting right
                        # a race its position pull corrects (a drift, confirmed on two pulls).
                        book = await client.positions()
                        ours = {(p.broker, p.symbol): p.qty for p in book if p.qty}
                        if ours == journal_positions(read_journal(child.state / "journal.db")):
                            return [], book
                        waiting = ["the service's book of positions to equal the journal's"]
            except UltError:
                pass
            await trio.sleep(0.5)
    # Timed out: the book as it stands, so the report compares what there is.
    with contextlib.suppress(UltError):
        async with AsyncClient(child.socket, timeout=30) as client:
            return waiting, await client.positions()
    return waiting, []


def journal_positions(journal: dict[str, Order]) -> dict[tuple[str, str], Decimal]:
    """Net positions from the fills the journal holds."""
    out: dict[tuple[str, str], Decimal] = collections.defaultdict(Decimal)
    for o in journal.values():
        if o.filled_qty:
            out[(o.broker, o.symbol)] += o.filled_qty if o.side == "buy" else -o.filled_qty
    return {k: q for k, q in out.items() if q}


def read_journal(path: Path) -> dict[str, Order]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(f"SELECT client_order_id, {ORDER_BODY_SQL} FROM orders")
        return {c: decode_order(b) for c, b in rows}
    finally:
        conn.close()


async def read_brokers(
    state: Path,
    plan: list[PlannedOrder],
    journal: dict[str, Order],
    env: dict[str, str],
    listed: dict[str, set[str]],
) -> tuple[dict[str, Order], dict[tuple[str, str], Decimal]]:
    """Every broker as it holds things: our orders by client id, and positions.

    Asked for every client order id a client gave and every one the journal
    holds (replacements, pieces of emulated children); by the venue's id where
    the venue knows an order by an id of its own making (Alpaca's list legs).
    ``listed``: every client order id a broker holds, where it lists them at once
    (the TWS simulator's admin port); an id it lacks, with no venue id to ask by,
    is not asked for (at TWS each miss is a paced listing of every order).
    """
    entries = {e.name: e for e in load_config(None, env=env).enabled_brokers}
    orders: dict[str, Order] = {}
    positions: dict[tuple[str, str], Decimal] = {}
    wanted: dict[str, dict[str, str]] = collections.defaultdict(dict)
    for o in plan:
        for coid in o.coids:
            wanted[o.broker][coid] = ""
    for coid, j in journal.items():
        if not never_sent(j):
            wanted[j.broker][coid] = j.id
    for name in sorted({o.broker for o in plan}):
        if name == "paper":
            settings = PaperSettings(state_path=str(state / "paper-paper.db"), tick_interval_s=0)
            connector: Any = PaperConnector("paper", settings)
        else:
            entry = entries[name]
            connector = broker_kind(entry.kind).factory(entry.name, entry.settings)()
        await connector.connect()
        try:
            for coid, venue_id in wanted[name].items():
                if name in listed and coid not in listed[name] and not venue_id:
                    continue
                with contextlib.suppress(NotFound):
                    try:
                        orders[coid] = await connector.get_order_by_client_id(coid)
                    except NotFound:
                        if not venue_id:
                            raise
                        orders[coid] = await connector.get_order(venue_id)
            for p in await connector.positions():
                positions[(name, p.symbol)] = p.qty
        finally:
            await connector.disconnect()
    return orders, positions


def paper_ids(state: Path) -> list[str]:
    """Every client order id in the paper account (duplicates would show here)."""
    conn = sqlite3.connect(f"file:{state / 'paper-paper.db'}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute("SELECT client_order_id FROM orders")]
    finally:
        conn.close()


def id_duplicates(ids: list[str], ours: set[str]) -> int:
    """Orders beyond the first under one client order id, plus orders nobody sent."""
    seen = collections.Counter(ids)
    return sum(n - 1 for n in seen.values() if n > 1) + sum(1 for c in seen if c not in ours)


async def duplicates_by_broker(
    brokers: list[str],
    state: Path,
    sims: list[Sim],
    plan: list[PlannedOrder],
    journal: dict[str, Order],
    found: dict[str, Order],
) -> dict[str, int]:
    """Duplicate orders at each broker, counted from the broker's side.

    Ours are the client order ids the clients gave and those the service made
    from them (replacements of reduced peers, pieces of emulated children); an
    order the service adopted under an id of the venue's making is not ours.
    """
    given = {c for o in plan for c in o.coids}
    # The service's own: a replacement of a reduced peer (``<leg>.r``), a piece (``<child>.2``).
    ours = given | {c for c in journal if c.split(".", 1)[0] in given}
    out: dict[str, int] = {}
    if "paper" in brokers:
        out["paper"] = id_duplicates(paper_ids(state), ours)
    for sim in sims:
        if sim.name == "ib":
            out["ib"] = id_duplicates(await ib_order_refs(sim), ours)
        else:
            # No listing by client id there: every order it made beyond the ones
            # found by our client order ids is a second copy (or a stray).
            created = await orders_created(sim)
            at_broker = len({o.id for c, o in found.items() if o.broker == sim.name and c in ours})
            out[sim.name] = max(0, (created if created is not None else at_broker) - at_broker)
    return out


def count_faults(path: Path) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                counts[f"paper:{json.loads(line)['kind']}"] += 1
            except (ValueError, KeyError):
                counts["(torn line)"] += 1
    return counts


def risk_cause(exc: RiskRejected) -> str:
    """Why risk refused: the trading state (``reducing`` or ``halted``), else the limit's name."""
    if exc.limit != "trading_state":
        return exc.limit or "unnamed limit"
    # Only the message tells the two states apart; reducing's names itself.
    return "trading state reducing" if "reducing" in exc.message else "trading state halted"


def reconcile_totals(log_path: Path) -> dict[str, int]:
    totals: collections.Counter[str] = collections.Counter()
    for line in log_path.read_text(errors="replace").splitlines():
        if '"reconciled' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        key = "start" if entry.get("event") == "reconciled on start" else "running"
        totals[f"{key}_passes"] += 1
        for name in ("checked", "resubmitted", "never_arrived", "unresolved", "adopted"):
            totals[f"{key}_{name}"] += int(entry.get(name, 0))
    return dict(totals)


async def chaos(args: argparse.Namespace) -> int:
    plan = make_plan(args.orders, args.seed, args.brokers, args.lists_at, args.mix)
    base = Path(tempfile.mkdtemp(prefix="ult-chaos-", dir="/tmp"))
    tally = Tally()
    sim_faults: collections.Counter[str] = collections.Counter()
    sims: list[Sim] = []
    child: Child | None = None
    try:
        sims = start_sims(
            [b for b in args.brokers if b != "paper"], base, args.seed, args.venue_limits
        )
        env = {k: v for sim in sims for k, v in sim.env.items()}
        child = Child(base, args, tally, env)
        started = time.monotonic()
        await child.start()
        rng = random.Random(args.seed + 2)

        async def break_sims() -> None:
            await inject_faults(sims, rng, args.sim_faults_per_s, sim_faults)

        await run_clients(child, plan, args, tally, break_sims)
        elapsed = time.monotonic() - started
        refused_by_limits = await limit_refusals(sims)
        await disarm(sims)
        settle_started = time.monotonic()
        waited_on, service_positions = await settle(child, args.brokers, args.settle_timeout)
        settle_s = time.monotonic() - settle_started
        await child.stop()
        journal = read_journal(child.state / "journal.db")
        listed = {sim.name: set(await ib_order_refs(sim)) for sim in sims if sim.name == "ib"}
        broker, broker_positions = await read_brokers(child.state, plan, journal, env, listed)
        duplicates = await duplicates_by_broker(
            args.brokers, child.state, sims, plan, journal, broker
        )
        report = check(
            plan, tally, journal, broker, duplicates, broker_positions, service_positions
        )
        faults = count_faults(child.faults)
        faults.update(sim_faults)
        report["faults"] = dict(sorted(faults.items()))
        report["venue_limits"] = args.venue_limits
        report["limit_429s_by_broker"] = refused_by_limits
        report["faults"]["kill9"] = tally.kills
        report["faults"]["service_gave_up_and_restarted"] = tally.exits
        report["reconciliation"] = reconcile_totals(child.log_path)
        # Races between fills and position pulls that the service's book put right itself.
        report["position_drifts"] = child.log_path.read_text(errors="replace").count(
            '"event": "position drift"'
        )
        report["elapsed_s"] = round(elapsed, 1)
        report["settle_s"] = round(settle_s, 1)
        report["still_busy_at_end"] = waited_on[:10]
        report["orders_per_s"] = round(args.orders / elapsed, 1)
        report["base"] = str(base) if args.keep else None
        print_report(report, args)
        ok = (
            report["duplicates"] == 0
            and report["lost"] == 0
            and report["mismatched"] == 0
            and report["unsettled"] == 0
            and report["replace_links_broken"] == 0
            and report["leg_working_after_peer_filled"] == 0
            and report["oto_children_released_off"] == 0
            and report["positions_agree"]
            and report["service_book_agrees"]
            # Under the real venues' limits the budgets keep the service from ever meeting one.
            and (args.venue_limits != "real" or sum(refused_by_limits.values()) == 0)
        )
        return 0 if ok else 1
    finally:
        if child is not None:
            await child.stop()
        stop_sims(sims)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


def check(
    plan: list[PlannedOrder],
    tally: Tally,
    journal: dict[str, Order],
    broker: dict[str, Order],
    duplicates_at: dict[str, int],
    broker_positions: dict[tuple[str, str], Decimal],
    service_positions: list[Any],
) -> dict[str, Any]:
    def accounted_for(coid: str) -> bool:
        """At the broker; or no order a venue made; or, replaced at a venue that modifies
        in place (TWS), known there as its replacement."""
        mine = journal.get(coid)
        return (
            coid in broker
            or (mine is not None and never_sent(mine))
            or (
                mine is not None
                and mine.status == "replaced"
                and chain(journal, coid)[-1] in broker
            )
        )

    lost_ids = [
        c for c, reply in tally.replies.items() if reply.status in TAKEN and not accounted_for(c)
    ] + [c for c, o in journal.items() if o.status != "rejected" and not accounted_for(c)]
    mismatched_ids = []
    for coid, theirs in broker.items():
        mine = journal.get(coid)
        if mine is not None and mine.status == "replaced":
            continue  # a venue that modifies in place reports the replacement (links checked below)
        if mine is None or mine.status != theirs.status or mine.filled_qty != theirs.filled_qty:
            mismatched_ids.append(
                f"{coid}@{theirs.broker}: journal {mine.status if mine else None}"
                f" {mine.filled_qty if mine else ''}, broker {theirs.status} {theirs.filled_qty}"
            )
    unsettled = [
        c
        for c, o in journal.items()
        if (
            o.status not in TERMINAL_STATUSES
            and o.status not in ("accepted", "partially_filled", "held")
        )
        or o.outcome == "unknown"
    ] + held_after_parent_filled(journal)
    links = broken_replace_links(journal, broker, tally.replies)
    off = released_off(journal)
    # Checked on both sides: the journal's statuses, and the brokers' read back.
    peers = [f"journal: {p}" for p in peers_both_working(journal, journal)] + [
        f"broker: {p}" for p in peers_both_working(journal, broker)
    ]
    from_journal = journal_positions(journal)
    at_broker = {k: q for k, q in broker_positions.items() if q}
    book = {(p.broker, p.symbol): p.qty for p in service_positions if p.qty}
    accepted = [r for r in tally.replies.values() if r.status != "rejected"]
    by_broker = collections.Counter(o.broker for o in plan)
    return {
        "submitted": len(plan),
        "submitted_by_broker": dict(sorted(by_broker.items())),
        "accepted": len(accepted),
        "accepted_outcome_unknown_at_reply": sum(1 for r in accepted if r.outcome == "unknown"),
        "rejected": sum(tally.rejected.values()),
        "rejected_by_reason": dict(sorted(tally.rejected.items())),
        "risk_refused_by_cause": dict(sorted(tally.risk_refused.items())),
        "canceled_by_clients": tally.canceled,
        "client_reconnects": tally.reconnects,
        "client_retries_after_unavailable": tally.retried_unavailable,
        "at_broker": len(broker),
        "open_at_end": sum(1 for o in broker.values() if o.status in OPEN_STATUSES),
        "duplicates": sum(duplicates_at.values()),
        "duplicates_by_broker": dict(sorted(duplicates_at.items())),
        "lost": len(set(lost_ids)),
        "lost_ids": sorted(set(lost_ids))[:10],
        # What the journal says of each: enough to start from (the run's --keep has the rest).
        "lost_in_journal": {
            c: f"{o.status} id={o.id or '-'} filled={o.filled_qty} outcome={o.outcome}"
            for c in sorted(set(lost_ids))[:10]
            if (o := journal.get(c)) is not None
        },
        "mismatched": len(mismatched_ids),
        "mismatched_ids": mismatched_ids[:10],
        "unsettled": len(unsettled),
        "unsettled_ids": unsettled[:10],
        "replaced": len(tally.replaced),
        "internal_errors": tally.internal[:10],
        "replaced_in_journal": sum(1 for o in journal.values() if o.status == "replaced"),
        # Their fills stay with them (the mismatch and position checks hold them to it).
        "replaced_after_partial_fill": sum(
            1 for o in journal.values() if o.status == "replaced" and o.filled_qty > 0
        ),
        "replace_refused": dict(sorted(tally.replace_refused.items())),
        "lists": dict(sorted(tally.lists.items())),
        # Sent: a child's held rest is a record of what may still go out, not a piece.
        "emulated_pieces": sum(
            1
            for c, o in journal.items()
            if o.leg and "." in c.rsplit("-", 1)[-1] and not never_sent(o)
        ),
        "pairs_decided": pairs_decided(journal),
        "oto_children_released_off": len(off),
        "oto_children_released_off_ids": off[:10],
        "replace_links_broken": len(links),
        "replace_links_broken_ids": links[:10],
        "leg_working_after_peer_filled": len(peers),
        "leg_working_after_peer_filled_ids": peers[:10],
        "positions_agree": {k: q for k, q in from_journal.items() if q} == at_broker,
        "service_book_agrees": book == at_broker,
        "broker_positions": {f"{b}:{s}": str(q) for (b, s), q in sorted(at_broker.items())},
        "service_book": {f"{b}:{s}": str(q) for (b, s), q in sorted(book.items())},
        "journal_positions": {
            f"{b}:{s}": str(q) for (b, s), q in sorted(from_journal.items()) if q
        },
    }


def print_report(report: dict[str, Any], args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return
    print(f"chaos: seed {args.seed}, {args.clients} clients, fault rate {args.fault_rate}")
    rows = [
        ("submitted", report["submitted"]),
        *((f"  to {b}", n) for b, n in report["submitted_by_broker"].items()),
        ("accepted", report["accepted"]),
        ("  outcome unknown at reply", report["accepted_outcome_unknown_at_reply"]),
        ("rejected", report["rejected"]),
        *((f"  {reason}", n) for reason, n in report["rejected_by_reason"].items()),
        ("  of those, refused by risk", sum(report["risk_refused_by_cause"].values())),
        *((f"    {cause}", n) for cause, n in report["risk_refused_by_cause"].items()),
        ("canceled by clients", report["canceled_by_clients"]),
        ("client reconnects", report["client_reconnects"]),
        ("faults injected", sum(report["faults"].values())),
        *((f"  {kind}", n) for kind, n in report["faults"].items()),
        ("reconciliation", ""),
        *((f"  {k}", n) for k, n in sorted(report["reconciliation"].items())),
        (f"429s / IB error 100s from venue limits ({report['venue_limits']})",
         sum(report["limit_429s_by_broker"].values())),
        *((f"  at {b}", n) for b, n in report["limit_429s_by_broker"].items()),
        ("orders at the broker", report["at_broker"]),
        ("  open at the end", report["open_at_end"]),
        ("duplicates", report["duplicates"]),
        *((f"  at {b}", n) for b, n in report["duplicates_by_broker"].items()),
        ("lost", report["lost"]),
        ("mismatched journal/broker", report["mismatched"]),
        ("unsettled", report["unsettled"]),
        ("replaces applied", report["replaced"]),
        ("  replaced in the journal", report["replaced_in_journal"]),
        ("  replaced after a partial fill", report["replaced_after_partial_fill"]),
        *((f"  refused: {code}", n) for code, n in report["replace_refused"].items()),
        ("replace links broken", report["replace_links_broken"]),
        ("order lists placed", sum(report["lists"].values())),
        *((f"  {kind}", n) for kind, n in report["lists"].items()),
        ("  emulated pieces and reduced peers", report["emulated_pieces"]),
        ("  exit pairs one leg of which filled", report["pairs_decided"]),
        ("leg working after its peer filled", report["leg_working_after_peer_filled"]),
        ("OTO child released != parent's fill", report["oto_children_released_off"]),
        ("positions agree (broker = journal)", "yes" if report["positions_agree"] else "NO"),
        ("service book = broker", "yes" if report["service_book_agrees"] else "NO"),
        ("  drifts it put right", report["position_drifts"]),
        ("elapsed s", report["elapsed_s"]),
        ("settled in s", report["settle_s"]),
        ("orders/s", report["orders_per_s"]),
    ]
    for name, value in rows:
        print(f"{name:<38}{value}")
    if not (report["positions_agree"] and report["service_book_agrees"]):
        print(f"broker positions:  {report['broker_positions']}")
        print(f"journal positions: {report['journal_positions']}")
        print(f"service book:      {report['service_book']}")
    for key in (
        "lost_ids", "lost_in_journal", "mismatched_ids", "unsettled_ids", "still_busy_at_end",
        "replace_links_broken_ids", "leg_working_after_peer_filled_ids",
        "oto_children_released_off_ids", "internal_errors",
    ):  # fmt: skip
        if report[key]:
            print(f"{key}: {report[key]}")
    if report["base"]:
        print(f"kept: {report['base']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="scripts/chaos", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--orders", type=int, default=1000, help="orders to submit (default 1000)")
    p.add_argument("--seed", type=int, default=1, help="fixes orders, faults, kill points")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument(
        "--clients-by-broker",
        action="store_true",
        help="each client sends to one broker only (default: every client to every broker)",
    )
    p.add_argument(
        "--kills",
        type=int,
        default=None,
        help="kill -9 + restarts (default 1 per 2000 orders, >= 1)",
    )
    p.add_argument("--fault-rate", type=float, default=0.05, help="share of broker calls broken")
    p.add_argument(
        "--stream-drop-every", type=float, default=20.0, help="mean s between stream cuts (0: off)"
    )
    p.add_argument(
        "--brokers",
        default=",".join(BROKERS),
        help=f"comma-separated, from {', '.join(BROKERS)} (default: all)",
    )
    p.add_argument(
        "--lists-at",
        default=None,
        help="brokers that get brackets, OCOs and OTOs (default: every one in --brokers)",
    )
    p.add_argument(
        "--sim-faults-per-s", type=float, default=3.0, help="simulator faults armed per second"
    )
    p.add_argument(
        "--venue-limits",
        choices=("real", "small", "off"),
        default="real",
        help="request limits the Alpaca and OANDA simulators enforce (default real: the"
        " venues' own, never to be met; small: met often, nothing lost)",
    )
    p.add_argument(
        "--mix",
        default="",
        help="shares of the kinds, e.g. order=0.4,replace=0.2 (default: "
        + ",".join(f"{k}={v}" for k, v in KINDS.items())
        + ")",
    )
    p.add_argument(
        "--synchronous",
        choices=("normal", "full"),
        default="normal",
        help="the journal's synchronous setting (default normal; full: each submit fsynced"
        " before its ack)",
    )
    p.add_argument("--settle-timeout", type=float, default=120.0, help="max s to wait at the end")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, journal, account)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = p.parse_args(argv)
    # The connectors used to read the brokers back log at info; only problems matter here.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if args.kills is None:
        args.kills = max(1, args.orders // 2000)
    if args.orders < 1 or args.clients < 1:
        p.error("--orders and --clients must be at least 1")
    args.brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    args.lists_at = (
        args.brokers
        if args.lists_at is None
        else [b.strip() for b in args.lists_at.split(",") if b.strip()]
    )
    unknown = sorted((set(args.brokers) | set(args.lists_at)) - set(BROKERS))
    if unknown or not args.brokers:
        p.error(f"--brokers: unknown {', '.join(unknown) or '(none given)'}")
    try:
        args.mix = parse_mix(args.mix)
    except ValueError as exc:
        p.error(f"--mix: {exc}")
    return trio.run(chaos, args)


if __name__ == "__main__":
    raise SystemExit(main())
