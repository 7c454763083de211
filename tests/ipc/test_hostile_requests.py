"""Hostile requests of the order-list and report kinds over the real socket, against a
paper service: each gets a named error on its own connection, which keeps serving, and
the service places nothing for them."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
import trio

from tests.ipc.rawconn import RawConnection
from tests.service_harness import one_broker_config, served
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.client import order_request
from ult_actors.errors import DuplicateOrder, InvalidOrder
from ult_actors.messages import (
    ErrorReply,
    OkReply,
    OrderListRequest,
    OrdersReply,
    Ping,
    Reply,
    SubmitList,
)
from ult_actors.service import Service, build_service


@pytest.fixture
def state() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ult-h", dir="/tmp"))  # short: the socket lives here
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _paper(state: Path) -> Service:
    settings = PaperSettings(
        tick_interval_s=0, state_path=":memory:", start_prices={"AAPL": Decimal("100")}
    )
    return build_service(one_broker_config(state, "paper", settings), env={}, rng=random.Random(1))


async def _answer_then_pong(path: Path, hostile: SubmitList | bytes) -> tuple[Reply, Reply]:
    """On one connection: the reply to ``hostile`` (a request with id 1, or a raw payload),
    then the reply to a ping sent after it (id 2)."""
    raw = await RawConnection.open(path)
    if isinstance(hostile, bytes):
        await raw.send_raw(hostile, framed=True)
    else:
        await raw.send(hostile)
    await raw.send(Ping(id=2))
    # Replies come as they are ready, not in the order asked.
    answer, pong = sorted([await raw.receive(), await raw.receive()], key=lambda r: r.id)
    await raw.aclose()
    return answer, pong


async def test_a_list_without_legs_is_refused_by_name_and_the_connection_serves_on(
    state: Path,
) -> None:
    async with served(_paper(state), state) as client:
        with trio.fail_after(30):
            empty = OrderListRequest(contingency="oco", legs=[])
            refused, pong = await _answer_then_pong(state / "s", SubmitList(id=1, orders=empty))
            with pytest.raises(InvalidOrder) as by_library:
                await client.submit_list(OrderListRequest(contingency="bracket", legs=[]))
            orders = await client.orders()
    assert isinstance(refused, ErrorReply)
    assert (refused.error.code, refused.error.field) == ("invalid_order", "legs")
    assert "got 0" in refused.error.message
    assert isinstance(pong, OkReply)
    assert by_library.value.field == "legs"
    assert orders == []


async def test_a_report_bound_beyond_what_the_journal_stores_is_a_bad_request(
    state: Path,
) -> None:
    async with served(_paper(state), state) as client:
        with trio.fail_after(30):
            # Beyond int64: built by hand, as a client in another language could send it.
            far = {"kind": "get_report", "id": 1, "query": {"since_ns": 2**64 - 1}}
            refused, pong = await _answer_then_pong(state / "s", msgspec.msgpack.encode(far))
            await client.submit("AAPL", "buy", 5, wait=True)
            everything = await trio.to_thread.run_sync(
                lambda: subprocess.run(
                    [sys.executable, "-m", "ult_actors.cli", "report", "--socket",
                     str(state / "s"), "--since", "0001-01-01", "--until", "9999-12-31", "--csv"],
                    capture_output=True, text=True, timeout=60,
                )
            )  # fmt: skip
            backwards = await trio.to_thread.run_sync(
                lambda: subprocess.run(
                    [sys.executable, "-m", "ult_actors.cli", "report", "--socket",
                     str(state / "s"), "--since", "2030-01-01", "--until", "2020-01-01"],
                    capture_output=True, text=True, timeout=60,
                )
            )  # fmt: skip
    assert isinstance(refused, ErrorReply)
    assert refused.error.code == "bad_request"
    assert "since_ns" in refused.error.message
    assert backwards.returncode == 0, backwards.stderr
    assert "since=2030-01-01T00:00:00+00:00, until=2020-01-01T00:00:00+00:00" in backwards.stdout
    assert "since is not before until" in backwards.stdout
    assert isinstance(pong, OkReply)
    assert everything.returncode == 0, everything.stderr
    assert everything.stdout.splitlines()[1].startswith("AAPL,1,5,")


async def test_a_frame_of_deeply_nested_maps_is_a_bad_request_and_the_connection_serves_on(
    state: Path,
) -> None:
    # A ping whose extra field holds maps nested 100,000 deep: msgspec gives up recursing.
    nested = b"\x83\xa4kind\xa4ping\xa2id\x07\xa1x" + b"\x81\xa1a" * 100_000 + b"\x01"
    async with served(_paper(state), state):
        with trio.fail_after(30):
            refused, pong = await _answer_then_pong(state / "s", nested)
    assert isinstance(refused, ErrorReply)
    assert refused.error.code == "bad_request"
    assert "nests too deeply" in refused.error.message
    assert isinstance(pong, OkReply)


async def test_a_named_list_asked_again_is_placed_once(state: Path) -> None:
    # A retry of a list the caller named (its idempotency key), legs without ids of their own.
    async with served(_paper(state), state) as client:
        with trio.fail_after(30):
            first = await client.bracket(
                "AAPL", "buy", 10, type="limit", limit_price="99",
                take_profit="110", stop_loss="90", list_id="dip-bracket",
            )  # fmt: skip
            again = await client.bracket(
                "AAPL", "buy", 10, type="limit", limit_price="99",
                take_profit="110", stop_loss="90", list_id="dip-bracket",
            )  # fmt: skip
            raw = await RawConnection.open(state / "s")
            parent = order_request("AAPL", "buy", 5, type="limit", limit_price="98")
            child = order_request("AAPL", "sell", 5, type="limit", limit_price="120")
            named = OrderListRequest(contingency="oto", legs=[parent, child], list_id="raw-oto")
            await raw.send(SubmitList(id=1, orders=named))
            raw_first = await raw.receive()
            await raw.send(SubmitList(id=2, orders=named))
            raw_again = await raw.receive()
            await raw.aclose()
            orders = await client.orders()
    assert [o.client_order_id for o in first] == [
        "dip-bracket-1", "dip-bracket-2", "dip-bracket-3"
    ]  # fmt: skip
    assert [o.id for o in again] == [o.id for o in first]
    assert isinstance(raw_first, OrdersReply) and isinstance(raw_again, OrdersReply)
    assert [o.id for o in raw_again.orders] == [o.id for o in raw_first.orders]
    assert len(orders) == 5


async def test_a_replace_key_used_again_with_other_terms_is_refused_not_answered_as_done(
    state: Path,
) -> None:
    async with served(_paper(state), state) as client:
        with trio.fail_after(30):
            await client.submit(
                "AAPL", "buy", 10, type="limit", limit_price="90", time_in_force="gtc",
                client_order_id="dip-1",
            )  # fmt: skip
            first = await client.replace("dip-1", qty=12, client_order_id="dip-2")
            retried = await client.replace("dip-1", qty=12, client_order_id="dip-2")
            with pytest.raises(DuplicateOrder) as other_terms:
                await client.replace("dip-1", qty=13, client_order_id="dip-2")
            with pytest.raises(DuplicateOrder):
                await client.replace("dip-1", limit_price="91", client_order_id="dip-2")
            orders = await client.orders()
    assert (retried.id, retried.qty) == (first.id, Decimal("12"))
    assert other_terms.value.field == "client_order_id"
    assert "already replaced order dip-1 with other terms" in other_terms.value.message
    assert sorted(o.client_order_id for o in orders) == ["dip-1", "dip-2"]


async def test_a_list_of_ten_thousand_legs_is_refused_naming_the_count_and_places_nothing(
    state: Path,
) -> None:
    # Legs with only the fields they need, so 10,000 of them fit in one frame (1 MiB).
    legs = [{"symbol": "AAPL", "side": "buy", "qty": "1"}] * 10_000
    flood = {"kind": "submit_list", "id": 1, "orders": {"contingency": "oto", "legs": legs}}
    async with served(_paper(state), state) as client:
        with trio.fail_after(30):
            refused, pong = await _answer_then_pong(state / "s", msgspec.msgpack.encode(flood))
            orders = await client.orders()
    assert isinstance(refused, ErrorReply)
    assert (refused.error.code, refused.error.field) == ("invalid_order", "legs")
    assert refused.error.message == "an oto has 2 legs (parent, child), got 10000"
    assert isinstance(pong, OkReply)
    assert orders == []
