"""Run ``ult`` commands as real processes, in a short private directory, with a clean environment."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trio

from tests.ops.notify_listener import NotifyListener


def ult(*args: str) -> list[str]:
    """The command line of ``ult ARGS`` with this interpreter (the checkout's venv)."""
    return [sys.executable, "-m", "ult_actors.cli", *args]


@contextmanager
def short_dir() -> Iterator[Path]:
    """A fresh directory under /tmp, short enough for a socket path."""
    path = Path(tempfile.mkdtemp(prefix="ults", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """Only what a process needs, plus ``extra``: nothing leaks in from the test runner."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a short ``ult`` command to completion, output captured."""
    return subprocess.run(ult(*args), env=env, capture_output=True, text=True, timeout=60)


class Serve:
    """A running ``ult serve``; its stdout and stderr go to one file."""

    def __init__(self, process: trio.Process, output: Path) -> None:
        self.process = process
        self.output = output

    @classmethod
    async def start(cls, args: list[str], env: dict[str, str], output: Path) -> Serve:
        sink = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            process = await trio.lowlevel.open_process(
                ult("serve", *args), env=env, stdout=sink, stderr=sink
            )
        finally:
            os.close(sink)  # the child has its own copy
        return cls(process, output)

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    async def ready_or_exit(self, listener: NotifyListener) -> dict[str, str] | None:
        """The READY message, or None if the process exited first (wrap in ``fail_after``)."""
        result: list[dict[str, str]] = []
        async with trio.open_nursery() as nursery:

            async def ready() -> None:
                result.append(await listener.wait_for("READY", "1"))
                nursery.cancel_scope.cancel()

            async def exited() -> None:
                await self.process.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(ready)
            nursery.start_soon(exited)
        return result[0] if result else None

    async def stop(self) -> int:
        """SIGTERM, then the exit code (wrap in ``fail_after``)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await self.process.wait()

    async def abort(self) -> None:
        """Last resort for a test that failed midway: SIGKILL and reap."""
        if self.process.returncode is None:
            self.process.kill()
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await self.process.wait()
