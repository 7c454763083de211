"""The router: validates a submit, resolves its broker, refuses duplicates, forwards it.

A replace is checked here too: the working order is found, its new terms
built and validated (``validation.replaced_terms``), and a replacement id
already used by a different order is refused; then it goes on through risk.

Resolution order: the request's explicit ``broker``, else the first routing
rule whose pattern matches the symbol, else the default broker. The reply
slot travels on with the order (``router -> risk -> broker``), so the broker
answers the client directly. A new order skips the hop through risk when
risk's gate says its check can run here (``RiskGate``): ``router -> broker``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import msgspec

from ult_actors.actors.commands import (
    BrokerCommand,
    CancelOrder,
    PlaceList,
    PlaceOrder,
    ReplaceOrder,
)
from ult_actors.actors.journal import JournalSlot
from ult_actors.actors.lookup import find_order, known_broker
from ult_actors.actors.risk import RiskCommand, RiskGate
from ult_actors.errors import AlreadyFinal, DuplicateOrder, NotFound, UltError
from ult_actors.messages import (
    Cancel,
    Order,
    OrderListRequest,
    OrderRequest,
    Replace,
    ReplaceRequest,
    Submit,
    SubmitList,
)
from ult_actors.order_state import REPLACEABLE_STATUSES, not_replaceable
from ult_actors.recent import Recent
from ult_actors.runtime import ActorContext, Envelope, Mailbox, serve_mailbox
from ult_actors.runtime.direct import hand_on
from ult_actors.validation import (
    check_exit_qty,
    check_replace_changes,
    replaced_terms,
    validate_order,
    validate_order_list,
)

RouterCommand = Submit | SubmitList | Replace | Cancel

#: How many recently submitted client order ids the router remembers in memory.
_RECENT = 100_000

# What a new order's way reads, as ``Final`` names: compiled, a C static each, not a
# look-up in this module's dict (a class from an uncompiled module is one otherwise).
_SUBMIT: Final = Submit
_PLACE_ORDER: Final = PlaceOrder
_replace: Final = msgspec.structs.replace


@dataclass
class RouterDeps:
    """What the router is built from."""

    brokers: dict[str, Mailbox[BrokerCommand]]
    risk: Mailbox[RiskCommand]
    journal: JournalSlot
    default_broker: str
    rules: list[tuple[str, str]]  # (pattern, broker)
    submit_timeout_s: float = 30.0
    #: Risk's check, run here when that saves the hop through risk (``None``: never).
    risk_gate: RiskGate | None = None
    #: An order's checks, injected so a test can make them fail (a compiled module
    #: calls what it imported directly, past any patch of the module).
    validate: Callable[[OrderRequest], None] = validate_order


def resolve_broker(request: OrderRequest, deps: RouterDeps) -> str:
    """The broker connection this order goes to, or ``NotFound`` naming the choices."""
    return _resolved(request, request.broker, deps)


def _resolved(request: OrderRequest, name: str | None, deps: RouterDeps) -> str:
    """``resolve_broker`` with ``request.broker`` read by the caller (``name``)."""
    if name is None:
        # Most services route by no rule: the default without starting a search.
        name = deps.default_broker
        if deps.rules:
            name = next(
                (b for pattern, b in deps.rules if fnmatch.fnmatchcase(request.symbol, pattern)),
                name,
            )
    return known_broker(name, deps.brokers)


def router_actor(deps: RouterDeps) -> Callable[[ActorContext[RouterCommand]], Awaitable[None]]:
    """The router's actor body."""

    async def start(ctx: ActorContext[RouterCommand]) -> None:
        # Entered directly by an asker while idle: the gateway's task routes its submit,
        # by a plain call as far as nothing waits (``begin``).
        router = _Router(deps, ctx)
        await serve_mailbox(ctx, router.handle, direct=True, begin=router.begin)

    return start


class _Router:
    """One incarnation of the router: the orders it saw lately, and its two handlers."""

    def __init__(self, deps: RouterDeps, ctx: ActorContext[RouterCommand]) -> None:
        self.deps = deps
        self.ctx = ctx
        #: Recently submitted orders by client order id.
        self.recent: Recent[str, OrderRequest] = Recent(_RECENT)

    async def handle(self, env: Envelope[RouterCommand]) -> None:
        try:
            match env.msg:
                case Submit(order=request):
                    await self.submit(env, request)
                case SubmitList(orders=orders):
                    await self.submit_list(env, orders)
                case Replace(change=change):
                    await self.replace(env, change)
                case Cancel(order_id=order_id):
                    await self.cancel(env, order_id)
        except UltError as exc:
            self.ctx.fail(env, exc)

    def begin(self, env: Envelope[RouterCommand], now: float) -> Awaitable[None] | None:
        """``handle`` by a plain call as far as nothing waits (``DirectEntry``'s ``begin``):
        ``None`` once ``env`` is answered or handed on, else the rest to await. ``now``:
        the time its asker read as it sent ``env`` (risk's check takes it for the time).

        A new order the journal surely lacks (``lacks``: no read) or this router saw
        lately is routed here; anything else is all rest (``handle``: its checks,
        which read nothing, run again there).
        """
        msg = env.msg
        if type(msg) is not _SUBMIT:  # decoded, never subclassed: no ``isinstance``
            return self.handle(env)
        try:
            request, broker = self._checked(msg.order)
            coid = request.client_order_id
            assert coid is not None, "the gateway assigns client order ids"
            earlier = self.recent.get(coid)
            if earlier is None:
                store = self.deps.journal.now
                if store is None or not store.lacks(coid):
                    return self.handle(env)  # only a read tells whether it is known
            elif not _same_terms(earlier, request):
                raise _used_by_another(coid)
            return self._place(env, request, coid, broker, now)
        except UltError as exc:
            self.ctx.fail(env, exc)
            return None

    async def submit(self, env: Envelope[RouterCommand], request: OrderRequest) -> None:
        deps = self.deps
        request, broker = self._checked(request)
        coid = request.client_order_id
        assert coid is not None, "the gateway assigns client order ids"
        earlier = self.recent.get(coid)
        if earlier is None:
            # The open store without awaiting ``get`` (~0.8k instructions) when it is open.
            store = deps.journal.now
            if store is None:
                store = await deps.journal.get()
            existing = await store.get(coid)
            if existing is not None:
                if not _same_order(existing, request):
                    raise _used_by_another(coid)
                self.ctx.reply(env, existing)  # idempotent: the same order, not a second one
                return
        elif not _same_terms(earlier, request):
            raise _used_by_another(coid)
        rest = self._place(env, request, coid, broker, None)  # it waited: risk reads the clock
        if rest is not None:
            await rest

    def _checked(self, request: OrderRequest) -> tuple[OrderRequest, str]:
        """``request`` validated, with the broker it goes to, and that broker's name
        (reads nothing)."""
        deps = self.deps
        validate = deps.validate
        if validate is validate_order:  # not replaced (the service): a native call
            validate_order(request)
        else:
            validate(request)
        asked = request.broker  # read once (a Struct's field: a look-up each time)
        broker = _resolved(request, asked, deps)
        if asked != broker:
            request = _replace(request, broker=broker)
        return request, broker

    def _place(
        self,
        env: Envelope[RouterCommand],
        request: OrderRequest,
        coid: str,
        broker: str,
        now: float | None,
    ) -> Awaitable[None] | None:
        """Send a new order on, its asker's reply slot with it (the broker answers the
        client directly): ``None`` once handed on, else the forward to await. ``broker``:
        ``request.broker`` (resolved); ``now``: the time, if nothing waited since its
        asker read it (``None``: not known)."""
        deps = self.deps
        deps.journal.check_writable()  # refused here, before risk or the broker sees it
        self.recent.put(coid, request)
        assert env.reply is not None
        place = _PLACE_ORDER(request=request)
        if deps.risk_gate is not None and deps.risk_gate.admit(request, env.deadline, now):
            target = deps.brokers[broker]  # risk passed it here
            if hand_on(self.ctx, env, target, place):  # the asker runs the broker's step
                return None
            return self.ctx.forward(env, target, place)
        return self.ctx.forward(env, deps.risk, place)

    async def submit_list(self, env: Envelope[RouterCommand], request: OrderListRequest) -> None:
        """Check a whole list, route it to one broker, and send it on through risk.

        A list asked again (same legs, same client order ids) is answered with its
        legs as the journal has them; a leg id used by a different order is refused.
        """
        validate_order_list(request)
        first = request.legs[0]
        broker = resolve_broker(
            msgspec.structs.replace(first, broker=request.broker or first.broker), self.deps
        )
        legs = [msgspec.structs.replace(leg, broker=broker) for leg in request.legs]
        request = msgspec.structs.replace(request, broker=broker, legs=legs)
        store = await self.deps.journal.get()
        known: list[Order] = []
        for leg in legs:
            assert leg.client_order_id is not None, "the gateway assigns client order ids"
            existing = await store.get(leg.client_order_id)
            if existing is None:
                continue
            if not _same_order(existing, leg, triggered=_is_triggered(existing)) or (
                existing.leg is not None and existing.leg.list_id != request.list_id
            ):
                raise DuplicateOrder(
                    f"client_order_id {leg.client_order_id} is already used by a different order",
                    field="client_order_id",
                )
            known.append(existing)
        if known and len(known) == len(legs) and all(o.status != "pending_new" for o in known):
            self.ctx.reply(env, known)  # idempotent: the same list, not a second one
            return
        self.deps.journal.check_writable()
        assert env.reply is not None
        await self.ctx.forward(env, self.deps.risk, PlaceList(request=request))

    async def replace(self, env: Envelope[RouterCommand], change: ReplaceRequest) -> None:
        store = await self.deps.journal.get()
        order = await find_order(store, change.order_id)
        new_coid = change.client_order_id
        assert new_coid is not None, "the gateway assigns the replacement's client order id"
        if order.status == "replaced" and order.replaced_by == new_coid:
            # This very replace, asked again after it took effect: its replacement.
            replacement = await store.get(new_coid)
            if replacement is not None:
                if not _asked_for(replacement, order, change):
                    raise DuplicateOrder(
                        f"client_order_id {new_coid} already replaced order"
                        f" {order.client_order_id} with other terms",
                        field="client_order_id",
                    )
                self.ctx.reply(env, replacement)
                return
        if order.status not in REPLACEABLE_STATUSES:
            raise not_replaceable(order)
        terms = replaced_terms(order, change)
        check_replace_changes(order, change, terms)
        check_exit_qty(order, terms)
        existing = await store.get(new_coid)
        if existing is not None and existing.replaces != order.client_order_id:
            raise DuplicateOrder(
                f"client_order_id {new_coid} is already used by a different order",
                field="client_order_id",
            )
        self.deps.journal.check_writable()
        assert env.reply is not None
        await self.ctx.forward(
            env, self.deps.risk, ReplaceOrder(order=order, change=change, terms=terms)
        )

    async def cancel(self, env: Envelope[RouterCommand], order_id: str) -> None:
        order = await find_order(await self.deps.journal.get(), order_id)
        if order.status == "lost":
            # Final like any other state (the broker no longer has it), with the reason.
            raise AlreadyFinal(
                f"order {order.ref} (client order id {order.client_order_id}) is lost"
                f" ({order.reject_reason or 'its broker no longer has it'});"
                " there is nothing to cancel",
                broker=order.broker,
            )
        broker = self.deps.brokers.get(order.broker)
        if broker is None:
            raise NotFound(f"order {order_id} belongs to unknown broker {order.broker!r}")
        assert env.reply is not None
        await self.ctx.forward(env, broker, CancelOrder(order_id=order.id or order.client_order_id))


def _used_by_another(coid: str) -> DuplicateOrder:
    return DuplicateOrder(
        f"client_order_id {coid} is already used by a different order", field="client_order_id"
    )


def _same_terms(earlier: OrderRequest, request: OrderRequest) -> bool:
    """Whether ``request`` asks for the same order as ``earlier``: all but the deadline,
    which is when one attempt's client stops waiting (a retry comes with a later one)."""
    if earlier.deadline_ns != request.deadline_ns:
        earlier = msgspec.structs.replace(earlier, deadline_ns=request.deadline_ns)
    return earlier == request


def _asked_for(replacement: Order, old: Order, change: ReplaceRequest) -> bool:
    """Whether ``replacement`` has what ``change`` asks for: a retry, not a new change."""
    # The replacement's quantity is the new total where the venue modifies in place,
    # what was left to fill where it issues a new order.
    qty_ok = change.qty is None or change.qty in (
        replacement.qty,
        replacement.qty + old.filled_qty,
    )
    return (
        qty_ok
        and change.limit_price in (None, replacement.limit_price)
        and change.stop_price in (None, replacement.stop_price)
        and change.time_in_force in (None, replacement.time_in_force)
    )


def _is_triggered(order: Order) -> bool:
    """Whether ``order`` is a leg sent once its parent fills (an OTO's child, a bracket's exit)."""
    return order.leg is not None and order.leg.parent_id is not None


def _same_order(existing: Order, request: OrderRequest, *, triggered: bool = False) -> bool:
    """Whether ``request`` asks for the order journaled as ``existing``: a retry of it.

    What is compared is what the client asked, which the journal keeps as the
    order's first terms; fills and states move on. The one term that moves is a
    triggered leg's quantity: it is released sized to what its parent filled, so
    its record holds the first piece. It was asked equal to its parent's (list
    validation), so the parent leg's quantity stands for it.
    """
    return (
        existing.symbol == request.symbol
        and existing.side == request.side
        and (triggered or existing.qty == request.qty)
        and existing.type == request.type
        and existing.limit_price == request.limit_price
        and existing.stop_price == request.stop_price
        and existing.time_in_force == request.time_in_force
        and existing.broker == request.broker
    )
