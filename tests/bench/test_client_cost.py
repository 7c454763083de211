"""Smoke test of ``python -m bench.client_cost``: it runs and prints every variant. No timings asserted."""

from __future__ import annotations

import pytest

from bench import client_cost


def test_a_short_run_prints_the_client_cost_of_each_variant(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert client_cost.main(["--requests", "50", "--rounds", "1", "--window", "8"]) == 0
    out = capsys.readouterr().out
    for variant in client_cost.VARIANTS:
        row = next(line for line in out.splitlines() if line.startswith(f"{variant} "))
        assert float(row[len(variant) :].split()[0]) > 0, row
