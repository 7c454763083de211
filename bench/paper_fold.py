"""Instructions per order of the paper file's fold alone: records folded into ``Rows`` and committed.

No venue, no thread, no clock: the records of ``--orders`` filled market orders
(an order, its fill, a holding, a price, the account's counters each, as
``batch.stage_change`` makes them on the trio thread) are made first, then
folded (``Rows.add``) and committed (``PaperStore.commit``) ``--batch`` at a
time, on the calling thread, as the writer's thread is handed them. Each figure is two runs under ``valgrind --tool=cachegrind``,
one with ``--orders`` more orders than the other, over ``--orders``: what the
writer's thread does per order, without the run-to-run noise of batch sizes
that a thread on a timer brings (``bench.paper_venue``).

    python -m bench.paper_fold --orders 4000             # per order, commits of 50
    python -m bench.paper_fold --drive 1000 4000 50      # one run, no valgrind
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from decimal import Decimal
from pathlib import Path

from bench.instructions import instructions_of
from ult_actors.brokers.paper.batch import Change, Rows, WorkingOrder, stage_change
from ult_actors.brokers.paper.store import PaperStore
from ult_actors.messages import Fill, Order

#: Records made in every run, whatever it folds (so that only the fold differs).
MADE = 20_000


def _record(i: int) -> Change:
    """The record of the venue call that placed and filled market order ``i``."""
    oid = f"paper.18c3a.{i}"
    ts = 10**18 + i
    order = Order(
        id=oid, client_order_id=f"n-{i}", broker="paper", symbol="AAPL", side="buy",
        qty=Decimal(1), type="market", time_in_force="day", status="filled",
        filled_qty=Decimal(1), avg_fill_price=Decimal("100.12"), created_at=ts, updated_at=ts,
    )  # fmt: skip
    fill = Fill(
        fill_id=f"18c3a.f{i}", order_id=oid, client_order_id=f"n-{i}", broker="paper",
        symbol="AAPL", side="buy", qty=Decimal(1), price=Decimal("100.12"), ts=ts,
    )  # fmt: skip
    working = WorkingOrder(order=order)
    return stage_change(
        "paper",
        {oid: working},
        (),
        [fill],
        [("AAPL", Decimal(i), Decimal("100.1"), Decimal(0))],
        [("AAPL", Decimal("100.12"))],
        (Decimal(10**9), 1, i + 1, i + 1),
    )


def drive(warmup: int, orders: int, batch: int) -> None:
    """Fold and commit the records of ``warmup + orders`` orders, ``batch`` a commit."""
    if warmup + orders > MADE:
        raise SystemExit(f"at most {MADE} orders in all")
    records = [_record(i) for i in range(1, MADE + 1)]
    with tempfile.TemporaryDirectory() as state_dir:
        store = PaperStore(str(Path(state_dir) / "paper.db"), first_account="paper")
        try:
            for start in range(0, warmup + orders, batch):
                rows = Rows()
                for record in records[start : min(start + batch, warmup + orders)]:
                    rows.add(record)
                store.commit(rows)
        finally:
            store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=4000, help="orders per measured run")
    parser.add_argument("--warmup", type=int, default=1000, help="orders first, in both runs")
    parser.add_argument("--batch", type=int, default=50, help="orders a commit")
    parser.add_argument(
        "--drive", nargs=3, type=int, metavar=("WARMUP", "ORDERS", "BATCH"),
        help="run once without valgrind; what each measurement runs",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.drive:
        drive(*args.drive)
        return 0
    if shutil.which("valgrind") is None:
        print("unavailable: valgrind is not installed")
        return 1
    runs = [
        instructions_of(
            ["-m", "bench.paper_fold", "--drive", str(args.warmup), str(n), str(args.batch)]
        )
        for n in (0, args.orders)
    ]
    per_order = round((runs[1] - runs[0]) / args.orders)
    print(
        f"paper file's fold, instructions per order ({args.batch} orders a commit): {per_order:,}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
