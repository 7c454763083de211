"""A new order's broker step run by the order's own task (the gateway's), for the paper venue.

Once the router's step (run by the asker) hands the order on, the asker runs
the broker actor's step for it too, while an order worker is idle and nothing
waits in the broker's mailbox. The broker actor's rules still hold: a bug
there crashes the broker actor (restarted; the order placed once), a
reconnect cancels the step and redelivers the order, the asker's deadline
bounds its wait, and a cancel queued first is not overtaken.

A step that cannot wait needs no cancel scope to keep those rules: with the
default journal (its record appended at once) the step is begun by a plain
call and the venue's answer taken by one (``answer_now``); a step whose record
or send has to wait (a ``full`` journal's fsync, a venue that parks, a failed
send retried) runs, or goes on, in its scope, where the rules above are tested.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests.actors.harness import NOW_NS, PatchablePaper, journaled, paper_service, submit
from tests.full_disk import FullLogDisk
from ult_actors.actors.commands import CancelOrder
from ult_actors.brokers.base import SubmitAnswer
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.config import JournalSection
from ult_actors.errors import BrokerUnavailable, Internal, Timeout
from ult_actors.journal.fsync_route import FsyncRoute
from ult_actors.journal.sqlite import SqliteStore
from ult_actors.messages import Order, OrderRequest
from ult_actors.runtime.mailbox import ReplySlot

Submit = Callable[[PaperConnector, OrderRequest], Awaitable[SubmitAnswer]]
#: A journal whose records wait for their fsync (``_waits_for_its_fsync``): a step with one
#: cannot be begun plainly.
FULL = JournalSection(synchronous="full")


async def _waits_for_its_fsync(svc: Any) -> None:
    """``FULL`` as on a machine without io_uring: no record's fdatasync is begun ahead, so
    a record waits for its fsync (with io_uring a lone submit's step is begun plainly)."""
    store = await svc.journal.get()
    assert isinstance(store, SqliteStore)
    if store.fsync_ahead is not None:
        store.fsync_ahead.close()
        store.fsync_ahead = None


def _broker(svc: Any) -> Any:
    return svc.root.child("brokers").spec.supervisor.child("broker.paper")


async def _restarted(svc: Any) -> None:
    with trio.fail_after(10):
        while _broker(svc).health.restarts < 1 or _broker(svc).health.state != "running":
            await trio.sleep(0.01)


async def _held_qty(connector: PaperConnector) -> Decimal:
    return sum((p.qty for p in await connector.positions() if p.symbol == "AAPL"), Decimal(0))


Then = Callable[[int, Submit, PaperConnector, OrderRequest], Awaitable[SubmitAnswer]]


async def _plain(_n: int, real: Submit, connector: PaperConnector, r: OrderRequest) -> SubmitAnswer:
    return await real(connector, r)


Sends = list[tuple[trio.lowlevel.Task, str]]


def _watch_submits(monkeypatch: pytest.MonkeyPatch, then: Then = _plain) -> Sends:
    """Each paper submit the broker awaits (``submit_answer``): its task and client order
    id, in order; ``then(n, real, ...)`` runs the n-th (0-based)."""
    real: Submit = PaperConnector.submit_answer
    tasks: Sends = []

    async def watched(self: PaperConnector, request: OrderRequest) -> SubmitAnswer:
        assert request.client_order_id is not None
        tasks.append((trio.lowlevel.current_task(), request.client_order_id))
        return await then(len(tasks) - 1, real, self, request)

    monkeypatch.setattr(PatchablePaper, "submit_answer", watched)
    return tasks


Now = Callable[[PaperConnector, OrderRequest, bool], SubmitAnswer]


def _watch_plain_submits(
    monkeypatch: pytest.MonkeyPatch, then: Callable[[int, Now], Now] = lambda _n, real: real
) -> Sends:
    """Each paper submit the broker calls plainly (``answer_now``: a step begun without a
    scope), as ``_watch_submits``; ``then(n, real)`` is what the n-th calls."""
    answer_now = PaperConnector.answer_now

    def real(connector: PaperConnector, r: OrderRequest, validated: bool) -> SubmitAnswer:
        return answer_now(connector, r, validated=validated)

    tasks: Sends = []

    def watched(self: PaperConnector, request: OrderRequest, *, validated: bool) -> SubmitAnswer:
        assert request.client_order_id is not None
        tasks.append((trio.lowlevel.current_task(), request.client_order_id))
        return then(len(tasks) - 1, real)(self, request, validated)

    monkeypatch.setattr(PatchablePaper, "answer_now", watched)
    return tasks


async def test_a_new_order_s_broker_step_runs_in_its_own_task_by_a_plain_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with paper_service(tmp_path) as (svc, _made):
        await submit(svc, qty=1)  # the router and the broker are idle from now on
        awaited, plain = _watch_submits(monkeypatch), _watch_plain_submits(monkeypatch)
        order = await submit(svc, qty=2)
        assert order.status == "filled"
        assert plain == [(trio.lowlevel.current_task(), order.client_order_id)]
        assert awaited == []
        assert (await journaled(svc, order.client_order_id, "filled")).filled_qty == 2


async def test_a_window_of_orders_made_in_one_round_each_runs_its_step_by_a_plain_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with paper_service(tmp_path) as (svc, _made):
        await submit(svc, qty=1)
        awaited, plain = _watch_submits(monkeypatch), _watch_plain_submits(monkeypatch)
        placed: dict[trio.lowlevel.Task, Order] = {}

        async def one() -> None:
            placed[trio.lowlevel.current_task()] = await submit(svc, qty=1)

        async with trio.open_nursery() as nursery:
            for _ in range(16):  # all started, so all submit in one scheduler round
                nursery.start_soon(one)
        # Each journaled at once (one append each, none waiting for the writer) and sent
        # plainly by its own task: no step parked, none went to the broker's workers.
        assert len(plain) == len(placed) == 16
        assert dict(plain) == {task: order.client_order_id for task, order in placed.items()}
        assert awaited == []
        assert {order.status for order in placed.values()} == {"filled"}


async def test_a_step_whose_record_waits_for_its_fsync_runs_in_its_scope(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with paper_service(tmp_path, journal=FULL) as (svc, _made):
        await _waits_for_its_fsync(svc)
        await submit(svc, qty=1)
        awaited, plain = _watch_submits(monkeypatch), _watch_plain_submits(monkeypatch)
        order = await submit(svc, qty=2)
        assert order.status == "filled"
        assert awaited == [(trio.lowlevel.current_task(), order.client_order_id)]
        assert plain == []


@asynccontextmanager
async def _full_with_its_ring(tmp_path: Path) -> AsyncIterator[tuple[Any, SqliteStore]]:
    """The paper service on ``FULL`` where io_uring is offered (skipped where it is not),
    one order placed; the service and its journal's store."""
    async with paper_service(tmp_path, journal=FULL) as (svc, _made):
        store = await svc.journal.get()
        assert isinstance(store, SqliteStore)
        if store.fsync_ahead is None:
            pytest.skip("no io_uring here: every full record waits for its fsync")
        await submit(svc, qty=1)
        yield svc, store


async def test_with_full_and_its_fsync_begun_ahead_a_step_is_begun_plainly_and_acked_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _full_with_its_ring(tmp_path) as (svc, store):
        awaited, plain = _watch_submits(monkeypatch), _watch_plain_submits(monkeypatch)
        store.fsync_route = FsyncRoute(use_loop=False)  # never on the trio thread
        began = store.fsync_ahead
        starts: list[int] = []
        monkeypatch.setattr(store, "fsync_ahead", _CountedStarts(began, starts))
        await trio.testing.wait_all_tasks_blocked()  # the journal's writer idle again
        order = await submit(svc, qty=2)
        assert order.status == "filled"
        assert [coid for _, coid in plain] == [order.client_order_id] and awaited == []
        # Its record's fdatasync was begun ahead, and the ack came once it had ended.
        assert len(starts) == 1 and not store.acks_wait()


class _NotedRoute(FsyncRoute):
    """A route that writes on the trio thread while its thread runs again at once (no
    wait by its figures), or never once ``waits_ns`` is raised; notes each write it times."""

    def __init__(self, noted: list[str]) -> None:
        self.waits_ns = 0
        self.waited = 0
        super().__init__(run_delay_ns=self._waited)
        self.noted = noted

    def _waited(self) -> int:
        self.waited += self.waits_ns
        return self.waited

    def write_here(self, write: Callable[[], None]) -> None:
        self.noted.append("fsync")
        super().write_here(write)


async def test_with_full_on_an_idle_loop_a_lone_order_is_fsynced_on_its_thread_before_it_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _full_with_its_ring(tmp_path) as (svc, store):
        noted: list[str] = []
        store.fsync_route = route = _NotedRoute(noted)

        def sent(n: int, real: Now) -> Now:
            noted.append("sent")
            return real

        awaited, plain = _watch_submits(monkeypatch), _watch_plain_submits(monkeypatch, sent)
        starts: list[int] = []
        monkeypatch.setattr(store, "fsync_ahead", _CountedStarts(store.fsync_ahead, starts))
        # A lone order on an idle loop. The loop is not idle while a helper thread's word
        # waits for it (the paper file's writer, the fold's: its order goes by the ring
        # then), which the test cannot rule out: up to five orders, one after another.
        orders: list[str] = []
        while "fsync" not in noted and len(orders) < 5:
            await store.in_file()
            await trio.testing.wait_all_tasks_blocked()  # the journal's writer idle again
            order = await submit(svc, qty=2 + len(orders))
            assert order.status == "filled"
            orders.append(order.client_order_id or "")
        # Its record was fdatasynced on the trio thread before the order left (every other
        # went ahead by the ring): each step begun and ended plainly, no ack waiting.
        assert noted.count("fsync") == route.loop_writes == 1
        assert noted[-2:] == ["fsync", "sent"] and noted.count("sent") == len(orders)
        assert len(starts) == len(orders) - 1 and not store.acks_wait()
        assert [coid for _, coid in plain] == orders and awaited == []
        # Once this thread waited for a core after its last writes, a lone order goes ahead
        # by the ring, idle loop or not.
        route.waits_ns = 1_000_000
        for _ in range(8):  # the route's whole window, not noted as the order's
            FsyncRoute.write_here(route, lambda: None)
        await trio.testing.wait_all_tasks_blocked()
        await submit(svc, qty=9)
        assert noted.count("fsync") == 1 and noted[-1] == "sent"
        assert len(starts) == len(orders) and not store.acks_wait()


class _CountedStarts:
    """An ``FsyncAhead`` that notes each fdatasync it begins."""

    def __init__(self, ahead: Any, starts: list[int]) -> None:
        self.ahead, self.starts = ahead, starts

    def start(self, fd: int) -> None:
        self.starts.append(fd)
        self.ahead.start(fd)

    async def done(self) -> None:
        await self.ahead.done()

    def ended(self) -> bool:
        return bool(self.ahead.ended())

    def spin(self, limit_ns: int) -> bool:
        return bool(self.ahead.spin(limit_ns))

    def close(self) -> None:
        self.ahead.close()


class _RoomAfterOneRefusal(FullLogDisk):
    """A full disk that refuses one write to the journal's log, then has room again."""

    refused = 0

    def write(self, fd: int, data: Any) -> int:
        try:
            return super().write(fd, data)
        except OSError:
            self.refused += 1
            self.full = False
            raise


async def test_a_plain_step_s_order_is_one_row_in_the_journal_file_its_answered_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with paper_service(tmp_path) as (svc, _):
        await submit(svc, qty=1)
        plain = _watch_plain_submits(monkeypatch)
        order = await submit(svc, qty=2)
        assert [coid for _, coid in plain] == [order.client_order_id]
        store = await svc.journal.get()
        assert isinstance(store, SqliteStore)
        await store.in_file()
        # Journaled before it left (the log), then written to the file once, answered.
        history = [(e.event, e.order.status) for e in await store.history(order.client_order_id)]
        assert history == [("submit", "filled")]
        assert (await store.get(order.client_order_id)) == order


async def test_a_step_whose_record_fails_here_goes_on_once_the_writer_wrote_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = _RoomAfterOneRefusal(monkeypatch, "journal.db.log.")
    async with paper_service(tmp_path) as (svc, made):
        await submit(svc, qty=1)
        store = await svc.journal.get()
        assert isinstance(store, SqliteStore) and store._log is not None
        # The next append opens a new segment, which the full disk cannot make whole: the
        # step's own append, on the trio thread, fails; the writer's finds room again.
        # (Through the disk, not a patched method: the compiled build's log has none.)
        store._log.segment_bytes = 1
        disk.full = True
        awaited, plain = _watch_submits(monkeypatch), _watch_plain_submits(monkeypatch)
        order = await submit(svc, qty=5)
        # Sent only once its record was written (by the journal's writer), in its scope.
        assert order.status == "filled"
        assert disk.refused == 1
        assert awaited == [(trio.lowlevel.current_task(), order.client_order_id)]
        assert plain == []
        assert await _held_qty(made["paper"][-1]) == 6
        assert (await journaled(svc, order.client_order_id, "filled")).filled_qty == 5


async def test_a_plain_send_that_fails_is_retried_in_the_step_s_scope(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with paper_service(tmp_path) as (svc, made):
        await submit(svc, qty=1)

        def dropped_first(n: int, real: Now) -> Now:
            def dropped(c: PaperConnector, r: OrderRequest, validated: bool) -> SubmitAnswer:
                raise BrokerUnavailable("injected: connection dropped before the order")

            return dropped if n == 0 else real

        awaited = _watch_submits(monkeypatch)
        plain = _watch_plain_submits(monkeypatch, dropped_first)
        order = await submit(svc, qty=5)
        # Looked up (not there), sent again by the awaited submit: placed once.
        me = trio.lowlevel.current_task()
        assert order.status == "filled"
        assert plain == [(me, order.client_order_id)]
        assert awaited == [(me, order.client_order_id)]
        assert await _held_qty(made["paper"][-1]) == 6
        assert _broker(svc).health.restarts == 0


def _buggy_plain(monkeypatch: pytest.MonkeyPatch) -> Sends:
    def buggy_after_placing(n: int, real: Now) -> Now:
        def buggy(c: PaperConnector, r: OrderRequest, validated: bool) -> SubmitAnswer:
            answer = real(c, r, validated)
            if n == 0:
                raise ZeroDivisionError("a bug")
            return answer

        return buggy

    return _watch_plain_submits(monkeypatch, buggy_after_placing)


def _buggy_awaited(monkeypatch: pytest.MonkeyPatch) -> Sends:
    async def buggy_after_placing(
        n: int, real: Submit, c: PaperConnector, r: OrderRequest
    ) -> SubmitAnswer:
        answer = await real(c, r)
        if n == 0:
            raise ZeroDivisionError("a bug")
        return answer

    return _watch_submits(monkeypatch, buggy_after_placing)


@pytest.mark.parametrize(
    ("journal", "buggy"),
    [(None, _buggy_plain), (FULL, _buggy_awaited)],
    ids=["begun-plainly", "in-its-scope"],
)
async def test_a_bug_in_the_step_crashes_the_broker_actor_and_the_order_is_placed_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    journal: JournalSection | None,
    buggy: Callable[[pytest.MonkeyPatch], Sends],
) -> None:
    async with paper_service(tmp_path, journal=journal) as (svc, made):
        if journal is FULL:
            await _waits_for_its_fsync(svc)
        await submit(svc, qty=1)
        tasks = buggy(monkeypatch)
        with pytest.raises(Internal) as info:
            await submit(svc, qty=7)
        [(task, coid)] = tasks
        assert task is trio.lowlevel.current_task()  # run in the asker's task
        assert "crashed actor broker.paper (ZeroDivisionError)" in info.value.message
        await _restarted(svc)
        # The next incarnation settled the order from the venue: placed once, filled.
        assert (await journaled(svc, coid, "filled")).filled_qty == 7
        assert len(tasks) == 1
        assert await _held_qty(made["paper"][-1]) == 8
        assert (await submit(svc, qty=1)).status == "filled"
        assert await _held_qty(made["paper"][-1]) == 9
        for other in ("journal", "positions", "risk", "router"):
            assert svc.root.child(other).health.restarts == 0, other


async def test_a_reconnect_during_the_step_cancels_it_and_the_order_is_redelivered_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with paper_service(tmp_path, journal=FULL) as (svc, made):
        await _waits_for_its_fsync(svc)
        await submit(svc, qty=1)

        async def dropped_while_sending(
            n: int, real: Submit, connector: PaperConnector, r: OrderRequest
        ) -> SubmitAnswer:
            if n == 0:
                connector._fail(RuntimeError("connection dropped"))  # the stream ends
                await trio.sleep_forever()  # cancelled by the incarnation's end
            return await real(connector, r)

        tasks = _watch_submits(monkeypatch, dropped_while_sending)
        order = await submit(svc, qty=5)
        # The asker kept waiting; the next incarnation's worker placed the order once.
        assert order.status == "filled"
        assert [coid for _task, coid in tasks] == [order.client_order_id] * 2
        assert tasks[0][0] is trio.lowlevel.current_task()
        assert tasks[1][0] is not trio.lowlevel.current_task()
        assert _broker(svc).health.restarts == 1
        assert await _held_qty(made["paper"][-1]) == 6
        assert (await journaled(svc, order.client_order_id, "filled")).filled_qty == 5


async def test_the_asker_s_deadline_bounds_its_wait_for_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with paper_service(tmp_path, journal=FULL) as (svc, made):
        await _waits_for_its_fsync(svc)
        await submit(svc, qty=1)

        async def stuck(
            n: int, real: Submit, connector: PaperConnector, r: OrderRequest
        ) -> SubmitAnswer:
            if n == 0:
                await trio.sleep(60)  # a venue that does not answer in time
            return await real(connector, r)

        tasks = _watch_submits(monkeypatch, stuck)
        with trio.fail_after(10), pytest.raises(Timeout):
            await submit(svc, qty=5, deadline_ns=NOW_NS + 200_000_000)
        assert [task for task, _coid in tasks] == [trio.lowlevel.current_task()]
        # The broker actor goes on: its worker slot is free again, nothing restarted.
        assert (await submit(svc, qty=2)).status == "filled"
        assert _broker(svc).health.restarts == 0
        assert await _held_qty(made["paper"][-1]) == 3


async def test_the_asker_s_cancellation_does_not_cut_its_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with paper_service(tmp_path, journal=FULL) as (svc, made):
        await _waits_for_its_fsync(svc)
        await submit(svc, qty=1)
        parked, answer = trio.Event(), trio.Event()

        async def answered_after_the_asker_left(
            n: int, real: Submit, connector: PaperConnector, r: OrderRequest
        ) -> SubmitAnswer:
            if n == 0:
                parked.set()
                await answer.wait()  # the step parks here, journaled and not sent yet
            return await real(connector, r)

        tasks = _watch_submits(monkeypatch, answered_after_the_asker_left)
        asker = trio.CancelScope()
        asker_task: list[trio.lowlevel.Task] = []

        async def ask() -> None:
            asker_task.append(trio.lowlevel.current_task())
            with asker:
                await submit(svc, qty=5)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            await parked.wait()
            asker.cancel()  # the client went away while its order's step waits
            answer.set()
        # The asker stopped waiting; its step went on in its task: the order placed once.
        assert asker.cancelled_caught
        [(task, coid)] = tasks
        assert asker_task == [task]  # run by the asker's own task
        assert (await journaled(svc, coid, "filled")).filled_qty == 5
        assert await _held_qty(made["paper"][-1]) == 6
        assert _broker(svc).health.restarts == 0
        assert (await submit(svc, qty=1)).status == "filled"


async def test_a_queued_cancel_is_not_overtaken_by_a_new_order_s_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with paper_service(tmp_path) as (svc, made):
        resting = await submit(svc, qty=1, limit_price=90)  # below the market: it rests
        assert resting.status == "accepted"
        mailbox = svc.brokers["paper"]
        tasks = _watch_submits(monkeypatch)
        # The cancel waits in the broker's mailbox (its task not run yet) as the order comes.
        slot = ReplySlot()
        mailbox.send_nowait(CancelOrder(order_id=resting.id), reply=slot)
        assert (await submit(svc, qty=2)).status == "filled"
        with trio.fail_after(10):
            canceled = await slot.wait()
        assert canceled.status == "canceled"
        # Sent, not run by the asker: the broker's tasks take the cancel and the order as
        # they would without the door (the cancel's lane is read first).
        assert tasks[0][0] is not trio.lowlevel.current_task()
        assert await _held_qty(made["paper"][-1]) == 2
