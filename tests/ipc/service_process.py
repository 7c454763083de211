"""Run the real ``ult serve`` as a subprocess on a short temporary socket.

Readiness is observed, not guessed: the service is given a ``NOTIFY_SOCKET``
(a datagram socket the test owns) and the test waits for ``READY=1``, which
the service sends once the whole tree, the IPC server included, is up.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ULT = str(Path(sys.executable).with_name("ult"))


class ServiceProcess:
    """One ``ult serve`` process; ``socket`` is where clients connect."""

    def __init__(
        self,
        base: Path | None = None,
        *,
        env: dict[str, str] | None = None,
        state_dir: Path | None = None,
        name: str = "service",
    ) -> None:
        self.base = base or Path(tempfile.mkdtemp(prefix="ult-e", dir="/tmp"))
        self.socket = self.base / "run" / "ult.sock"
        self.state_dir = state_dir or self.base / "state"
        self.log_path = self.base / f"{name}.log"
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self._notify: socket.socket | None = None
        self._notify_path = self.base / f"{name}.notify"

    def start(self, timeout: float = 30.0) -> ServiceProcess:
        """Start and wait for READY=1; raises with the service's log if it does not come."""
        self.spawn()
        self.wait_ready(timeout)
        return self

    def spawn(self) -> None:
        """Start the process without waiting."""
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(self._notify_path))
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("ULT_SOCKET", "ULT_CONFIG", "RUNTIME_DIRECTORY", "WATCHDOG_USEC")
        }
        env.update(self.extra_env)
        env["NOTIFY_SOCKET"] = str(self._notify_path)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [ULT, "serve", "--socket", str(self.socket), "--state-dir", str(self.state_dir),
                 "--log-format", "json"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
            )  # fmt: skip

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait for READY=1 on the notify socket; RuntimeError if it exits or times out."""
        assert self.proc is not None and self._notify is not None
        try:
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"service not ready in {timeout} s:\n{self.log()}")
                readable, _, _ = select.select([self._notify], [], [], min(left, 0.5))
                if readable and b"READY=1" in self._notify.recv(4096):
                    return
                if self.proc.poll() is not None:
                    raise RuntimeError(f"service exited with {self.proc.returncode}:\n{self.log()}")
        finally:
            self._close_notify()

    def wait_exit(self, timeout: float = 30.0) -> int:
        """The exit code of a process expected to stop by itself."""
        assert self.proc is not None
        self._close_notify()
        return self.proc.wait(timeout=timeout)

    def _close_notify(self) -> None:
        if self._notify is not None:
            self._notify.close()
            self._notify = None
            self._notify_path.unlink(missing_ok=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up at all (leaves a stale socket behind)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM and wait; the exit code."""
        self._close_notify()
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def run_ult(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``ult ARGS`` and capture its output (never on a terminal, so no colour)."""
    env = {k: v for k, v in os.environ.items() if k != "ULT_SOCKET"}
    env["NO_COLOR"] = "1"
    return subprocess.run(
        [ULT, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
