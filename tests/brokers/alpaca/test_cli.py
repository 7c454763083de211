"""Acceptance: ``ult serve`` pointed at the simulator by ALPACA_BASE_URL/ALPACA_STREAM_URL.

``ult submit AAPL buy 1 --broker alpaca --wait`` fills, and ``ult positions``
shows it: real processes, a real Unix socket, the simulator on loopback.
"""

from __future__ import annotations

import json

import trio

from tests.brokers.alpaca.harness import KEY, SECRET, running_sim
from ult_actors.testing.process import UltProcess, clean_env, short_dir, ult_command


async def run_ult(*args: str, env: dict[str, str]) -> tuple[int, str]:
    with trio.fail_after(60):
        done = await trio.run_process(
            ult_command(*args), env=env, capture_stdout=True, capture_stderr=True, check=False
        )
    return done.returncode, done.stdout.decode() + done.stderr.decode()


async def test_ult_submit_through_the_service_fills_at_the_simulator_and_shows_a_position() -> None:
    async with running_sim() as (sim, port):
        with short_dir() as home:
            extra = {
                "ALPACA_API_KEY": KEY,
                "ALPACA_API_SECRET": SECRET,
                "ALPACA_BASE_URL": f"http://127.0.0.1:{port}",
                "ALPACA_STREAM_URL": f"ws://127.0.0.1:{port}/stream",
            }
            serve = UltProcess.serve(home, env=extra, clean=True)
            try:
                await serve.astart(timeout=60)
                ready = serve.ready
                assert ready is not None, serve.log
                assert ready["STATUS"].startswith("brokers 2/2 up"), ready

                client_env = clean_env(home, ULT_SOCKET=str(serve.socket))
                code, out = await run_ult(
                    "submit", "AAPL", "buy", "1", "--broker", "alpaca", "--wait", "--json",
                    env=client_env,
                )  # fmt: skip
                assert code == 0, out
                order = json.loads(out)
                assert (order["status"], order["broker"], order["filled_qty"]) == (
                    "filled",
                    "alpaca",
                    "1",
                )
                assert sim.venue.stats.orders_created == 1

                with trio.fail_after(30):
                    while True:  # the book applies the fill as an event: wait for it
                        code, out = await run_ult(
                            "positions", "--broker", "alpaca", "--json", env=client_env
                        )
                        assert code == 0, out
                        rows = json.loads(out)["positions"]
                        if rows:
                            break
                        await trio.sleep(0.1)
                assert [(p["symbol"], p["qty"]) for p in rows] == [("AAPL", "1")]
                code, table = await run_ult("positions", env=client_env)
                assert code == 0 and "AAPL" in table and "alpaca" in table
                assert SECRET not in serve.log and KEY not in serve.log
            finally:
                with trio.fail_after(30):
                    await serve.astop()
                serve.cleanup()


def test_ult_sim_alpaca_help_names_the_rest_base_and_the_stream_path() -> None:
    import subprocess

    done = subprocess.run(ult_command("sim", "alpaca", "--help"), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "http://HOST:PORT/v2" in text and "ALPACA_BASE_URL=http://HOST:PORT" in text
    assert "ws://HOST:PORT/stream" in text and "ALPACA_STREAM_URL=ws://HOST:PORT/stream" in text
