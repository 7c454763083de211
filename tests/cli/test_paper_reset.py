"""``ult paper reset``: starts the paper account afresh, and refuses under a running service."""

from __future__ import annotations

import tempfile
from decimal import Decimal
from pathlib import Path

import pytest

from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.cli.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from ult_actors.cli.main import main as ult_main
from ult_actors.cli.paper import reset_main as paper_reset_main
from ult_actors.messages import OrderRequest


def connector(state_dir: str) -> PaperConnector:
    path = str(Path(state_dir) / "paper-paper.db")
    return PaperConnector("paper", PaperSettings(tick_interval_s=0, state_path=path))


async def test_paper_reset_starts_afresh_and_refuses_while_the_account_is_open(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ULT_CONFIG", "ULT_STATE_DIR", "ENABLE_PAPER_TRADING", "PAPER_STARTING_CASH"):
        monkeypatch.delenv(name, raising=False)
    state_dir = tempfile.mkdtemp(dir="/tmp")
    paper = connector(state_dir)
    await paper.connect()
    await paper.submit(
        OrderRequest(symbol="AAPL", side="buy", qty=Decimal(10), client_order_id="before")
    )
    # While a service holds the account, reset refuses instead of deleting it.
    assert paper_reset_main(["--state-dir", state_dir]) == EXIT_FAILED
    assert "stop the service first" in capsys.readouterr().err
    await paper.disconnect()

    assert paper_reset_main(["--state-dir", state_dir]) == EXIT_OK
    assert "paper account paper reset" in capsys.readouterr().out
    fresh = connector(state_dir)
    await fresh.connect()
    try:
        assert await fresh.positions() == []
        assert (await fresh.account()).cash == PaperSettings().starting_cash
    finally:
        await fresh.disconnect()
    assert paper_reset_main(["--state-dir", state_dir, "--broker", "nope"]) == EXIT_FAILED


@pytest.mark.parametrize(("argv", "code"), [(["paper", "--help"], EXIT_OK), (["paper"], EXIT_USAGE)])
def test_the_first_word_of_paper_reset_names_the_command_instead_of_unknown(
    argv: list[str], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ult_main(argv) == code
    out = capsys.readouterr()
    assert "usage: ult paper reset" in out.out + out.err
    assert "unknown command" not in out.err
