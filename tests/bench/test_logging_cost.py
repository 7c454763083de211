"""Smoke test of ``python -m bench.logging_cost``: it runs and prints every variant. No timings asserted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from bench import logging_cost


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_a_short_run_prints_the_cost_of_each_variant(capsys: pytest.CaptureFixture[str]) -> None:
    assert logging_cost.main(["--lines", "200", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    for variant in (*logging_cost.VARIANTS, "debug call at info level (filtered)"):
        row = next(line for line in out.splitlines() if variant in line)
        loop_us, process_us = (float(x) for x in row.split()[-2:])
        assert loop_us > 0 and process_us > 0
