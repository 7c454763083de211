"""The router: validates a submit, resolves its broker, refuses duplicates, forwards it.

Resolution order: the request's explicit ``broker``, else the first routing
rule whose pattern matches the symbol, else the default broker. The reply
slot travels on with the order (``router -> risk -> broker``), so the broker
answers the client directly.
"""

from __future__ import annotations

import fnmatch
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from ult_actors.actors.commands import BrokerCommand, CancelOrder, PlaceOrder
from ult_actors.actors.journal import JournalSlot
from ult_actors.actors.lookup import find_order, known_broker
from ult_actors.errors import AlreadyFinal, DuplicateOrder, NotFound, UltError
from ult_actors.messages import (
    Cancel,
    Order,
    OrderRequest,
    Submit,
)
from ult_actors.runtime import ActorContext, Envelope, Mailbox, serve_mailbox
from ult_actors.validation import validate_order

RouterCommand = Submit | Cancel

#: How many recently submitted client order ids the router remembers in memory.
_RECENT = 100_000


@dataclass
class RouterDeps:
    """What the router is built from."""

    brokers: dict[str, Mailbox[BrokerCommand]]
    risk: Mailbox[Any]
    journal: JournalSlot
    default_broker: str
    rules: list[tuple[str, str]]  # (pattern, broker)
    submit_timeout_s: float = 30.0


def resolve_broker(request: OrderRequest, deps: RouterDeps) -> str:
    """The broker connection this order goes to, or ``NotFound`` naming the choices."""
    name = request.broker
    if name is None:
        name = next(
            (b for pattern, b in deps.rules if fnmatch.fnmatchcase(request.symbol, pattern)),
            deps.default_broker,
        )
    return known_broker(name, deps.brokers)


def router_actor(deps: RouterDeps) -> Callable[[ActorContext[RouterCommand]], Any]:
    """The router's actor body."""

    async def start(ctx: ActorContext[RouterCommand]) -> None:
        recent: OrderedDict[str, OrderRequest] = OrderedDict()

        async def submit(env: Envelope[RouterCommand], msg: Submit) -> None:
            request = msg.order
            validate_order(request)
            broker = resolve_broker(request, deps)
            coid = request.client_order_id
            assert coid is not None, "the gateway assigns client order ids"
            request = msgspec.structs.replace(request, broker=broker)
            # A deadline is when one attempt's client stops waiting, not part of the
            # order: a retry of the same order comes with a later one.
            order_only = msgspec.structs.replace(request, deadline_ns=None)
            earlier = recent.get(coid)
            if earlier is None:
                store = await deps.journal.get()
                existing = await store.get(coid)
                if existing is not None:
                    if not _same_order(existing, request):
                        raise DuplicateOrder(
                            f"client_order_id {coid} is already used by a different order",
                            field="client_order_id",
                        )
                    ctx.reply(env, existing)  # idempotent: the same order, not a second one
                    return
            elif earlier != order_only:
                raise DuplicateOrder(
                    f"client_order_id {coid} is already used by a different order",
                    field="client_order_id",
                )
            deps.journal.check_writable()  # refused here, before risk or the broker sees it
            recent[coid] = order_only
            if len(recent) > _RECENT:
                recent.popitem(last=False)
            # Hand the asker's reply slot on: the broker answers the client directly.
            assert env.reply is not None
            await ctx.forward(env, deps.risk, PlaceOrder(request=request))

        async def cancel(env: Envelope[RouterCommand], msg: Cancel) -> None:
            order = await find_order(await deps.journal.get(), msg.order_id)
            if order.status == "lost":
                # Final like any other state (the broker no longer has it), with the reason.
                raise AlreadyFinal(
                    f"order {order.ref} (client order id {order.client_order_id}) is lost"
                    f" ({order.reject_reason or 'its broker no longer has it'});"
                    " there is nothing to cancel",
                    broker=order.broker,
                )
            broker = deps.brokers.get(order.broker)
            if broker is None:
                raise NotFound(f"order {msg.order_id} belongs to unknown broker {order.broker!r}")
            assert env.reply is not None
            await ctx.forward(env, broker, CancelOrder(order_id=order.id or order.client_order_id))

        async def handle(env: Envelope[RouterCommand]) -> None:
            msg = env.msg
            try:
                if isinstance(msg, Submit):
                    await submit(env, msg)
                else:
                    await cancel(env, msg)
            except UltError as exc:
                ctx.fail(env, exc)

        await serve_mailbox(ctx, handle)

    return start


def _same_order(existing: Order, request: OrderRequest) -> bool:
    return (
        existing.symbol == request.symbol
        and existing.side == request.side
        and existing.qty == request.qty
        and existing.type == request.type
        and existing.broker == request.broker
    )
