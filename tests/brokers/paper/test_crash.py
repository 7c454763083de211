"""A ``kill -9`` of a process trading on a paper account: every answer it gave is kept."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import trio

from ult_actors.brokers.paper.changelog import segments
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.errors import NotFound

SETTINGS = PaperSettings(tick_interval_s=0, starting_cash=Decimal(10**9))

# Submits market orders one after another and prints each answer, until killed.
_CHILD = textwrap.dedent(
    """
    import sys
    from decimal import Decimal
    import trio
    from ult_actors.brokers.paper.connector import PaperConnector
    from ult_actors.brokers.paper.settings import PaperSettings
    from ult_actors.messages import OrderRequest

    async def main() -> None:
        settings = PaperSettings(
            tick_interval_s=0, starting_cash=Decimal(10**9), state_path=sys.argv[1]
        )
        connector = PaperConnector("desk", settings)
        await connector.connect()
        i = 0
        while True:
            i += 1
            side = "buy" if i % 3 else "sell"
            request = OrderRequest(
                symbol="AAPL", side=side, qty=Decimal(1), client_order_id=f"k-{i}"
            )
            order = await connector.submit(request)
            print(order.client_order_id, order.status, order.filled_qty, flush=True)
            await trio.sleep(0)

    trio.run(main)
    """
)


def test_every_order_answered_before_a_kill_9_is_in_the_account_once(tmp_path: Path) -> None:
    path = tmp_path / "paper.db"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])},
    )
    assert child.stdout is not None
    answers: list[list[str]] = []
    try:
        while len(answers) < 400:  # a few commits' worth: the file has some, the log all
            line = child.stdout.readline()
            assert line, "the child stopped"
            answers.append(line.split())
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert segments(str(path)), "the log is what the kill leaves to replay"

    async def reopened() -> None:
        connector = PaperConnector("desk", PaperSettings(**{
            **{f: getattr(SETTINGS, f) for f in SETTINGS.__struct_fields__},
            "state_path": str(path),
        }))  # fmt: skip
        await connector.connect()
        try:
            venue = connector.venue
            for coid, status, filled in answers:
                order = await connector.get_order_by_client_id(coid)
                assert (order.status, order.filled_qty) == (status, Decimal(filled))
                # Replaying what the file had already adds no second fill.
                assert [f.qty for f in venue.fills(order.id)] == [Decimal(filled)]
            # The cash and the position are those of every order kept (the answered
            # ones, and any the venue took after the last answer read).
            fills = []
            for i in itertools.count(1):
                try:
                    order = await connector.get_order_by_client_id(f"k-{i}")
                except NotFound:
                    break
                fills += venue.fills(order.id)
            assert i > len(answers)
            sign = {"buy": 1, "sell": -1}
            spent = sum(sign[f.side] * f.qty * f.price + f.commission for f in fills)
            assert (await connector.account()).cash == SETTINGS.starting_cash - spent
            (position,) = await connector.positions()
            assert position.qty == sum(sign[f.side] * f.qty for f in fills)
        finally:
            await connector.disconnect()
        assert not segments(str(path))  # replayed, and gone on a clean close

    trio.run(reopened)
