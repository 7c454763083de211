"""Instructions per order of the paper venue alone (no service, no actors), counted by valgrind.

Drives one ``PaperConnector`` in one trio run: ``submit_answer`` of
validated market buys of 1 AAPL, as the broker actor calls it (matched
inline, the fill in the answer). ``--warmup`` orders first, then
``--orders`` more; each figure is two runs under ``valgrind
--tool=cachegrind`` (every thread: the writer's too), one with ``--orders``
more orders than the other, over ``--orders``. Every request is built in
both runs, so only the venue's work differs.

Setups: ``memory`` (``state_path = ":memory:"``: the venue's own work),
``file`` (the accounts file: its change log, the writer's fold and its
SQLite commits), ``file-no-commit`` (the same with ``PaperStore.commit`` a
no-op: ``file`` less this is what SQLite itself costs an order).

    python -m bench.paper_venue --orders 2000                # all three setups
    python -m bench.paper_venue --drive file 200 1000         # one run, no valgrind
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from decimal import Decimal
from pathlib import Path

import trio

from bench.instructions import instructions_of
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.brokers.paper.store import PaperStore
from ult_actors.messages import OrderRequest
from ult_actors.validation import validate_order

SETUPS = ("memory", "file", "file-no-commit")
#: Requests built in every run, whatever it submits (at most this many are submitted).
BUILT = 20_000


async def drive(setup: str, warmup: int, orders: int) -> None:
    """Submit ``warmup`` then ``orders`` market buys to a fresh paper account."""
    if warmup + orders > BUILT:
        raise SystemExit(f"at most {BUILT} orders in all")
    with tempfile.TemporaryDirectory() as state_dir:
        path = ":memory:" if setup == "memory" else str(Path(state_dir) / "paper.db")
        settings = PaperSettings(
            state_path=path, latency_ms=0, starting_cash=Decimal(10**12), tick_interval_s=0
        )
        connector = PaperConnector("paper", settings)
        await connector.connect()
        requests = []
        for i in range(BUILT):
            request = OrderRequest(
                symbol="AAPL", side="buy", qty=Decimal(1), client_order_id=f"n-{i}", broker="paper"
            )
            validate_order(request)
            requests.append(request)
        for request in requests[: warmup + orders]:
            connector.mark_validated(request)
            await connector.submit_answer(request)
        await connector.disconnect()


def measure(setup: str, warmup: int, orders: int) -> int:
    """Instructions per order of ``setup`` (two runs under valgrind)."""
    runs = [
        instructions_of(["-m", "bench.paper_venue", "--drive", setup, str(warmup), str(n)])
        for n in (0, orders)
    ]
    return round((runs[1] - runs[0]) / orders)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000, help="orders per measured run")
    parser.add_argument("--warmup", type=int, default=200, help="orders first, in both runs")
    parser.add_argument("--setup", choices=SETUPS, action="append", help="(all three)")
    parser.add_argument(
        "--drive", nargs=3, metavar=("SETUP", "WARMUP", "ORDERS"),
        help="run once without valgrind; what each measurement runs",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.drive:
        setup, warmup, orders = args.drive[0], int(args.drive[1]), int(args.drive[2])
        if setup == "file-no-commit":
            PaperStore.commit = lambda self, rows: None  # type: ignore[method-assign]
        trio.run(drive, setup, warmup, orders)
        return 0
    if shutil.which("valgrind") is None:
        print("unavailable: valgrind is not installed")
        return 1
    print(f"instructions per order, paper venue alone ({args.orders} orders after {args.warmup})")
    for setup in args.setup or SETUPS:
        print(f"  {setup:16s} {measure(setup, args.warmup, args.orders):>9,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
