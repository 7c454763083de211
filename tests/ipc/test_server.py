"""The IPC server in-process, over a real socket: pipelining, bad input, peers, subscriptions."""

from __future__ import annotations

import os
import stat
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from tests.fakes import FakeVenue
from tests.ipc.harness import ipc_service
from tests.ipc.rawconn import RawConnection
from ult_actors.client import AsyncClient, InvalidOrder, NotFound, Unauthorized
from ult_actors.ipc.peercred import PeerPolicy
from ult_actors.messages import (
    Cancel,
    ErrorReply,
    EventMessage,
    OkReply,
    OrderReply,
    OrderRequest,
    OrderUpdate,
    Ping,
    Submit,
    Subscribe,
    SubscriptionDropped,
)
from ult_actors.runtime.pubsub import Subscription
from ult_actors.service import Service


def _order(coid: str, **fields: Any) -> OrderRequest:
    return OrderRequest(symbol="AAPL", side="buy", qty=Decimal(1), client_order_id=coid, **fields)


def _subscriptions(svc: Service) -> list[Subscription[Any]]:
    """The subscriptions the service's bus serves now (a dropped one leaves it)."""
    return list(svc.gateway.bus._subscribers)


def _new_subscription(svc: Service, before: list[Subscription[Any]]) -> Subscription[Any]:
    """The one subscription the bus serves now and did not in ``before``."""
    (new,) = [sub for sub in _subscriptions(svc) if sub not in before]
    return new


async def test_replies_come_back_in_the_order_they_finish_each_with_its_request_id(
    sock_dir: Path,
) -> None:
    venue = FakeVenue()
    venue.submit_gate = trio.Event()  # the broker holds the submit
    async with ipc_service(sock_dir, venue) as (_svc, path):
        conn = await RawConnection.open(path)
        with trio.fail_after(10):
            await conn.send(Submit(id=1, order=_order("slow-1")), Ping(id=2))
            first = await conn.receive()
            assert (type(first), first.id) == (OkReply, 2)  # type: ignore[union-attr]
            venue.submit_gate.set()
            second = await conn.receive()
        assert isinstance(second, OrderReply) and second.id == 1
        assert second.order.client_order_id == "slow-1"
        await conn.aclose()


async def test_a_cancel_sent_while_the_only_submit_waits_on_a_slow_broker_is_answered_at_once(
    sock_dir: Path,
) -> None:
    # The submit is read alone and answered by the task that read it: the reading
    # must have moved on to another task, or the cancel would wait for the broker.
    venue = FakeVenue()
    async with ipc_service(sock_dir, venue) as (_svc, path):
        conn = await RawConnection.open(path)
        with trio.fail_after(10):
            await conn.send(Submit(id=1, order=_order("rest-1", type="limit", limit_price=90)))
            resting = await conn.receive()
            assert isinstance(resting, OrderReply) and resting.order.status == "accepted"
            venue.submit_gate = trio.Event()  # the broker holds the next submit
            await conn.send(Submit(id=2, order=_order("slow-2")))
            await trio.testing.wait_all_tasks_blocked()
            await conn.send(Cancel(id=3, order_id=resting.order.id))
            canceled = await conn.receive()
            assert isinstance(canceled, OrderReply) and canceled.id == 3
            assert canceled.order.status == "canceled"
            venue.submit_gate.set()
            submitted = await conn.receive()
        assert isinstance(submitted, OrderReply) and submitted.id == 2
        assert submitted.order.client_order_id == "slow-2"
        await conn.aclose()


async def test_garbage_frames_get_bad_request_and_the_connection_stays_usable(
    sock_dir: Path,
) -> None:
    async with ipc_service(sock_dir) as (_svc, path):
        conn = await RawConnection.open(path)
        with trio.fail_after(10):
            await conn.send_raw(msgspec.msgpack.encode({"kind": "teleport", "id": 41}), framed=True)
            await conn.send_raw(b"\xc1\xc1", framed=True)
            await conn.send(Ping(id=43))
            bad_kind, not_msgpack, pong = [await conn.receive() for _ in range(3)]
        assert isinstance(bad_kind, ErrorReply) and bad_kind.id == 41
        assert bad_kind.error.code == "bad_request"
        assert "Invalid value 'teleport' - at `$.kind`" in bad_kind.error.message
        assert isinstance(not_msgpack, ErrorReply) and "not valid msgpack" in not_msgpack.error.message
        assert isinstance(pong, OkReply) and pong.id == 43
        await conn.aclose()


async def test_an_oversize_frame_is_answered_then_the_connection_closed(sock_dir: Path) -> None:
    async with ipc_service(sock_dir, max_frame_bytes=4096) as (_svc, path):
        conn = await RawConnection.open(path)
        with trio.fail_after(10):
            await conn.send_raw((1 << 30).to_bytes(4, "big") + b"xx")
            reply = await conn.receive()
            assert await conn.at_eof()
            # The server itself is fine: a new connection is served.
            async with AsyncClient(path) as client:
                await client.ping()
        assert isinstance(reply, ErrorReply) and reply.id == 0
        assert reply.error.code == "bad_request"
        assert "frame of 1073741824 bytes exceeds the limit of 4096 bytes" in reply.error.message


async def test_a_peer_whose_uid_is_not_allowed_is_refused_by_name(sock_dir: Path) -> None:
    policy = PeerPolicy(uids=frozenset({4242}))
    async with ipc_service(sock_dir, policy=policy) as (_svc, path):
        with trio.fail_after(10), pytest.raises(Unauthorized) as info:
            async with AsyncClient(path) as client:
                await client.ping()
        assert f"uid {os.getuid()} is not allowed" in info.value.message
        assert "4242" in info.value.message


def test_the_default_policy_lets_in_our_uid_and_root_and_configured_groups() -> None:
    from ult_actors.ipc.peercred import PeerCredentials

    policy = PeerPolicy.default(gids=[5000], own_uid=1000)
    assert policy.allows(PeerCredentials(pid=1, uid=1000, gid=1000))
    assert policy.allows(PeerCredentials(pid=1, uid=0, gid=0))
    assert policy.allows(PeerCredentials(pid=1, uid=2000, gid=5000))
    assert not policy.allows(PeerCredentials(pid=1, uid=2000, gid=2000))


async def test_client_errors_are_the_exception_class_of_their_code(sock_dir: Path) -> None:
    async with ipc_service(sock_dir) as (_svc, path), AsyncClient(path) as client:
        with trio.fail_after(10):
            with pytest.raises(InvalidOrder) as info:
                await client.submit("AAPL", "buy", 1, type="limit")
            assert info.value.field == "limit_price"
            with pytest.raises(NotFound):
                await client.order("no-such-order")
            with pytest.raises(InvalidOrder, match="not float"):
                await client.submit("AAPL", "buy", 0.1)  # type: ignore[arg-type]


async def test_many_tasks_submit_at_once_over_one_async_connection(sock_dir: Path) -> None:
    venue = FakeVenue()
    async with ipc_service(sock_dir, venue) as (_svc, path):
        async with AsyncClient(path) as client:
            got: dict[str, str] = {}

            async def one(i: int) -> None:
                order = await client.submit("AAPL", "buy", 1, client_order_id=f"t-{i}")
                got[order.client_order_id] = order.status

            with trio.fail_after(30):
                async with trio.open_nursery() as nursery:
                    for i in range(500):
                        nursery.start_soon(one, i)
        assert sorted(got) == sorted(f"t-{i}" for i in range(500))
        assert set(got.values()) == {"filled"}
        assert client.unmatched_replies == 0
        assert venue.submits == 500


async def test_events_follow_orders_and_a_slow_subscriber_is_dropped_while_orders_flow(
    sock_dir: Path,
) -> None:
    async with ipc_service(sock_dir, subscriber_queue=16, outbox_high_water=4096) as (svc, path):
        before = _subscriptions(svc)
        # A subscriber that reads nothing after its acknowledgement.
        stuck = await RawConnection.open(path)
        await stuck.send(Subscribe(id=1, topics=["orders"]))
        with trio.fail_after(10):
            assert isinstance(await stuck.receive(), OkReply)
        sub = _new_subscription(svc, before)
        answered = 0
        async with AsyncClient(path) as client:
            with trio.fail_after(60):
                # Orders keep being answered while the stuck subscriber's queue fills.
                while sub.dropped_reason is None:
                    async with trio.open_nursery() as nursery:
                        for _ in range(20):
                            nursery.start_soon(client.submit, "AAPL", "buy", 1)
                    answered += 20
                    assert answered <= 5000, "the stuck subscriber was never dropped"
                after = await client.submit("AAPL", "buy", 1)
        assert after.status == "filled"
        # The stuck client, once it reads, finds its events and then why it was dropped.
        with trio.fail_after(10):
            while True:
                message = await stuck.receive()
                if not isinstance(message, EventMessage):
                    break
                assert isinstance(message.event, OrderUpdate)
        assert isinstance(message, SubscriptionDropped)
        assert "fell behind: 16 events queued and unread" in message.reason
        await stuck.aclose()


async def test_an_async_subscriber_sees_order_updates_of_a_submit(sock_dir: Path) -> None:
    async with ipc_service(sock_dir) as (_svc, path):
        async with AsyncClient(path) as watcher, AsyncClient(path) as trader:
            statuses: list[str] = []
            with trio.fail_after(10):
                events = await watcher.subscribe(["orders"])
                await trader.submit("AAPL", "buy", 1, client_order_id="ev-1")
                async for event in events:
                    assert isinstance(event, OrderUpdate)
                    if event.order.client_order_id == "ev-1":
                        statuses.append(event.order.status)
                        if event.order.status == "filled":
                            break
        assert statuses[-1] == "filled"


async def test_the_socket_is_private_and_removed_on_shutdown(sock_dir: Path) -> None:
    async with ipc_service(sock_dir) as (_svc, path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert not path.exists()


async def test_a_group_socket_is_0660_in_a_0750_directory(sock_dir: Path) -> None:
    async with ipc_service(sock_dir, group_gid=os.getgid()) as (_svc, path):
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == os.getgid()
        assert stat.S_IMODE(os.stat(path.parent).st_mode) & 0o027 == 0


class _BuggyGateway:
    """Fails on every request but pings, like a bug deep in the service would."""

    async def handle(self, request: Any, peer: Any = None) -> Any:
        if isinstance(request, Ping):
            return OkReply(id=request.id, detail="pong")
        raise RuntimeError("secret internals")

    def subscribe(self, topics: Any, capacity: int) -> Any:
        raise AssertionError("not used")

    def prepare(self, request: Any) -> Any:
        return request


async def test_a_bug_inside_the_service_is_an_internal_error_and_the_connection_lives_on(
    sock_dir: Path,
) -> None:
    from tests.ipc.harness import settings_for
    from ult_actors.client import Internal
    from ult_actors.ipc.server import serve_ipc

    async with trio.open_nursery() as nursery:
        path = await nursery.start(serve_ipc, _BuggyGateway(), settings_for(sock_dir / "s"))
        async with AsyncClient(path) as client:
            with trio.fail_after(10):
                with pytest.raises(Internal, match="failed on this GetHealth request") as info:
                    await client.health()
                assert "secret internals" not in info.value.message
                await client.ping()
        nursery.cancel_scope.cancel()


async def test_every_mutating_request_is_logged_with_the_peer_uid_and_pid(sock_dir: Path) -> None:
    import structlog

    structlog.reset_defaults()
    with structlog.testing.capture_logs() as logs:
        async with ipc_service(sock_dir) as (_svc, path), AsyncClient(path) as client:
            with trio.fail_after(10):
                await client.submit("AAPL", "buy", 2, client_order_id="logged-1")
                unnamed = await client.submit("AAPL", "buy", 1)
                await client.kill_switch(False)
                await client.health()  # a read: not logged as a request
    structlog.reset_defaults()
    requests = [e for e in logs if e["event"] == "request"]
    assert [r["kind"] for r in requests] == ["Submit", "Submit", "SetKillSwitch"]
    # The line names the order even when the service chose its client order id.
    assert requests[1]["client_order_id"] == unnamed.client_order_id
    for entry in requests:
        assert (entry["peer_uid"], entry["peer_pid"]) == (os.getuid(), os.getpid())
    assert requests[0]["client_order_id"] == "logged-1" and requests[0]["qty"] == "2"


async def test_an_async_client_that_stops_reading_events_learns_why_it_was_dropped(
    sock_dir: Path,
) -> None:
    from ult_actors.client import SubscriptionLost

    async with ipc_service(sock_dir, subscriber_queue=8, outbox_high_water=2048) as (svc, path):
        before = _subscriptions(svc)
        async with AsyncClient(path, event_buffer=1) as lazy, AsyncClient(path) as trader:
            events = await lazy.subscribe(["orders"])
            lazys = _new_subscription(svc, before)
            with trio.fail_after(60):
                while lazys.dropped_reason is None:  # trade; the lazy one reads nothing
                    for _ in range(50):
                        await trader.submit("AAPL", "buy", 1)
                with pytest.raises(SubscriptionLost, match="fell behind") as info:
                    async for _event in events:
                        pass
            assert "8 events queued and unread" in info.value.reason


async def test_requests_waiting_when_the_service_goes_away_fail_with_connection_lost(
    sock_dir: Path,
) -> None:
    from tests.ipc.harness import settings_for
    from ult_actors.client import ConnectionLost
    from ult_actors.ipc.server import serve_ipc

    venue = FakeVenue()
    venue.submit_gate = trio.Event()  # never opened: the submit stays unanswered
    async with ipc_service(sock_dir, venue) as (svc, _path), trio.open_nursery() as outer:
        server_scope = trio.CancelScope()

        async def second_server(*, task_status: trio.TaskStatus[Path]) -> None:
            with server_scope:
                await serve_ipc(svc.gateway, settings_for(sock_dir / "t"), task_status=task_status)

        path = await outer.start(second_server)
        lost: list[ConnectionLost] = []
        async with AsyncClient(path) as client:

            async def submit() -> None:
                with pytest.raises(ConnectionLost) as info:
                    await client.submit("AAPL", "buy", 1)
                lost.append(info.value)

            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(submit)
                    await trio.testing.wait_all_tasks_blocked()
                    server_scope.cancel()  # the server goes away with the submit unanswered
        venue.submit_gate.set()
    (error,) = lost
    assert "the service closed the connection" in error.message
    assert str(sock_dir / "t") in error.message
