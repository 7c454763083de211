"""IB rules without a socket: message pacing and what TWS error codes become."""

from __future__ import annotations

import pytest
import structlog
import trio
import trio.testing

from ult_actors.brokers.ib import wire
from ult_actors.brokers.ib.errors import is_notice, order_rejection
from ult_actors.brokers.ib.pacing import MessagePacer
from ult_actors.brokers.ib.protocol import MAX_SERVER_VERSION, FrameStream
from ult_actors.brokers.ib.session import IbSession
from ult_actors.brokers.ib.settings import IbSettings
from ult_actors.errors import (
    BrokerUnavailable,
    InsufficientFunds,
    InvalidOrder,
    NotFound,
    RateLimited,
)


def test_pacer_lets_a_burst_through_then_spaces_messages() -> None:
    pacer = MessagePacer(rate=50, burst=10)
    delays = [pacer.reserve(0.0) for _ in range(15)]
    assert delays[:10] == [0.0] * 10
    assert delays[10:] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    assert pacer.reserve(10.0) == 0.0  # idle time refills the burst


@pytest.mark.parametrize("limit", [45.0, 50.0, 10.0, 2.0])
def test_a_pacer_within_a_limit_never_sends_more_in_any_second(limit: float) -> None:
    pacer = MessagePacer.within(limit)
    sent = [pacer.reserve(0.0) for _ in range(300)]
    # Worst window: one starting at the burst.
    assert sum(1 for t in sent if t < 1.0) <= limit
    assert max(sum(1 for t in sent if s <= t < s + 1.0) for s in sent) <= limit


async def test_pacer_holds_a_flood_to_the_rate_on_trios_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pacer = MessagePacer(rate=45, burst=10)
    start = trio.current_time()
    for _ in range(100):
        await pacer.wait()
    assert trio.current_time() - start == pytest.approx(90 / 45)


async def test_a_paced_flood_held_up_a_moment_still_never_sends_over_the_limit_in_a_second(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Senders sleep until their slots; a loop held up for 0.3 s (the clock jumps past
    # every slot in it) wakes them all at once. TWS counts arrivals: what leaves in any
    # one second must stay within the limit even then.
    pacer = MessagePacer.within(45)
    left: list[float] = []

    async def send() -> None:
        await pacer.wait()
        left.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        for _ in range(200):
            nursery.start_soon(send)
        await trio.sleep(1.5)  # the flood is being paced
        autojump_clock.jump(0.3)  # held up: the slots of those 0.3 s all pass at once
    assert len(left) == 200
    assert max(sum(1 for t in left if s <= t < s + 1.0) for s in left) <= 45


async def test_messages_held_up_at_the_socket_do_not_leave_in_a_burst_after_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The peer takes nothing for half a second (busy, or a full socket buffer). Paced
    # messages let go meanwhile must not queue at the socket and then leave all at
    # once: TWS counts what arrives in any one second.
    sending, receiving = trio.testing.lockstep_stream_pair()  # a send waits for its read
    session = IbSession(
        "ib", IbSettings(max_messages_per_second=45), lambda _: [], log=structlog.get_logger()
    )
    session._stream = FrameStream(sending)  # as ``open`` leaves it, without TWS's handshake
    session.server_version = MAX_SERVER_VERSION
    arrived: list[float] = []

    async def tws() -> None:
        frames = FrameStream(receiving)
        await trio.sleep(0.5)
        while len(arrived) < 150:
            await frames.receive_fields()
            arrived.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tws)
        for _ in range(150):
            nursery.start_soon(session.send, wire.ReqCurrentTime())
    # 45 let go in any one second, and the one that waited at the socket meanwhile.
    assert max(sum(1 for t in arrived if s <= t < s + 1.0) for s in arrived) <= 46


@pytest.mark.parametrize(
    ("code", "text", "kind"),
    [
        (201, "Order rejected - reason:No trading permissions", InvalidOrder),
        (
            201,
            "Order rejected - reason:YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE DESIRED"
            " POSITION YOUR EQUITY WITH LOAN VALUE [1.00 USD] MUST EXCEED THE INITIAL MARGIN",
            InsufficientFunds,
        ),
        (103, "Duplicate order id", BrokerUnavailable),
        (105, "Order being modified does not match original order", BrokerUnavailable),
        (100, "Max rate of messages per second has been exceeded", RateLimited),
        (10147, "OrderId 7 that needs to be cancelled is not found.", NotFound),
        (200, "No security definition has been found for the request", InvalidOrder),
    ],
)
def test_order_errors_map_to_the_narrowest_class_with_tws_text(
    code: int, text: str, kind: type[Exception]
) -> None:
    error = order_rejection(code, text, "ib")
    assert type(error) is kind
    assert error.message == f"TWS error {code}: {text}" and error.broker == "ib"
    if isinstance(error, RateLimited):
        assert error.retry_after == 1.0


def test_farm_messages_are_notices_and_connectivity_codes_are_not() -> None:
    assert all(is_notice(c) for c in (2104, 2106, 2158, 2103, 2105, 2157, 2119))
    assert not any(is_notice(c) for c in (1100, 1101, 1102, 326, 201, 202))
