"""The ``ult`` client commands against the real service: output, JSON shapes, exit codes."""

from __future__ import annotations

import json
import os
import pty
import queue
import select
import subprocess
import threading
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from ult_actors.testing.process import UltProcess, run_ult, ult_command


@pytest.fixture(scope="module")
def service() -> Iterator[UltProcess]:
    svc = UltProcess.serve(env={"PAPER_STARTING_CASH": "10000000"}).start()
    yield svc
    svc.cleanup()


def ult(svc: UltProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return run_ult(*args, "--socket", str(svc.socket))


def test_submit_json_prints_the_order_and_exits_0(service: UltProcess) -> None:
    done = ult(service, "submit", "AAPL", "buy", "10", "--wait", "--client-order-id", "cli-1", "--json")
    assert done.returncode == 0, done.stderr
    order = json.loads(done.stdout)
    assert {"id", "client_order_id", "status", "filled_qty", "avg_fill_price"} <= set(order)
    assert (order["client_order_id"], order["status"], order["filled_qty"]) == ("cli-1", "filled", "10")
    human = ult(service, "order", "cli-1")
    assert human.returncode == 0
    assert any(line.split() == ["status", "filled"] for line in human.stdout.splitlines())


def test_a_refused_order_exits_1_with_the_error_as_json(service: UltProcess) -> None:
    done = ult(service, "submit", "AAPL", "buy", "1", "--type", "limit", "--json")
    assert done.returncode == 1
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "invalid_order" and error["field"] == "limit_price"
    assert "limit_price is required" in error["message"]
    human = ult(service, "submit", "AAPL", "buy", "1", "--type", "limit")
    assert human.returncode == 1 and "invalid_order: limit_price is required" in human.stderr


def test_usage_errors_exit_2(service: UltProcess) -> None:
    assert ult(service, "submit", "AAPL", "upwards", "1").returncode == 2
    assert ult(service, "kill-switch", "maybe").returncode == 2
    assert run_ult("no-such-command").returncode == 2


def test_an_unreachable_service_exits_3_naming_the_socket(tmp_path: Path) -> None:
    missing = f"/tmp/ult-none-{os.getpid()}/ult.sock"
    done = run_ult("orders", "--socket", missing)
    assert done.returncode == 3 and missing in done.stderr
    as_json = run_ult("health", "--socket", missing, "--json")
    assert as_json.returncode == 3
    error = json.loads(as_json.stdout)["error"]
    assert (error["code"], error["socket"]) == ("service_unreachable", missing)


def test_orders_open_cancel_and_an_aligned_table(service: UltProcess) -> None:
    placed = ult(service, "submit", "MSFT", "buy", "2", "--type", "limit", "--limit-price", "1.5",
                 "--tif", "gtc", "--client-order-id", "cli-rest", "--json")  # fmt: skip
    assert placed.returncode == 0, placed.stderr
    table = ult(service, "orders", "--open")
    lines = table.stdout.splitlines()
    header, rows = lines[0], [line for line in lines[1:] if "cli-rest" in line]
    assert len(rows) == 1
    assert header.split()[:3] == ["ID", "CLIENT", "ORDER"]
    # Columns line up: each header starts where its column does.
    assert rows[0].index("cli-rest") == header.index("CLIENT ORDER ID")
    assert rows[0].index("MSFT") == header.index("SYMBOL")
    canceled = ult(service, "cancel", "cli-rest", "--json")
    assert canceled.returncode == 0 and json.loads(canceled.stdout)["status"] in ("canceled", "pending_cancel")
    still_open = json.loads(ult(service, "orders", "--open", "--json").stdout)["orders"]
    assert "cli-rest" not in [o["client_order_id"] for o in still_open]
    assert ult(service, "order", "nope").returncode == 1


def test_cancel_of_a_filled_or_canceled_order_exits_1_naming_its_state(
    service: UltProcess,
) -> None:
    done = ult(service, "submit", "AAPL", "buy", "1", "--wait", "--client-order-id", "cli-done")
    assert done.returncode == 0, done.stderr
    late = ult(service, "cancel", "cli-done")
    assert late.returncode == 1
    assert "already_final" in late.stderr and "is already filled" in late.stderr
    as_json = ult(service, "cancel", "cli-done", "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["error"]["code"] == "already_final"
    assert ult(service, "submit", "MSFT", "buy", "1", "--type", "limit", "--limit-price", "1",
               "--tif", "gtc", "--client-order-id", "cli-twice").returncode == 0  # fmt: skip
    assert ult(service, "cancel", "cli-twice").returncode == 0
    again = ult(service, "cancel", "cli-twice")
    assert again.returncode == 1 and "is already canceled" in again.stderr


def test_account_and_positions_as_tables_and_json(service: UltProcess) -> None:
    ult(service, "submit", "IBM", "buy", "3", "--wait")
    accounts = json.loads(ult(service, "account", "--json").stdout)["accounts"]
    assert [a["broker"] for a in accounts] == ["paper"]
    assert ult(service, "account").stdout.split()[:5] == ["BROKER", "CURRENCY", "CASH", "BUYING", "POWER"]
    positions = json.loads(ult(service, "positions", "--json").stdout)["positions"]
    assert any(p["symbol"] == "IBM" for p in positions)
    assert "IBM" in ult(service, "positions").stdout


def test_health_json_has_one_entry_per_actor_and_supervisor(service: UltProcess) -> None:
    done = ult(service, "health", "--json")
    assert done.returncode == 0
    actors = json.loads(done.stdout)["actors"]
    by_name = {a["name"]: a for a in actors}
    assert {"ult", "journal", "brokers", "broker.paper", "positions", "risk", "router", "ipc"} <= set(by_name)
    for actor in actors:
        assert {"name", "parent", "state", "restarts", "last_error", "mailbox_depth", "uptime_s"} <= set(actor)
    assert by_name["broker.paper"]["parent"] == "brokers"
    assert by_name["brokers"]["kind"] == "supervisor"
    assert by_name["ipc"]["state"] == "running" and by_name["ipc"]["uptime_s"] >= 0


def test_health_shows_the_tree_indented(service: UltProcess) -> None:
    lines = ult(service, "health").stdout.splitlines()
    assert lines[0].startswith("ult ") and "trading active" in lines[0]
    assert lines[1].split()[:4] == ["ACTOR", "STATE", "RESTARTS", "MAILBOX"]
    tree = lines[2 : lines.index("")]  # the trading states follow, after a blank line
    indent = {_name(line): _depth(line) for line in tree}
    assert indent["ult"] == 0
    assert indent["brokers"] == indent["router"] == 1
    assert indent["broker.paper"] == 2
    assert "LAST ERROR" in lines[1] and "UPTIME" in lines[1]


def _name(line: str) -> str:
    return line.lstrip("│├└─ ").split()[0]


def _depth(line: str) -> int:
    prefix = line[: len(line) - len(line.lstrip("│├└─ "))]
    return len(prefix) // 3


def test_health_watch_refreshes(service: UltProcess) -> None:
    done = ult(service, "health", "--watch", "--interval", "0.05", "--count", "3")
    assert done.returncode == 0
    assert sum(1 for line in done.stdout.splitlines() if line.startswith("ult ") and " pid " in line) == 3
    as_json = ult(service, "health", "--watch", "--json", "--interval", "0.05", "--count", "2")
    documents = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert len(documents) == 2 and all("actors" in d for d in documents)


def test_events_follow_order_updates_as_json_lines(service: UltProcess) -> None:
    follower = subprocess.Popen(
        ult_command("events", "--socket", str(service.socket), "--json", "--topics", "orders", "--count", "50"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert follower.stderr is not None and follower.stdout is not None
        ready, _, _ = select.select([follower.stderr], [], [], 20)
        assert ready and "following events" in follower.stderr.readline()
        assert ult(service, "submit", "AAPL", "sell", "1", "--client-order-id", "cli-ev").returncode == 0
        statuses = []
        for _ in range(50):
            ready, _, _ = select.select([follower.stdout], [], [], 20)
            assert ready, "no event arrived"
            event = json.loads(follower.stdout.readline())
            assert event["kind"] == "order_update"
            if event["order"]["client_order_id"] == "cli-ev":
                statuses.append(event["order"]["status"])
                if event["order"]["status"] == "filled":
                    break
        assert statuses[-1] == "filled"
    finally:
        follower.kill()
        follower.wait(timeout=10)


def test_the_kill_switch_from_the_command_line(service: UltProcess) -> None:
    on = ult(service, "kill-switch", "on", "--json")
    try:
        assert on.returncode == 0 and json.loads(on.stdout)["kill_switch"] == "on"
        refused = ult(service, "submit", "AAPL", "buy", "1", "--json")
        assert refused.returncode == 1
        assert json.loads(refused.stdout)["error"]["code"] == "risk_rejected"
        assert "trading halted" in ult(service, "health").stdout.splitlines()[0]
    finally:
        assert ult(service, "kill-switch", "off").returncode == 0
    assert ult(service, "submit", "AAPL", "buy", "1").returncode == 0


def test_trading_state_from_the_command_line_for_one_broker(service: UltProcess) -> None:
    reducing = ult(service, "trading-state", "reducing", "--broker", "paper", "--json")
    try:
        assert reducing.returncode == 0
        assert json.loads(reducing.stdout)["trading_state"] == "reducing"
        refused = ult(service, "submit", "MSFT", "buy", "1", "--json")  # opens a position
        assert refused.returncode == 1
        error = json.loads(refused.stdout)["error"]
        assert (error["code"], error["limit"]) == ("risk_rejected", "trading_state")
        assert ult(service, "trading-state", "active", "--broker", "nope").returncode == 1
    finally:
        assert ult(service, "trading-state", "active", "--broker", "paper").returncode == 0
    assert ult(service, "submit", "MSFT", "buy", "1").returncode == 0


def test_health_and_trading_state_show_each_brokers_state_and_who_set_it(
    service: UltProcess,
) -> None:
    assert ult(service, "trading-state", "reducing", "--broker", "paper").returncode == 0
    try:
        head = ult(service, "health").stdout.splitlines()[0]
        assert head.endswith("trading active  (reducing: paper)")
        doc = json.loads(ult(service, "health", "--json").stdout)
        assert doc["trading_state"] == "active"
        assert (doc["broker_trading"]["paper"]["state"], doc["broker_trading"]["paper"]["set_by"]) == (
            "reducing",
            "person",
        )
        shown = ult(service, "trading-state")
        assert shown.returncode == 0
        rows = {line.split()[0]: line.split() for line in shown.stdout.splitlines()[1:]}
        assert rows["paper"][1:3] == ["reducing", "person"]
        assert rows["*"][1] == "active"
        one = json.loads(ult(service, "trading-state", "--broker", "paper", "--json").stdout)
        assert list(one["broker_trading"]) == ["paper"]
        assert ult(service, "trading-state", "--broker", "nope").returncode == 1
    finally:
        assert ult(service, "trading-state", "active", "--broker", "paper").returncode == 0


def test_config_check_still_works() -> None:
    done = run_ult("config", "check", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["ok"] is True


def _on_a_terminal(*args: str, env: dict[str, str]) -> bytes:
    leader, follower = pty.openpty()
    try:
        subprocess.run(ult_command(*args), stdout=follower, stderr=follower, env=env, timeout=30,
                       check=False)  # fmt: skip
        os.close(follower)
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        os.close(leader)


def test_colour_only_on_a_terminal_and_never_with_no_color(service: UltProcess) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "ULT_SOCKET")}
    coloured = _on_a_terminal("health", "--socket", str(service.socket), env=env)
    assert b"\x1b[32mrunning\x1b[0m" in coloured
    plain = _on_a_terminal("health", "--socket", str(service.socket), env={**env, "NO_COLOR": "1"})
    assert b"running" in plain and b"\x1b[" not in plain
    piped = ult(service, "health")
    assert "running" in piped.stdout and "\x1b[" not in piped.stdout


def test_tables_round_for_people_and_json_keeps_every_digit(service: UltProcess) -> None:
    done = ult(service, "submit", "IBM", "buy", "3", "--wait", "--client-order-id", "cli-round", "--json")
    assert done.returncode == 0, done.stderr
    exact = json.loads(done.stdout)["avg_fill_price"]
    assert "E" not in exact.upper()
    shown = dict(line.split(None, 1) for line in ult(service, "order", "cli-round").stdout.splitlines()
                 if line.startswith(("id ", "avg")))  # fmt: skip
    assert shown["id"].startswith("paper:")
    cents = shown["avg"].split()[-1]
    assert cents == str(Decimal(exact).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    (cash,) = [line.split()[2] for line in ult(service, "account").stdout.splitlines()[1:]]
    assert len(cash.split(".")[1]) == 2


def test_an_unknown_broker_is_not_found_in_every_command(service: UltProcess) -> None:
    for command in (
        ["submit", "AAPL", "buy", "1", "--broker", "nope"],
        ["account", "--broker", "nope"],
        ["positions", "--broker", "nope"],
        ["orders", "--broker", "nope"],
        ["trading-state", "reducing", "--broker", "nope"],
        ["close", "AAPL", "--broker", "nope"],
        ["flatten", "--broker", "nope"],
    ):
        done = ult(service, *command, "--json")
        assert done.returncode == 1, command
        error = json.loads(done.stdout)["error"]
        assert (error["code"], error.get("field")) == ("not_found", "broker"), command
        assert "unknown broker 'nope' (configured: paper)" in error["message"], command


@pytest.mark.parametrize("args", [("orders",), ("orders", "--json"), ("health",)])
def test_a_reader_that_closes_early_gets_no_traceback(
    service: UltProcess, args: tuple[str, ...]
) -> None:
    # `ult orders | head`: the reading end is gone before the command writes, so
    # every write fails with EPIPE (Python ignores SIGPIPE, so it is an exception).
    placed = ult(service, "submit", "AAPL", "buy", "1", "--client-order-id", f"pipe{len(args)}")
    assert placed.returncode == 0
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            ult_command(*args, "--socket", str(service.socket)),
            stdout=write, stderr=subprocess.PIPE, text=True, timeout=30, check=False,
        )  # fmt: skip
    finally:
        os.close(write)
    assert done.stderr == ""
    assert done.returncode == 0


def _events_until_filled(service: UltProcess, topics: str, first: str, then: str) -> list[dict[str, object]]:
    """``ult events --json`` while ``first`` then ``then`` fill; every event of ``first``."""
    follower = subprocess.Popen(
        ult_command("events", "--socket", str(service.socket), "--json", "--topics", topics),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert follower.stderr is not None and follower.stdout is not None
        ready, _, _ = select.select([follower.stderr], [], [], 20)
        assert ready and "following events" in follower.stderr.readline()
        for coid in (first, then):
            assert ult(service, "submit", "AAPL", "buy", "2", "--client-order-id", coid).returncode == 0
        lines: queue.Queue[str] = queue.Queue()
        # A reader thread: select() on the pipe would miss lines already in Python's buffer.
        threading.Thread(target=lambda: [lines.put(x) for x in follower.stdout], daemon=True).start()  # type: ignore[union-attr]
        seen = []
        while True:
            event = json.loads(lines.get(timeout=20))
            coid = event["order"]["client_order_id"]
            if coid == first:
                seen.append(event)
            # One publisher, in order: once the second order is done, the first's events are in.
            done = event["fill"] is not None if "fills" in topics else event["order"]["status"] == "filled"
            if coid == then and done:
                return seen
    finally:
        follower.kill()
        follower.wait(timeout=10)


def test_events_show_a_market_fill_once(service: UltProcess) -> None:
    everything = _events_until_filled(service, "orders,fills", "cli-once-1", "cli-once-2")
    assert [e["fill"]["qty"] for e in everything if e["fill"] is not None] == ["2"]
    # The filled state once too: a late execution comes as a fill, not a second `filled`.
    assert [e["order"]["status"] for e in everything if not e.get("fill_only")].count("filled") == 1
    orders_only = _events_until_filled(service, "orders", "cli-once-3", "cli-once-4")
    assert [e["order"]["status"] for e in orders_only].count("filled") == 1
