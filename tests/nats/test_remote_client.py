"""``ult serve`` with ``[nats] url``: both clients over NATS work as over the socket."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import trio

from ult_actors.client import (
    AsyncClient,
    Client,
    InvalidOrder,
    NotFound,
    OutcomeUnknown,
    ServiceUnreachable,
    order_request,
)
from ult_actors.messages import OrderUpdate
from ult_actors.testing.nats_server import NatsServer
from ult_actors.testing.process import UltProcess

RICH = {"PAPER_STARTING_CASH": "100000000"}


@pytest.fixture(scope="module")
def service(nats_server: NatsServer) -> Iterator[UltProcess]:
    svc = UltProcess.serve(env={**RICH, "ULT_NATS_URL": nats_server.url}).start()
    yield svc
    code = svc.stop()
    svc.cleanup()
    assert code == 0, "the service did not stop cleanly on SIGTERM"


def test_the_blocking_client_over_nats_places_finds_lists_and_cancels_orders(
    service: UltProcess, nats_server: NatsServer
) -> None:
    with Client(url=nats_server.url, timeout=20) as c:
        filled = c.submit("AAPL", "buy", 10, wait=True)
        assert filled.status == "filled" and filled.filled_qty == 10
        resting = c.submit("MSFT", "buy", 5, type="limit", limit_price="1.00",
                           time_in_force="gtc", client_order_id="nats-rest-1")  # fmt: skip
        assert c.order("nats-rest-1").id == resting.id
        assert "nats-rest-1" in [o.client_order_id for o in c.orders(open=True)]
        assert c.cancel("nats-rest-1").status in ("canceled", "pending_cancel")
        assert any(p.symbol == "AAPL" and p.qty >= 10 for p in c.positions())
        names = {a.name for a in c.health().actors}
        assert {"ult", "router", "ipc", "nats"} <= names
        # The same errors as on the socket, with the same fields.
        with pytest.raises(InvalidOrder) as info:
            c.submit("AAPL", "buy", 1, type="limit")
        assert info.value.field == "limit_price"
        with pytest.raises(NotFound):
            c.order("no-such-order")
        results = c.submit_many([order_request("AAPL", "buy", 1) for _ in range(50)])
        assert len(results) == 50 and all(not isinstance(r, Exception) for r in results)
        assert len({r.id for r in results if not isinstance(r, Exception)}) == 50


def test_an_order_sent_over_nats_is_the_one_the_socket_sees(
    service: UltProcess, nats_server: NatsServer
) -> None:
    with Client(url=nats_server.url, timeout=20) as remote, Client(service.socket) as local:
        order = remote.submit("IBM", "buy", 3, client_order_id="nats-same-1")
        assert local.order("nats-same-1").id == order.id
        # Idempotent by client order id across transports: no second order.
        again = local.submit("IBM", "buy", 3, client_order_id="nats-same-1")
        assert again.id == order.id


async def test_the_async_client_over_nats_on_trio_follows_events(
    service: UltProcess, nats_server: NatsServer
) -> None:
    async with AsyncClient(url=nats_server.url, timeout=20) as c:
        events = await c.subscribe(["orders"])
        order = await c.submit("AAPL", "buy", 2, client_order_id="nats-ev-1")
        with trio.fail_after(20):
            async for event in events:
                if (
                    isinstance(event, OrderUpdate)
                    and event.order.id == order.id
                    and event.order.status == "filled"
                ):
                    break
        await c.ping()


def test_the_async_client_over_nats_runs_on_asyncio(
    service: UltProcess, nats_server: NatsServer
) -> None:
    async def main() -> list[str]:
        async with AsyncClient(url=nats_server.url, timeout=20) as c:
            orders = await asyncio.gather(
                *(c.submit("AAPL", "buy", 1, client_order_id=f"nats-aio-{i}") for i in range(20))
            )
            return [o.client_order_id or "" for o in orders]

    assert sorted(asyncio.run(main())) == sorted(f"nats-aio-{i}" for i in range(20))


def test_no_service_on_the_cluster_is_unreachable_not_a_timeout(
    service: UltProcess, nats_server: NatsServer
) -> None:
    with Client(url=nats_server.url, cluster="nobody", timeout=20) as c:
        with pytest.raises(ServiceUnreachable, match=r"no ult service answers on ult\.nobody\.cmd"):
            c.ping()
        # A submit nobody received is not an unknown outcome: nothing got it.
        with pytest.raises(ServiceUnreachable):
            c.submit("AAPL", "buy", 1)


def test_no_nats_server_at_the_url_is_unreachable(nats_py: None) -> None:
    from ult_actors.testing.nats_server import free_port

    with pytest.raises(ServiceUnreachable, match="cannot reach the ult service at nats://"):
        Client(url=f"nats://127.0.0.1:{free_port()}", timeout=5).connect()
    # The failed connect left no thread behind.
    assert not [t for t in threading.enumerate() if t.name == "ult-client-nats"]


def test_a_reply_that_does_not_come_in_time_is_an_unknown_outcome(
    service: UltProcess, nats_server: NatsServer
) -> None:
    with Client(url=nats_server.url, timeout=20) as c:
        with pytest.raises(OutcomeUnknown) as info:
            c.submit("AAPL", "buy", 1, type="limit", limit_price="1", wait=True, timeout=0.5,
                     client_order_id="nats-slow-1")  # fmt: skip
        assert info.value.client_order_id == "nats-slow-1"


def test_maps_nested_deeper_than_msgspec_recurses_are_a_bad_request(
    service: UltProcess, nats_server: NatsServer
) -> None:
    import msgspec
    import nats

    # A ping whose extra field holds maps nested 100,000 deep (well under max_payload).
    nested = b"\x83\xa4kind\xa4ping\xa2id\x07\xa1x" + b"\x81\xa1a" * 100_000 + b"\x01"

    async def ask() -> object:
        nc = await nats.connect(nats_server.url)
        try:
            reply = await nc.request("ult.default.cmd", nested, timeout=20)
        finally:
            await nc.close()
        return msgspec.msgpack.decode(reply.data)

    answer = asyncio.run(ask())
    assert isinstance(answer, dict)
    assert answer["error"]["code"] == "bad_request"
    assert "nests too deeply" in answer["error"]["message"]
    assert service.socket is not None
    with Client(service.socket, timeout=20) as c:  # the NATS side was not restarted
        assert next(a for a in c.health().actors if a.name == "nats").restarts == 0
