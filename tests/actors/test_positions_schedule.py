"""The positions actor pulls every broker at start and then on each one's own schedule.

One task waits for whichever pull comes due first, and each pull runs in a task of its
own: a broker that is slow to answer, or gives no report, holds up no other broker's
pulls, and is itself pulled again sooner (``unreported_retry_s``).
"""

from __future__ import annotations

import functools
from typing import Any

import trio
import trio.testing

from ult_actors.actors.commands import BrokerCommand, QueryPositions
from ult_actors.actors.positions import PositionBook, PositionsDeps, positions_actor
from ult_actors.messages import Event, GetPositions
from ult_actors.runtime import ActorContext, EventBus, Mailbox


async def _answer(
    mailbox: Mailbox[BrokerCommand], pulls: list[float], *, silent: bool = False
) -> None:
    """Serve a broker's mailbox: note when each position query came; answer it (empty)
    unless ``silent`` (a broker that never answers)."""
    while True:
        env = await mailbox.receive()
        if isinstance(env.msg, QueryPositions):
            pulls.append(trio.current_time())
            if not silent and env.reply is not None:
                env.reply.set([])


async def _run_positions(deps: PositionsDeps, *, task_status: Any) -> None:
    ctx: ActorContext[GetPositions] = ActorContext(
        "positions",
        Mailbox(),
        incarnation=1,
        on_started=lambda: None,
        on_failed=lambda _error: None,
    )
    task_status.started()
    await positions_actor(deps)(ctx)


async def test_a_silent_broker_holds_up_no_other_brokers_pulls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    quick: Mailbox[BrokerCommand] = Mailbox()
    slow: Mailbox[BrokerCommand] = Mailbox()
    deps = PositionsDeps(
        brokers={"slow": slow, "quick": quick},
        bus=EventBus[Event](),
        book=PositionBook(),
        sync_interval_s=30.0,
        report_attempts=1,
        unreported_retry_s=5.0,
    )
    quick_pulls: list[float] = []
    slow_pulls: list[float] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_answer, quick, quick_pulls)
        nursery.start_soon(functools.partial(_answer, slow, slow_pulls, silent=True))
        await nursery.start(_run_positions, deps)
        await trio.sleep(100.0)
        nursery.cancel_scope.cancel()
    # Every 30 s from the start, whatever the other broker does.
    assert quick_pulls == [0.0, 30.0, 60.0, 90.0]
    # The silent one's query times out after 10 s; its next pull comes 5 s later (no
    # report), before the other's, which the one waiting task was waiting for.
    assert slow_pulls == [0.0, 15.0, 30.0, 45.0, 60.0, 75.0, 90.0]
    assert "slow" in deps.book.unreported


async def test_a_pull_due_sooner_than_the_one_waited_for_is_not_held_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    quick: Mailbox[BrokerCommand] = Mailbox()
    late: Mailbox[BrokerCommand] = Mailbox()
    deps = PositionsDeps(
        brokers={"quick": quick, "late": late},
        bus=EventBus[Event](),
        book=PositionBook(),
        sync_interval_s=10.0,
        retry_delay_s=1.0,
        unreported_retry_s=5.0,
    )
    quick_pulls: list[float] = []
    late_pulls: list[float] = []

    async def answer_late() -> None:
        # The first report comes after 3 s: that broker's next pull is due at 13 s, the
        # other's at 10 s; then it answers at once.
        env = await late.receive()
        late_pulls.append(trio.current_time())
        await trio.sleep(3.0)
        assert env.reply is not None
        env.reply.set([])
        await _answer(late, late_pulls)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_answer, quick, quick_pulls)
        nursery.start_soon(answer_late)
        await nursery.start(_run_positions, deps)
        await trio.sleep(25.0)
        nursery.cancel_scope.cancel()
    assert quick_pulls == [0.0, 10.0, 20.0]
    assert late_pulls == [0.0, 13.0, 23.0]

