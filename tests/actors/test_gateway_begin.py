"""A submit answered by plain calls from the gateway to the broker's step (``begin``),
and what is left to await when something on its way waits.

The gateway's ``begin`` is the socket's way in: a new order to an idle router,
whose broker's step waits for nothing (the paper venue, the default journal), is
answered before ``begin`` returns; an order the router must look up, or whose
step waits for its fsync, comes back as the rest to await, with the same answer
``handle`` gives.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable
from pathlib import Path

import msgspec
import trio
import trio.testing

from tests.actors.harness import journaled, paper_service, req, submit
from ult_actors.config import JournalSection
from ult_actors.errors import DuplicateOrder, Timeout
from ult_actors.journal.fsync_route import FsyncRoute
from ult_actors.journal.sqlite import SqliteStore
from ult_actors.messages import OrderReply, Reply, Submit

_ids = itertools.count(1000)


def _submit(**fields: object) -> Submit:
    return Submit(id=next(_ids), order=req(**fields))


async def _awaited(answer: Reply | Awaitable[Reply]) -> Reply:
    """``begin``'s answer, awaited if it is the rest (bounded)."""
    if isinstance(answer, msgspec.Struct):
        return answer
    with trio.fail_after(10):
        return await answer


async def test_a_new_order_to_an_idle_service_is_answered_by_plain_calls(tmp_path: Path) -> None:
    async with paper_service(tmp_path) as (svc, _made):
        await submit(svc, qty=1)  # the router and the broker are idle from now on
        await trio.testing.wait_all_tasks_blocked()
        request = _submit(qty=2)
        answer = svc.gateway.begin(request)
        # The reply itself, not a coroutine: nothing on its way waited.
        assert isinstance(answer, OrderReply)
        assert answer.id == request.id and answer.order.status == "filled"
        coid = request.order.client_order_id
        assert coid is not None
        assert (await journaled(svc, coid, "filled")).filled_qty == 2


async def test_a_window_begun_in_one_step_is_answered_once_each(tmp_path: Path) -> None:
    async with paper_service(tmp_path) as (svc, _made):
        await submit(svc, qty=1)
        await trio.testing.wait_all_tasks_blocked()
        requests = [_submit(qty=1) for _ in range(32)]
        answers = [svc.gateway.begin(r) for r in requests]  # no checkpoint between them
        replies = [await _awaited(a) for a in answers]
        assert all(isinstance(r, OrderReply) for r in replies)
        assert [r.id for r in replies if isinstance(r, OrderReply)] == [r.id for r in requests]
        orders = [r.order for r in replies if isinstance(r, OrderReply)]
        assert [o.client_order_id for o in orders] == [r.order.client_order_id for r in requests]
        assert {o.status for o in orders} == {"filled"}


async def test_an_order_asked_again_is_looked_up_and_answered_as_the_same_order(
    tmp_path: Path,
) -> None:
    async with paper_service(tmp_path) as (svc, _made):
        first = await submit(svc, qty=3)
        await journaled(svc, first.client_order_id, "filled")
        await trio.testing.wait_all_tasks_blocked()
        again = Submit(id=next(_ids), order=req(qty=3, client_order_id=first.client_order_id))
        reply = await _awaited(svc.gateway.begin(again))
        assert isinstance(reply, OrderReply)
        assert reply.order.client_order_id == first.client_order_id
        assert reply.order.filled_qty == 3  # the order placed once, not a second fill
        other = Submit(id=next(_ids), order=req(qty=4, client_order_id=first.client_order_id))
        try:
            await _awaited(svc.gateway.begin(other))
        except DuplicateOrder:
            pass
        else:
            raise AssertionError("a different order under a used id was accepted")


async def test_a_step_that_waits_for_its_fsync_is_the_rest_to_await(tmp_path: Path) -> None:
    async with paper_service(tmp_path, journal=JournalSection(synchronous="full")) as (svc, _):
        store = await svc.journal.get()
        assert isinstance(store, SqliteStore)
        # Its fdatasync neither made on the trio thread nor watched for in the step (it
        # would be acked there once it ended).
        store.fsync_route = FsyncRoute(use_loop=False)
        store.idle_spin = None
        await submit(svc, qty=1)
        await trio.testing.wait_all_tasks_blocked()
        answer = svc.gateway.begin(_submit(qty=2))
        assert not isinstance(answer, OrderReply)  # begun; its record waits for the fsync
        reply = await _awaited(answer)
        assert isinstance(reply, OrderReply) and reply.order.status == "filled"


async def test_a_deadline_already_past_is_refused_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    async with paper_service(tmp_path, now_ns=lambda: 2_000_000_000) as (svc, _made):
        await submit(svc, qty=1)
        late = _submit(qty=2, deadline_ns=1_000_000_000)
        try:
            svc.gateway.begin(late)
        except Timeout as exc:
            assert "it was not sent to any broker" in str(exc)
        else:
            raise AssertionError("a request past its deadline was begun")
        coid = late.order.client_order_id
        assert coid is not None
        assert await (await svc.journal.get()).get(coid) is None
