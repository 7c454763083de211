"""Acceptance: two real ``ult serve`` instances of one cluster on one PostgreSQL database,
trading at one Alpaca simulator. Exactly one is active; a standby says who is; when the
active is killed the standby takes over within the lease and takes orders; an active paused
past its lease finds itself fenced when it wakes, sends nothing and becomes standby."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import trio

from tests.cluster.conftest import AlpacaSim
from ult_actors.client import AsyncClient, JournalUnavailable, ServiceBusy
from ult_actors.journal.postgres_schema import migrate
from ult_actors.testing.cluster import cluster_instance, wait_role
from ult_actors.testing.process import UltProcess, run_ult, short_dir

# Renewed every quarter lease: with 2 s, ``a`` lost its lease while ``b`` started on a
# machine loaded to 20 (2 cores) and the standby showed epoch 2 where 1 was expected.
LEASE_S = 3.0


@pytest.fixture
def homes() -> Iterator[Path]:
    with short_dir("ultc") as home:
        yield home


async def start_pair(
    homes: Path, postgres_url: str, sim: AlpacaSim
) -> tuple[UltProcess, UltProcess]:
    """Instance ``a`` started first (active), then ``b`` (standby)."""
    a = cluster_instance(homes / "a", "a", url=postgres_url, env=sim.env, lease_s=LEASE_S)
    b = cluster_instance(homes / "b", "b", url=postgres_url, env=sim.env, lease_s=LEASE_S)
    await a.astart(timeout=60)
    assert a.socket is not None
    await wait_role(a.socket, "active")
    await b.astart(timeout=60)
    return a, b


async def submit(sock: Path, coid: str) -> str:
    async with AsyncClient(sock, timeout=30) as client:
        placed = await client.submit("AAPL", "buy", 1, client_order_id=coid)
        return placed.status


async def test_one_active_one_standby_and_the_standby_takes_over_when_the_active_dies(
    homes: Path, postgres_url: str, alpaca_sim: AlpacaSim
) -> None:
    a, b = await start_pair(homes, postgres_url, alpaca_sim)
    try:
        assert a.socket is not None and b.socket is not None
        standby = await wait_role(b.socket, "standby")
        assert standby.cluster is not None and standby.cluster.active == "a"
        assert standby.actors == []  # no broker connection on a standby
        with pytest.raises(ServiceBusy, match="the active one is a"):
            await submit(b.socket, "to-standby")
        shown = await trio.to_thread.run_sync(
            lambda: run_ult("health", "--socket", str(b.socket)).stdout
        )
        assert "cluster test: standby (b); active: a (epoch 1)" in shown
        with trio.fail_after(10):  # systemctl status says it too
            await b.notice("STATUS", "cluster test: standby; active: a")
        assert await submit(a.socket, "before") in ("accepted", "filled")
        async with AsyncClient(a.socket, timeout=30) as client:
            resting = await client.submit(
                "AAPL", "buy", 1, type="limit", limit_price="1", time_in_force="gtc",
                client_order_id="resting",
            )  # fmt: skip
        assert resting.status == "accepted"

        a.kill9()
        # While no instance is active, the order is canceled at the broker (its web page):
        # no stream tells anyone; only reconciliation against the broker can find it out.
        await trio.to_thread.run_sync(alpaca_sim.cancel, resting.id)
        taken = await wait_role(b.socket, "active")
        assert taken.cluster is not None and taken.cluster.epoch == 2
        # Takeover times are measured by bench/failover.py (scripts/chaos --cluster), not here.

        assert await submit(b.socket, "after") in ("accepted", "filled")
        async with AsyncClient(b.socket, timeout=30) as client:
            before = await client.order("before")  # journaled by a, read by b
            assert before.client_order_id == "before"
            reconciled = await client.order("resting")
            assert reconciled.status == "canceled"  # b asked the broker before serving
        assert sorted(alpaca_sim.client_order_ids()) == ["after", "before", "resting"]
    finally:
        a.cleanup()
        b.cleanup()


async def test_an_active_paused_past_its_lease_wakes_fenced_sends_nothing_and_stands_by(
    homes: Path, postgres_url: str, alpaca_sim: AlpacaSim
) -> None:
    a, b = await start_pair(homes, postgres_url, alpaca_sim)
    try:
        assert a.socket is not None and b.socket is not None
        await wait_role(b.socket, "standby")
        a.signal(signal.SIGSTOP)
        await wait_role(b.socket, "active")  # the lease ran out; b won it
        submits_at_takeover = alpaca_sim.submits()

        refused: list[BaseException] = []

        async def submit_to_the_paused_one() -> None:
            # Sent while a is stopped: it reads this the moment it wakes, still holding
            # its brokers' connections and believing itself active.
            try:
                await submit(a.socket, "to-the-fenced")  # type: ignore[arg-type]
            except (ServiceBusy, JournalUnavailable) as exc:
                refused.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(submit_to_the_paused_one)
            await trio.sleep(0.2)  # the request is in a's socket buffer (not a wait for luck:
            # a is stopped; this only orders the request before SIGCONT)
            a.signal(signal.SIGCONT)
        fenced = await wait_role(a.socket, "standby")
        assert fenced.cluster is not None and fenced.cluster.active == "b"
        assert len(refused) == 1, "the fenced instance took an order"
        assert alpaca_sim.submits() == submits_at_takeover  # it sent nothing
        assert "to-the-fenced" not in alpaca_sim.client_order_ids()
        assert a.alive
        assert await submit(b.socket, "on-b") in ("accepted", "filled")
    finally:
        a.signal(signal.SIGCONT)
        a.cleanup()
        b.cleanup()


async def test_an_instance_on_a_journal_from_a_newer_ult_exits_2(
    homes: Path, postgres_url: str, alpaca_sim: AlpacaSim
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        migrate(conn)
        conn.execute("UPDATE ult_schema SET version = version + 1")
    a = cluster_instance(homes / "a", "a", url=postgres_url, env=alpaca_sim.env, lease_s=LEASE_S)
    try:
        a.spawn()
        # Not restarted by systemd (RestartPreventExitStatus=2): it cannot fix itself.
        assert await a.await_exit(timeout=60) == 2
        assert "newer than this ult understands" in a.log
    finally:
        a.cleanup()
