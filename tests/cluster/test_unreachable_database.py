"""A standby whose database cannot be reached says why (health, the busy answer) and logs it
once, then at most every ``db_log_every_s`` with a count, never with the password; when the
database answers again it says so once and takes the lease as usual."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import trio

from ult_actors.cli.tables import Style, health_document, health_tree
from ult_actors.cluster.gateway import RoleGateway
from ult_actors.cluster.member import ClusterMember
from ult_actors.cluster.outage_log import OutageLog
from ult_actors.errors import ServiceBusy
from ult_actors.journal.postgres import Fence
from ult_actors.messages import OrderRequest, Submit

PASSWORD = "pw-not-for-eyes"


class Lines:
    """A log that keeps what it was given: (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        def log(event: str, **fields: Any) -> None:
            self.lines.append((level, event, fields))

        return log

    def events(self, event: str) -> list[dict[str, Any]]:
        return [fields for _, e, fields in self.lines if e == event]


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port bound but not listening: every connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_a_standby_without_its_database_says_why_logs_it_once_and_recovers(
    refused_port: int, postgres_url: str
) -> None:
    log = Lines()
    member = ClusterMember(
        f"postgresql://ult:{PASSWORD}@127.0.0.1:{refused_port}/ult",
        "prod",
        "b",
        lease_s=2.0,
        poll_s=0.01,
        log=log,
        db_log_every_s=3600,
    )
    gateway = RoleGateway(member.health)
    serving = trio.Event()

    async def serve_active(fence: Fence) -> None:
        serving.set()
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(member.run, serve_active)
        with trio.fail_after(30):
            while len(log.events("cluster database unreachable")) < 1 or member.problem == "":
                await trio.sleep(0.01)
            failures_seen = member._db_outage.failures
            while member._db_outage.failures < failures_seen + 10:
                await trio.sleep(0.01)

        # Ten more failed polls, and still the one line (the next is due in an hour).
        [line] = log.events("cluster database unreachable")
        assert line["failed_tries"] == 1
        assert line["error"].startswith("database unreachable: OperationalError: ")

        health = gateway.standby_health()
        assert health.cluster is not None
        assert health.cluster.role == "standby" and health.cluster.active == ""
        assert health.cluster.problem.startswith("database unreachable: OperationalError: ")
        assert health.cluster.problem_since > 0
        shown = health_tree(health, Style(colour=False))
        assert "active: none" in shown
        assert "database unreachable: OperationalError" in shown
        document = health_document(health)
        assert document["cluster"]["problem"] == health.cluster.problem
        order = OrderRequest(symbol="AAPL", side="buy", qty=Decimal(1), client_order_id="c")
        with pytest.raises(ServiceBusy, match=r"no active instance is known yet \(database unreachable"):
            await gateway.handle(Submit(id=1, order=order))
        assert PASSWORD not in repr(log.lines) + shown + json.dumps(document)

        # The database answers again: said once, the problem cleared, the lease taken.
        member.url = postgres_url
        with trio.fail_after(30):
            await serving.wait()
        [back] = log.events("cluster database reachable again")
        assert back["failed_tries"] >= 11
        assert member.health().problem == "" and member.health().role == "active"
        nursery.cancel_scope.cancel()


def test_a_lasting_outage_is_logged_at_most_every_interval_with_a_count() -> None:
    now = [100.0]
    log = Lines()
    outage = OutageLog(log, "down", "up", every_s=30, clock=lambda: now[0])
    for _ in range(60):  # two tries a second for 30 s
        outage.failed("database unreachable: E: x")
        now[0] += 0.5
    outage.failed("database unreachable: E: y")  # 30 s after the first line
    assert log.events("down") == [
        {"error": "database unreachable: E: x", "failed_tries": 1, "since_last_line": 1,
         "for_s": 0.0},
        {"error": "database unreachable: E: y", "failed_tries": 61, "since_last_line": 60,
         "for_s": 30.0},
    ]  # fmt: skip
    now[0] += 1
    outage.ended()
    outage.ended()  # no outage any more: nothing to say
    assert log.events("up") == [{"failed_tries": 61, "for_s": 31.0}]
    outage.failed("database unreachable: E: z")  # a new outage is logged at once
    assert log.events("down")[-1]["failed_tries"] == 1
