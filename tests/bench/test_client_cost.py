"""Smoke test of ``python -m bench.client_cost``: it runs and prints every variant. No timings asserted."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from bench import client_cost


def test_a_short_run_prints_the_client_cost_of_each_variant(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert client_cost.main(["--requests", "50", "--rounds", "1", "--window", "8"]) == 0
    out = capsys.readouterr().out
    for variant in client_cost.VARIANTS:
        row = next(line for line in out.splitlines() if line.startswith(f"{variant} "))
        assert float(row[len(variant) :].split()[0]) > 0, row


def test_a_server_that_works_before_answering_still_answers_every_variant(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--requests", "20", "--rounds", "1", "--work-us", "200", "--only", "bare,async"]
    assert client_cost.main(argv) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["bare", "async"]


async def test_the_loop_counted_under_valgrind_runs_each_sequential_variant(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "c.sock")
    async with trio.open_nursery() as nursery:
        await nursery.start(client_cost.serve, path)
        with trio.fail_after(30):
            for name in client_cost.SEQUENTIAL:  # in a thread: the blocking one blocks
                argv = ["--loop", name, "--socket", path, "--requests", "10"]
                assert await trio.to_thread.run_sync(client_cost.main, argv) == 0
        nursery.cancel_scope.cancel()
