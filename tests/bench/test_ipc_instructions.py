"""Smoke test of ``python -m bench.ipc --instructions``: what it runs under valgrind
(the served process, driven by the raw client) answers every request and stops on
SIGTERM. No counts asserted."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from bench import ipc
from bench.common import ROOT, child_env, short_tempdir


def test_the_served_process_answers_every_kind_of_request_and_stops_on_sigterm() -> None:
    with short_tempdir("bi-") as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.ipc", "--serve", str(tmp)], cwd=ROOT, env=child_env()
        )
        try:
            deadline = time.monotonic() + 60
            while not (tmp / "ready").exists():
                assert proc.poll() is None and time.monotonic() < deadline, "did not start"
                time.sleep(0.05)
            for n, (kind, window) in enumerate(ipc.KINDS):
                # drive returns only once every request has its reply.
                ipc.drive(tmp / "run" / "ult.sock", kind, 300, window, 1_000 * (n + 1))
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
