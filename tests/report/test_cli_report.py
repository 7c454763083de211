"""``ult report`` against a running service: an empty journal says so; a traded one
prints its figures as CSV and writes a page."""

from __future__ import annotations

import csv
import io
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from tests.service_harness import one_broker_config, served
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.service import build_service


@pytest.fixture
def state() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ult-c", dir="/tmp"))  # short: the socket lives here
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def ult(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ult_actors.cli", *args]
    return await trio.to_thread.run_sync(
        lambda: subprocess.run(command, capture_output=True, text=True, timeout=60)
    )


async def test_report_says_when_empty_then_prints_csv_and_writes_a_page(state: Path) -> None:
    settings = PaperSettings(
        tick_interval_s=0,
        state_path=":memory:",
        start_prices={"AAPL": Decimal("100")},
        slippage_bps=Decimal("10"),
        size_impact_bps_per_share=Decimal("0"),
        commission_per_share=Decimal("0.01"),
    )
    svc = build_service(one_broker_config(state, "paper", settings), env={}, rng=random.Random(3))
    sock = str(state / "s")
    async with served(svc, state) as client:
        with trio.fail_after(60):
            empty = await ult("report", "--socket", sock)
            assert empty.returncode == 0, empty.stderr
            assert empty.stdout.startswith("no orders in the journal match this report")

            await client.submit("AAPL", "buy", 100, wait=True)
            page = state / "costs.html"
            done = await ult("report", "--socket", sock, "--csv", "--html", str(page))
            by_day = await ult("report", "--socket", sock, "--by", "day", "--broker", "paper")
            unwritable = await ult("report", "--socket", sock, "--html", str(state / "no" / "p"))
    assert done.returncode == 0, done.stderr
    [row] = list(csv.DictReader(io.StringIO(done.stdout)))
    assert (row["group"], row["orders"], row["filled_qty"]) == ("AAPL", "1", "100")
    assert (row["notional"], row["fees"], row["shortfall"]) == ("10010", "1", "11")
    assert float(row["slippage_bps_p50"]) == pytest.approx(10.0)
    text = page.read_text()
    assert text.count("<svg") == 3  # slippage at paper, cost per day, time to fill
    assert "http" not in text.replace("http://www.w3.org/2000/svg", "")  # nothing to fetch
    assert by_day.returncode == 0 and "SLIPPAGE BPS P50" in by_day.stdout
    assert unwritable.returncode == 1
    assert unwritable.stderr.startswith(f"ult: cannot write {state / 'no' / 'p'}: No such file")
