"""``kill -9`` of the real service mid-order, then a restart: the order is settled, once."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.durability.harness import journal_log_status, journal_status, paper_account
from ult_actors.client import Client, UltError
from ult_actors.messages import TERMINAL_STATUSES, Order
from ult_actors.testing.process import UltProcess


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ult-k", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def wait_for_journal(
    svc: UltProcess, coid: str, want: str | None = None, timeout: float = 20.0
) -> str:
    """The first status of ``coid`` in the journal file (or, given ``want``, that one)."""
    deadline = time.monotonic() + timeout
    while (status := journal_status(svc.journal, coid)) is None or want not in (None, status):
        assert time.monotonic() < deadline, f"{coid} never reached the journal:\n{svc.log}"
        time.sleep(0.005)
    return status


def settled(client: Client, coid: str, timeout: float = 30.0) -> Order:
    deadline = time.monotonic() + timeout
    while (order := client.order(coid)).status not in TERMINAL_STATUSES:
        assert time.monotonic() < deadline, f"{coid} still {order.status}"
        time.sleep(0.02)
    return order


def check_once_and_filled(svc: UltProcess, coid: str, qty: Decimal, since: int) -> None:
    """``coid`` filled once, settled by the start whose log begins at offset ``since``."""
    with Client(svc.socket, timeout=30) as client:
        order = settled(client, coid)
        assert (order.status, order.filled_qty, order.outcome) == ("filled", qty, "definitive")
        assert [o.client_order_id for o in client.orders()].count(coid) == 1
    # Settled on start (or by the update stream just before): nothing left over. The log's
    # own thread writes the line a moment after it is logged: wait for this start's.
    deadline = time.monotonic() + 30
    while '"reconciled on start"' not in svc.log[since:]:
        assert time.monotonic() < deadline, f"no summary of the restart:\n{svc.log[since:]}"
        time.sleep(0.02)
    [summary] = svc.log_events("reconciled on start")[-1:]
    assert summary["unresolved"] == 0 and summary["adopted"] == 0
    svc.stop()
    # From the broker's side: one order, one order's worth of position.
    orders, positions = paper_account(svc.state_dir, [coid])
    assert orders[coid].status == "filled"
    assert positions == {"AAPL": qty}


def test_sigkill_after_the_journal_write_before_the_broker_answers(base: Path) -> None:
    svc = UltProcess.serve(base, notify=False)
    # The paper account's change log is a full pipe: the venue takes the order and then
    # waits to write it down, so it never answers before the kill.
    log = svc.state_dir / "paper.db.log.1"
    svc.state_dir.mkdir(parents=True, exist_ok=True)
    os.mkfifo(log)
    reader = os.open(log, os.O_RDONLY | os.O_NONBLOCK)
    filler = os.open(log, os.O_WRONLY | os.O_NONBLOCK)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(filler, b"x" * 4096)
    svc.start(timeout=60)
    try:
        lost: list[BaseException] = []

        def submit() -> None:
            try:
                with Client(svc.socket, timeout=60) as client:
                    client.submit("AAPL", "buy", 7, client_order_id="kill-1")
            except UltError as exc:  # the connection dies with the service
                lost.append(exc)

        submitter = threading.Thread(target=submit)
        submitter.start()
        # Journaled, not answered: in the log (its row reaches the file with its answer).
        deadline = time.monotonic() + 20
        while journal_log_status(svc.journal, "kill-1") != "pending_new":
            assert time.monotonic() < deadline, f"kill-1 never reached the journal:\n{svc.log}"
            time.sleep(0.005)
        svc.kill9()
        for fd in (reader, filler):
            os.close(fd)
        log.unlink()
        submitter.join(timeout=30)
        assert lost, "the client must not have been told anything"
        since = len(svc.log)
        svc.start(timeout=60)
        check_once_and_filled(svc, "kill-1", Decimal(7), since)
    finally:
        svc.stop()


def test_sigkill_while_the_broker_still_owes_the_execution(base: Path) -> None:
    # Paper latency: the venue acknowledges at once and fills ten minutes later.
    svc = UltProcess.serve(base, notify=False, env={"PAPER_LATENCY_MS": "600000"}).start(timeout=60)
    try:
        with Client(svc.socket, timeout=30) as client:
            order = client.submit("AAPL", "buy", 5, client_order_id="kill-2")
        assert order.status == "accepted"
        # Journaled in the background, moments after the reply.
        assert wait_for_journal(svc, "kill-2", "accepted") == "accepted"
        svc.kill9()
        since = len(svc.log)
        svc.start(timeout=60)  # the travelling order reaches the venue while we were down
        check_once_and_filled(svc, "kill-2", Decimal(5), since)
    finally:
        svc.stop()
