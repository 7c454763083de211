"""Acceptance: a journal that lost its tail gets every order back from the broker, none sent twice.

What a machine crash does to the journal, played with real processes: while
orders flow, the journal's files are copied (the disk as it stood a moment
before the crash); orders go on; the service is killed with SIGKILL and the
old copy put back. On restart every order the broker holds is in the
journal again, the ones the copy lacks adopted (``origin = "adopted"``), and
none was sent to the broker a second time. Against the embedded paper
broker and the Alpaca simulator (``ult sim alpaca``, its own process).
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

import httpx
import pytest

from tests.durability.harness import paper_open_orders
from ult_actors.client import Client, UltError
from ult_actors.testing.process import UltProcess, run_ult, short_dir

KEY, SECRET = "tail-key", "tail-secret"
JOURNAL_FILES = ("journal.db", "journal.db-wal")
#: The journal's change log: what was recorded and is not in the file yet.
JOURNAL_LOG = "journal.db.log.*"


@dataclass
class OrderFlow:
    """Resting limit orders submitted one after another from a thread until the service dies."""

    socket: Path
    sent: list[str] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    ended: bool = False
    changed: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, name="order-flow", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with Client(self.socket, timeout=30) as client:
                for i in count():
                    coid = f"tail-{i}"
                    self.sent.append(coid)
                    client.submit(
                        "AAPL", "buy", 1, type="limit", limit_price="1", time_in_force="gtc",
                        client_order_id=coid,
                    )  # fmt: skip
                    with self.changed:
                        self.acked.append(coid)
                        self.changed.notify_all()
        except (UltError, OSError):
            pass  # the service was killed under it
        finally:
            with self.changed:
                self.ended = True
                self.changed.notify_all()

    def wait_acked(self, n: int) -> None:
        with self.changed:
            self.changed.wait_for(lambda: len(self.acked) >= n or self.ended, timeout=60)
            assert len(self.acked) >= n, f"only {len(self.acked)} orders acknowledged"


@dataclass
class Broker:
    """One broker under test: how ``ult serve`` reaches it, and its own view of its orders."""

    env: dict[str, str]
    open_orders: Callable[[Path], set[str]]
    #: Orders the broker was asked to create, and orders it holds (equal: none sent twice).
    counts: Callable[[], tuple[int, int]] | None = None


@pytest.fixture
def paper() -> Iterator[Broker]:
    def open_orders(state: Path) -> set[str]:
        return {o.client_order_id for o in paper_open_orders(state)}

    yield Broker(env={}, open_orders=open_orders)


@pytest.fixture
def alpaca_sim() -> Iterator[Broker]:
    with short_dir("ult-sim") as home:
        sim = UltProcess(
            ["sim", "alpaca", "--port", "0", "--key", KEY, "--secret", SECRET, "--seed", "16"],
            home=home, ports=True, clean=True, name="sim",
        )  # fmt: skip
        sim.start(timeout=60)
        url = f"http://127.0.0.1:{sim.ports[0]}"
        auth = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}

        def open_orders(_state: Path) -> set[str]:
            listed = httpx.get(f"{url}/v2/orders", params={"status": "open", "limit": 500},
                               headers=auth, timeout=10)  # fmt: skip
            listed.raise_for_status()
            return {o["client_order_id"] for o in listed.json()}

        def counts() -> tuple[int, int]:
            state = httpx.get(f"{url}/_sim/state", timeout=10).json()
            return state["submits"], state["orders"]

        env = {
            "ALPACA_API_KEY": KEY,
            "ALPACA_API_SECRET": SECRET,
            "ALPACA_BASE_URL": url,
            "ALPACA_STREAM_URL": f"ws://127.0.0.1:{sim.ports[0]}/stream",
            "ENABLE_PAPER_TRADING": "false",
            "DEFAULT_BROKER": "alpaca",
        }
        try:
            yield Broker(env=env, open_orders=open_orders, counts=counts)
        finally:
            sim.cleanup()


@pytest.mark.parametrize("broker_fixture", ["paper", "alpaca_sim"])
def test_after_a_lost_tail_every_order_at_the_broker_is_journaled_again_none_sent_twice(
    broker_fixture: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    broker: Broker = request.getfixturevalue(broker_fixture)
    state = tmp_path / "state"
    backup = tmp_path / "backup"
    backup.mkdir()
    service = UltProcess.serve(state_dir=state, env=broker.env)
    try:
        service.start(timeout=60)
        assert service.socket is not None
        flow = OrderFlow(service.socket)
        flow.wait_acked(5)
        known = list(flow.acked)  # acknowledged before the copy: in it
        # No checkpoint runs this early (SQLite's comes at 1000 WAL pages), so the main
        # file stands still while copied; a WAL frame torn by the copy fails its checksum
        # and its transaction is dropped, as after a machine crash. The change log first:
        # a segment folded and deleted meanwhile is in the file copied after it.
        for segment in state.glob(JOURNAL_LOG):
            shutil.copy(segment, backup / segment.name)
        for part in JOURNAL_FILES:
            shutil.copy(state / part, backup / part)
        unknown_from = len(flow.sent)  # sent after the copy: not in it
        flow.wait_acked(unknown_from + 5)  # five acknowledged that the copy lacks
        service.kill9()
        flow.thread.join(timeout=30)
    finally:
        service.cleanup()
    for part in state.glob("journal.db*"):
        part.unlink()
    for part in backup.glob("journal.db*"):
        shutil.copy(part, state / part.name)

    again = UltProcess.serve(state_dir=state, env=broker.env)
    try:
        again.start(timeout=60)  # ready means reconciled
        sock = str(again.socket)
        listed = run_ult("orders", "--open", "--json", "--limit", "1000", "--socket", sock)
        assert listed.returncode == 0, listed.stderr
        origins = {r["client_order_id"]: r["origin"] for r in json.loads(listed.stdout)["orders"]}
        health = json.loads(run_ult("health", "--json", "--socket", sock).stdout)
        again.wait_log('"reconciled on start"')
        [summary] = again.log_events("reconciled on start")
        warned = again.log_events("adopting an order found at the broker that the journal lacks")
        if broker.counts is not None:
            held = broker.open_orders(state)
            submits, created = broker.counts()
    finally:
        again.stop()
    if broker.counts is None:
        held = broker.open_orders(state)  # paper: read once the service let go of it
    assert set(flow.acked) <= held <= set(flow.sent)
    assert set(origins) == held  # every order the broker holds is journaled again
    assert {origins[c] for c in known} == {"client"}
    lost = [c for c in flow.sent[unknown_from:] if c in held]
    assert len(lost) >= 5 and {origins[c] for c in lost} == {"adopted"}
    adopted = {c for c in held if origins[c] == "adopted"}
    assert summary["adopted"] == len(adopted)
    assert {e["client_order_id"] for e in warned} == adopted
    assert {e["level"] for e in warned} == {"warning"}
    assert summary["resubmitted"] == 0 and summary["unresolved"] == 0
    assert health["degraded"] == []  # a tail, not a new journal
    if broker.counts is not None:
        assert submits == created == len(held)  # each order created once, none sent again
