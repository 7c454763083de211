"""Settling journaled orders against their broker: at start, and while running.

The journal is the service's memory of what it sent; the broker is the truth
of what happened. Reconciliation asks the broker about every order the
journal does not know the end of (by client order id) and settles it. The
rule (also in ``docs/architecture.md``, "Durability"):

- **found** at the broker: the broker's state is merged in (filled, canceled,
  still open, ...), and the outcome becomes definitive;
- **never arrived** (the broker does not know the client order id, asked at
  least ``settle_grace_s`` after the order was sent, so a request still in
  flight has landed or died): at *start*, an order younger than
  ``resubmit_max_age_s`` is resubmitted with the same client order id (its
  client was never answered: the crash was ours, so we finish the job while
  it is still timely); an older one, and any found while *running* (its
  submit already gave up and answered the client), is marked ``rejected``
  with reason ``never_reached_broker``;
- **lost** (the broker had accepted it, and now does not know it: it
  restarted and lost its book, or a person cleared it): after a grace period
  the order is asked about a second time; a second successful answer that
  does not know it either makes it ``lost`` (final, with the reason), journaled
  and published once. A failed lookup is never read as "not there";
- **cannot ask** (the broker is down): the order stays ``unknown`` and is
  visible as such in ``ult orders`` until a later pass settles it.

Orders the broker has open that the journal lacks (a journal that lost its
tail or was deleted, an order a person placed on the broker's web page) are
**adopted**: journaled with the broker's state, marked ``origin = "adopted"``,
published as an order update (risk and positions count them from it), counted
and logged at warning. Never adopted: an order the journal has (by client
order id, whatever its state), and an order being submitted right now
(``in_flight``: its journal record may not be readable yet).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import msgspec
import trio

from ult_actors.errors import BrokerUnavailable, RateLimited, UltError
from ult_actors.journal import OrderStore
from ult_actors.messages import OPEN_STATUSES, Order
from ult_actors.order_state import is_local_verdict

T = TypeVar("T")
_NS = 1_000_000_000
#: Statuses that mean "we sent something and have not heard back".
IN_FLIGHT_STATUSES = frozenset({"pending_new", "pending_cancel", "pending_replace"})


@dataclass(frozen=True)
class ReconcilePolicy:
    """Timings of reconciliation (seconds)."""

    #: A sent request may still land this long after it was sent.
    settle_grace_s: float = 2.0
    #: At start, never-arrived orders younger than this are resubmitted; older ones rejected.
    resubmit_max_age_s: float = 30.0
    #: An order in pending_new / pending_cancel (or of unknown outcome) this long is looked up.
    stuck_after_s: float = 10.0
    #: How often the running check for stuck orders runs.
    interval_s: float = 5.0
    #: Every this many running checks, sweep the broker's open orders for ones the journal lacks.
    sweep_every: int = 6


@dataclass
class ReconcileSummary:
    """What one reconciliation pass found, for the log line and for tests."""

    checked: int = 0
    settled: dict[str, int] = field(default_factory=dict)  # final status -> count
    resubmitted: int = 0
    never_arrived: int = 0
    unresolved: list[str] = field(default_factory=list)
    #: Open at the broker, unknown to the journal: journaled as ``origin = "adopted"``.
    adopted: list[str] = field(default_factory=list)
    #: The journal held no order of this broker when the pass began (start only).
    journal_empty: bool = False
    conflicts: list[str] = field(default_factory=list)
    #: Orders the broker had and no longer knows, now final as ``lost``.
    lost: list[str] = field(default_factory=list)

    def count(self, status: str) -> None:
        self.settled[status] = self.settled.get(status, 0) + 1

    def fields(self) -> dict[str, Any]:
        """Log fields; ids are truncated to a few so one line stays readable."""
        return {
            "checked": self.checked,
            "settled": dict(sorted(self.settled.items())),
            "resubmitted": self.resubmitted,
            "never_arrived": self.never_arrived,
            "unresolved": len(self.unresolved),
            "unresolved_ids": self.unresolved[:10],
            "adopted": len(self.adopted),
            "adopted_ids": self.adopted[:10],
            "conflicts": self.conflicts[:10],
            "lost": len(self.lost),
            "lost_ids": self.lost[:10],
        }


class BrokerSide(Protocol):
    """What reconciliation needs of a broker actor incarnation."""

    name: str

    async def lookup(self, client_order_id: str) -> Order | None:
        """The broker's view of one order; ``None`` if it never arrived."""

    async def lookup_by_id(self, order_id: str) -> Order | None:
        """The broker's view of one order by its broker order id; ``None`` if unknown."""

    async def open_orders(self) -> list[Order]:
        """The broker's open orders."""

    async def settle(self, order: Order) -> Order:
        """Merge a broker report into the journal (and publish it)."""

    async def resubmit(self, order: Order) -> Order:
        """Send a never-arrived order again with the same client order id."""

    def in_flight(self, client_order_id: str) -> bool:
        """Whether a submit of this order is running right now."""


async def _patiently(fn: Callable[[], Awaitable[T]], attempts: int = 4) -> T:
    """Call ``fn``, retrying transient broker errors with a short doubling delay.

    One dropped connection should not cost a whole incarnation (and a tick of
    the supervisor's restart intensity); a broker that stays down still does.
    """
    delay = 0.05
    for _ in range(attempts - 1):
        try:
            return await fn()
        except (BrokerUnavailable, RateLimited) as exc:
            await trio.sleep(max(delay, exc.retry_after or 0.0))
            delay *= 2
    return await fn()


async def _ask(side: BrokerSide, coid: str) -> Order | None:
    """Look an order up by client order id; connection errors propagate after retries."""
    return await _patiently(lambda: side.lookup(coid))


def held_here(order: Order) -> bool:
    """A leg of an emulated order list the service holds: never sent, nothing to ask."""
    return order.status == "held" and order.leg is not None and order.leg.emulated


def lost(order: Order, reason: str, now_ns: int) -> Order:
    """The journal's final record for an order its broker had and no longer knows."""
    return msgspec.structs.replace(
        order,
        status="lost",
        reject_reason=f"lost: {reason}",
        outcome="definitive",
        updated_at=now_ns,
    )


def never_arrived(order: Order, reason: str, now_ns: int) -> Order:
    """The journal's final record for an order its broker never received."""
    return msgspec.structs.replace(
        order,
        status="rejected",
        reject_reason=f"never_reached_broker: {reason}",
        outcome="definitive",
        updated_at=now_ns,
    )


async def reconcile_on_start(
    side: BrokerSide,
    store: OrderStore,
    policy: ReconcilePolicy,
    *,
    now_ns: Callable[[], int] = time.time_ns,
) -> ReconcileSummary:
    """Settle every non-terminal journaled order of this broker before it takes new ones.

    Raises ``BrokerUnavailable`` when the broker cannot be asked: the broker
    actor then crashes and its supervisor tries again after a backoff, with
    new orders waiting in the mailbox meanwhile.
    """
    summary = ReconcileSummary()
    summary.journal_empty = not await store.list_orders(broker=side.name, limit=1)
    # Replacements first: one the broker has ends the order it replaced (``settle``),
    # which a venue that modifies in place no longer knows by its old id.
    pending = sorted(
        [o for o in await store.non_terminal(side.name) if not held_here(o)],
        key=lambda o: o.replaces is None,
    )
    broker_open = {o.client_order_id: o for o in await _patiently(side.open_orders)}
    missing: list[Order] = []
    for order in pending:
        if order.replaces is None:
            now_known = await store.get(order.client_order_id)
            if (
                now_known is not None
                and now_known.status not in OPEN_STATUSES
                and not is_local_verdict(now_known)
            ):
                continue  # ended by its replacement just above
        summary.checked += 1
        found = broker_open.get(order.client_order_id) or await _ask(
            side, order.client_order_id
        )
        if found is None:
            missing.append(order)
            continue
        summary.count((await side.settle(await _with_its_id(store, order, found))).status)
    for coid, theirs in broker_open.items():
        ours = await store.get(coid)
        if ours is None:
            await _adopt(side, store, theirs, summary)
        elif ours.status not in OPEN_STATUSES:
            await _final_here_open_there(side, ours, theirs, summary)
    if missing:
        await _settle_missing(side, store, policy, missing, summary, now_ns, resubmit=True)
    return summary


async def reconcile_stuck(
    side: BrokerSide,
    store: OrderStore,
    policy: ReconcilePolicy,
    *,
    now_ns: Callable[[], int] = time.time_ns,
    sweep: bool = False,
) -> ReconcileSummary:
    """One running pass: look up orders stuck in flight; optionally sweep open orders."""
    summary = ReconcileSummary()
    now = now_ns()
    stuck_ns = int(policy.stuck_after_s * _NS)
    missing: list[Order] = []
    for order in await store.non_terminal(side.name):
        if side.in_flight(order.client_order_id) or held_here(order):
            continue
        if order.status not in IN_FLIGHT_STATUSES and order.outcome != "unknown":
            continue
        if now - order.updated_at < stuck_ns:
            continue
        summary.checked += 1
        found = await _ask(side, order.client_order_id)
        if found is None:
            missing.append(order)
            continue
        summary.count((await side.settle(await _with_its_id(store, order, found))).status)
    if missing:
        await _settle_missing(side, store, policy, missing, summary, now_ns, resubmit=False)
    if sweep:
        await _sweep(side, store, policy, summary, now_ns)
    return summary


async def _sweep(
    side: BrokerSide,
    store: OrderStore,
    policy: ReconcilePolicy,
    summary: ReconcileSummary,
    now_ns: Callable[[], int],
) -> None:
    """Compare open orders both ways; catch up on what the update stream missed."""
    broker_open: dict[str, Order] = {}
    for theirs in await _patiently(side.open_orders):
        broker_open[theirs.client_order_id] = theirs
        ours = await store.get(theirs.client_order_id)
        if ours is None:
            await _adopt(side, store, theirs, summary)
        elif ours.status not in OPEN_STATUSES:
            await _final_here_open_there(side, ours, theirs, summary)
        elif theirs.filled_qty > ours.filled_qty or theirs.status != ours.status:
            summary.checked += 1
            summary.count((await side.settle(theirs)).status)
    # Open in the journal, no longer open at the broker: filled or canceled while an
    # update was lost on the way (a dropped stream), or lost by the broker. Ask, and settle.
    gone: list[Order] = []
    for ours in await store.non_terminal(side.name):
        coid = ours.client_order_id
        if coid in broker_open or ours.status == "pending_new" or side.in_flight(coid):
            continue
        if held_here(ours):
            continue
        summary.checked += 1
        found = await _ask(side, coid)
        if found is None:
            gone.append(ours)
        else:
            summary.count((await side.settle(found)).status)
    if gone:
        await _settle_gone(side, store, policy, gone, summary, now_ns)


async def _adopt(
    side: BrokerSide, store: OrderStore, theirs: Order, summary: ReconcileSummary
) -> None:
    """Journal an order the broker holds and the journal lacks, as the broker has it.

    Not one being submitted now (it is ours; its record may be on its way),
    and only if the journal still lacks it after that check, so an order is
    adopted at most once and never one the service sent.
    """
    coid = theirs.client_order_id
    if side.in_flight(coid) or await store.get(coid) is not None:
        return
    settled = await side.settle(msgspec.structs.replace(theirs, origin="adopted"))
    if settled.client_order_id == coid:  # else a leg of ours the venue named itself
        summary.adopted.append(coid)


async def _final_here_open_there(
    side: BrokerSide, ours: Order, theirs: Order, summary: ReconcileSummary
) -> None:
    """The journal has ``ours`` final while the broker reports it open as ``theirs``.

    The broker's record wins over a verdict the service reached on its own
    (``is_local_verdict``, e.g. rejected after an unreadable or lost answer);
    two broker records that disagree are a conflict for a person to read.
    """
    if is_local_verdict(ours):
        summary.checked += 1
        summary.count((await side.settle(theirs)).status)
        return
    coid = ours.client_order_id
    summary.conflicts.append(f"{coid}: journal {ours.status}, broker {theirs.status}")


async def _settle_missing(
    side: BrokerSide,
    store: OrderStore,
    policy: ReconcilePolicy,
    missing: list[Order],
    summary: ReconcileSummary,
    now_ns: Callable[[], int],
    *,
    resubmit: bool,
) -> None:
    """Apply the never-arrived rule, after the grace period has passed for each order."""
    grace_ns = int(policy.settle_grace_s * _NS)
    youngest = max(o.updated_at for o in missing)
    wait_s = (youngest + grace_ns - now_ns()) / _NS
    if wait_s > 0:
        # A request sent just before a crash may still be on its way: ask again after.
        await trio.sleep(min(wait_s, policy.settle_grace_s))
        still: list[Order] = []
        for order in missing:
            found = await _ask(side, order.client_order_id)
            if found is None:
                still.append(order)
            else:
                summary.count((await side.settle(await _with_its_id(store, order, found))).status)
        missing = still
    max_age_ns = int(policy.resubmit_max_age_s * _NS)
    gone = [o for o in missing if o.status != "pending_new"]
    if gone:
        # It had been accepted once, yet the broker denies it.
        await _settle_gone(side, store, policy, gone, summary, now_ns)
    for order in missing:
        if order.status != "pending_new":
            continue
        # Not found when asked; but the same client order id may have been sent since
        # (a replace redone by an emulated list while this pass ran, a list asked again)
        # and be at the broker now: an order reported meanwhile or being sent now is not
        # declared never-arrived. Sending is checked last: no await from there to the verdict.
        now_known = await store.get(order.client_order_id)
        if now_known is not None and now_known.status != "pending_new":
            continue
        if side.in_flight(order.client_order_id):
            continue
        summary.never_arrived += 1
        age_ns = now_ns() - (order.created_at or order.updated_at)
        if resubmit and age_ns <= max_age_ns:
            try:
                settled = await side.resubmit(order)
            except BrokerUnavailable:
                raise
            except UltError:
                summary.count("rejected")  # a definitive refusal, journaled by the submit path
                continue
            summary.resubmitted += 1
            summary.count(settled.status)
            continue
        reason = (
            f"not at {side.name} {age_ns / _NS:.0f}s after it was sent"
            if resubmit
            else f"{side.name} has no order with this client order id"
        )
        await side.settle(never_arrived(now_known or order, reason, now_ns()))
        summary.count("rejected")


async def _with_its_id(store: OrderStore, order: Order, found: Order) -> Order:
    """``found`` (the venue's record of ``order``), given the id a replacement has there.

    A venue that modifies in place (TWS) keeps the replaced order's id, yet one
    of its reports carries none (TWS's completed orders). Without that id the
    replacement would not end the order it replaced (``settle``), which the venue
    no longer knows under its old client order id: that order would end ``lost``.
    """
    if found.id or not order.replaces:
        return found
    replaced = await store.get(order.replaces)
    if replaced is None or not replaced.id:
        return found
    return msgspec.structs.replace(found, id=replaced.id, replaces=order.replaces)


async def _replaced_in_place(side: BrokerSide, store: OrderStore, order: Order) -> Order | None:
    """The replacement of ``order`` at a venue that modifies in place (TWS), if it has one.

    Such a venue knows a modified order by its old broker id under the
    replacement's client order id: a change it applied after the service had
    given up on it (TWS holds changes while it has lost IB) shows there.
    """
    if not order.id:
        return None
    there = await _patiently(lambda: side.lookup_by_id(order.id))
    if there is None or there.client_order_id == order.client_order_id:
        return None
    mine = await store.get(there.client_order_id)
    if mine is None or mine.replaces != order.client_order_id:
        return None
    return msgspec.structs.replace(there, replaces=order.client_order_id)


async def _settle_gone(
    side: BrokerSide,
    store: OrderStore,
    policy: ReconcilePolicy,
    gone: list[Order],
    summary: ReconcileSummary,
    now_ns: Callable[[], int],
) -> None:
    """Orders the broker had accepted and just denied knowing: confirm, then ``lost``.

    The miss is confirmed by a second successful lookup ``settle_grace_s``
    later (a broker still replaying its book after a restart, a report on its
    way); a lookup that fails raises, so the order stays open for a later pass.
    """
    await trio.sleep(policy.settle_grace_s)
    for order in gone:
        coid = order.client_order_id
        found = await _ask(side, coid) or await _replaced_in_place(side, store, order)
        if found is not None:
            summary.count((await side.settle(found)).status)
            continue
        current = await store.get(coid) or order
        if current.status not in OPEN_STATUSES or side.in_flight(coid):
            continue  # settled (or sent again) meanwhile
        was = "accepted" if current.status == "pending_new" else current.status
        reason = (
            f"{side.name} no longer has this order (it was {was}; asked twice,"
            f" {policy.settle_grace_s:g} s apart)"
        )
        await side.settle(lost(current, reason, now_ns()))
        summary.lost.append(coid)
        summary.count("lost")
