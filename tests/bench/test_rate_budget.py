"""The rate-budget benchmark runs end to end, at the budget alone and the whole way at IB.

Its figures are not asserted (its exit status says whether every cancel's
planned wait for a token was within one interval; timing belongs to the
benchmark, not the suite).
"""

from __future__ import annotations

import pytest

from bench.rate_budget import main


@pytest.mark.parametrize("tws", [False, True])
def test_cancels_are_timed_against_a_saturated_budget(
    tws: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--venue", "ib", "--backlog", "20", "--cancels", "5"] + (["--tws"] if tws else [])
    assert main(args) in (0, 1)
    out = capsys.readouterr().out
    assert "rate 40/s burst 5 cancel reserve 2, 20 orders waiting, 5 cancels" in out
    assert "p50" in out and "max" in out
    assert " found a token (max " in out  # the token waits told apart from the loop's delay
    assert ("TWS error-100 cut-offs: 0" in out) == tws
