"""A real ``ult serve`` in a subprocess, for tests that kill it.

The socket and state directory live under a short temp dir (``sun_path``
limit). Readiness is what a client sees: the socket answers a ping.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ult_actors.client import Client, UltError

ULT = str(Path(sys.executable).with_name("ult"))


class UltProcess:
    """One ``ult serve``; start it again after ``kill9`` to model a restart."""

    def __init__(self, base: Path, env: dict[str, str] | None = None) -> None:
        self.base = base
        self.socket = base / "run" / "ult.sock"
        self.state_dir = base / "state"
        self.log_path = base / "service.log"
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 60.0) -> UltProcess:
        """Start and return once the socket answers; raises with the log if it never does."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("ULT_SOCKET", "ULT_CONFIG", "NOTIFY_SOCKET", "RUNTIME_DIRECTORY")
        }
        env.update(self.env)
        self.starts += 1
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [ULT, "serve", "--socket", str(self.socket), "--state-dir", str(self.state_dir),
                 "--log-format", "json"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ult serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with Client(self.socket, timeout=5) as client:
                    client.ping()
                return self
            except UltError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ult serve not ready in {timeout}s:\n{self.log()}") from None
                time.sleep(0.05)

    def kill9(self) -> None:
        """SIGKILL: no shutdown, no flush, nothing."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not go within 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self, event: str) -> list[dict[str, Any]]:
        """The JSON log lines whose ``event`` is ``event``."""
        out = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("event") == event:
                    out.append(entry)
        return out

    @property
    def journal(self) -> Path:
        return self.state_dir / "journal.db"


