"""A submit carries its client's deadline: once it has passed, no part of the service sends
the order, and the client's timeout says the outcome is unknown and names the order."""

from __future__ import annotations

import json
import random
import signal
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.fakes import FakeConnector, FakeVenue
from tests.ipc.harness import ipc_service
from ult_actors.client import AsyncClient, Client, NotFound, OutcomeUnknown
from ult_actors.config import BrokerEntry, ServiceConfig, ServiceSection
from ult_actors.errors import Timeout
from ult_actors.messages import TERMINAL_STATUSES, OrderRequest, OrderUpdate, Submit
from ult_actors.service import build_service
from ult_actors.testing.process import UltProcess, run_ult

#: Wall-clock epoch of the mock clock's zero, so ``deadline_ns`` and trio time agree.
EPOCH_NS = 1_700_000_000_000_000_000


@pytest.fixture
def service() -> Iterator[UltProcess]:
    svc = UltProcess.serve(env={"PAPER_STARTING_CASH": "10000000"}).start()
    yield svc
    svc.cleanup()


def test_an_order_read_after_its_clients_deadline_is_never_sent(service: UltProcess) -> None:
    assert service.proc is not None
    service.proc.send_signal(signal.SIGSTOP)
    try:
        # The kernel takes the connection and the request; nobody reads them.
        with Client(service.socket, timeout=1.0) as client:
            with pytest.raises(OutcomeUnknown) as lost:
                client.submit("AAPL", "buy", 3)
            coid = lost.value.client_order_id
            assert f"`ult order {coid}`" in lost.value.message
            assert "outcome is unknown" in lost.value.message
            cli = run_ult("submit", "MSFT", "buy", "2", "--timeout", "1", "--json",
                          "--socket", str(service.socket))  # fmt: skip
            service.proc.send_signal(signal.SIGCONT)
            # The service reads the submit first, then this ping: once answered, the
            # submit has been dealt with.
            client.ping()
            with pytest.raises(NotFound):
                client.order(coid)
    finally:
        service.proc.send_signal(signal.SIGCONT)
    assert cli.returncode == 1
    error = json.loads(cli.stdout)["error"]
    assert error["code"] == "timeout"
    assert f"ult order {error['client_order_id']}" in error["message"]
    human = run_ult("order", error["client_order_id"], "--socket", str(service.socket))
    assert human.returncode == 1 and "not_found" in human.stderr
    # Nothing reached the paper broker: no order, no position.
    listed = json.loads(run_ult("orders", "--json", "--socket", str(service.socket)).stdout)
    assert listed["orders"] == []
    held = json.loads(run_ult("positions", "--json", "--socket", str(service.socket)).stdout)
    assert held["positions"] == []


async def test_a_retry_due_after_the_deadline_is_not_sent(
    tmp_path: Path, autojump_clock: Any
) -> None:
    # The first send fails and the retry is due after the client's deadline: the broker
    # actor must not send it (the client has already been told "timeout").
    venue = FakeVenue()
    venue.fail_submits = 1
    cfg = ServiceConfig(
        service=ServiceSection(default_broker="fake", state_dir=str(tmp_path)),
        brokers=[BrokerEntry(name="fake", kind="fake", enabled=True, settings=None)],
    )
    cfg.retry.delay_ms = 2000
    svc = build_service(
        cfg,
        env={},
        rng=random.Random(3),
        now_ns=lambda: EPOCH_NS + int(trio.current_time() * 1e9),
        connector_factories={"fake": lambda: FakeConnector("fake", venue)},
    )
    # Shorter than the retry's delay (0.5 s with this seed), however long the submit's
    # journal commit took on its thread (the autojump clock may jump meanwhile).
    deadline_ns = EPOCH_NS + int((trio.current_time() + 0.1) * 1e9)
    order = OrderRequest(
        symbol="AAPL", side="buy", qty=Decimal(1), client_order_id="late-1", deadline_ns=deadline_ns
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.run)
        settled = svc.bus.subscribe(
            lambda e: isinstance(e, OrderUpdate) and e.order.status in TERMINAL_STATUSES,
            capacity=16,
        )
        with pytest.raises(Timeout):
            await svc.gateway.handle(Submit(id=1, order=order))
        update = await settled.receive()  # the retry came due and was settled, not sent
        nursery.cancel_scope.cancel()
    assert venue.submits == 0 and venue.by_client == {}
    assert isinstance(update, OrderUpdate)
    assert update.order.client_order_id == "late-1" and update.order.status == "rejected"
    assert update.order.reject_reason is not None
    assert "deadline passed" in update.order.reject_reason


async def test_a_retry_of_the_same_order_with_a_later_deadline_is_the_same_order(
    sock_dir: Path,
) -> None:
    venue = FakeVenue()
    async with ipc_service(sock_dir, venue) as (_svc, path), AsyncClient(path, timeout=5) as client:
        first = await client.submit("AAPL", "buy", 2, client_order_id="again-1")
        second = await client.submit("AAPL", "buy", 2, client_order_id="again-1", timeout=9)
    assert second.id == first.id
    assert venue.submits == 1
