"""Run ``ult`` (or a program built on it) as a real subprocess, and know when it is ready.

One launcher for the test suite, the chaos run and the benchmarks. A process
is ready when what a user would wait for has happened, never after a guessed
sleep; which signal that is depends on what the process is:

- ``notify=True``: it sent ``READY=1`` to a notify socket this launcher owns
  (what systemd waits for; ``ult serve`` sends it once the whole tree, the
  IPC server included, is up). Every notify message is kept in ``notices``.
- ``socket=PATH``: a client's ``ping`` on ``PATH`` is answered.
- ``ports=True``: the process printed its ``127.0.0.1:PORT`` addresses (the
  simulators, started with ``--port 0``); they are in ``ports``.
- none of those: started means spawned.

Its stdout and stderr go to one log file (``log``). ``UltProcess.serve(...)``
builds the usual ``ult serve`` command line on a short private directory.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import trio

from ult_actors.testing.notify import NotifyListener

#: Variables that would point a child at the caller's service or systemd unit.
_INHERITED_NOT = ("ULT_SOCKET", "ULT_CONFIG", "NOTIFY_SOCKET", "RUNTIME_DIRECTORY", "WATCHDOG_USEC")
_PORT = re.compile(r"127\.0\.0\.1:(\d+)")


def ult_command(*args: str) -> list[str]:
    """The command line of ``ult ARGS`` with this interpreter (the checkout's venv)."""
    return [sys.executable, "-m", "ult_actors.cli", *args]


def short_tempdir(prefix: str = "ult") -> Path:
    """A fresh directory under /tmp, short enough for a socket path (``sun_path``: 108 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@contextmanager
def short_dir(prefix: str = "ults") -> Iterator[Path]:
    """``short_tempdir`` as a context: removed with everything in it on exit."""
    path = short_tempdir(prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """Only what a process needs, plus ``extra``: nothing leaks in from the caller's environment."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}
    env.update(extra)
    return env


def run_ult(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``ult ARGS`` to completion, output captured (so never on a terminal: no colour).

    Without ``env`` it runs in the caller's environment minus ``ULT_SOCKET``
    and with ``NO_COLOR=1``; with ``env`` in exactly that environment.
    """
    if env is None:
        run_env = {k: v for k, v in os.environ.items() if k != "ULT_SOCKET"}
        run_env["NO_COLOR"] = "1"
    else:
        run_env = dict(env)
    return subprocess.run(
        ult_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=run_env,
        cwd=cwd,
        check=False,
    )


class UltProcess:
    """One subprocess: ``ult ARGS`` unless ``program`` names another command line.

    ``home`` holds its log (and the notify socket); without one a short temp
    directory is made and removed by ``cleanup``. ``env`` is added to the
    caller's environment (minus the variables that would point the child at
    another service or at systemd), or to ``clean_env(home)`` when ``clean``.
    ``start`` may be called again after the process ended (a restart).
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        home: Path | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        notify: bool = False,
        socket: Path | None = None,
        ports: bool = False,
        clean: bool = False,
        program: Sequence[str] | None = None,
        name: str = "service",
    ) -> None:
        self._own_home = home is None
        self.home = home if home is not None else short_tempdir("ult-e")
        self.argv = [*(program if program is not None else ult_command()), *args]
        self.extra_env = dict(env or {})
        self.cwd = cwd
        self.use_notify = notify
        self.socket = socket
        self.want_ports = ports
        self.clean = clean
        self.log_path = self.home / f"{name}.log"
        self.state_dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        #: The notify socket while the process runs (``notify=True``).
        self.notify: NotifyListener | None = None
        #: Every notify message of the current run, in order; ``ready`` is the ``READY=1`` one.
        self.notices: list[dict[str, str]] = []
        self.ready: dict[str, str] | None = None
        #: The loopback ports the process printed (``ports=True``).
        self.ports: list[int] = []
        #: How many times the process was started.
        self.starts = 0

    @classmethod
    def serve(
        cls,
        home: Path | None = None,
        *,
        env: Mapping[str, str] | None = None,
        state_dir: Path | None = None,
        notify: bool = True,
        clean: bool = False,
        args: Sequence[str] = (),
        name: str = "service",
    ) -> UltProcess:
        """``ult serve`` on ``HOME/run/ult.sock``, state in ``HOME/state``, JSON logs.

        Ready on ``READY=1`` (``notify``), else when the socket answers a ping.
        """
        own = home is None
        base = home if home is not None else short_tempdir("ult-e")
        sock = base / "run" / "ult.sock"
        state = state_dir if state_dir is not None else base / "state"
        argv = ["serve", "--socket", str(sock), "--state-dir", str(state), "--log-format", "json"]
        proc = cls(
            [*argv, *args],
            home=base,
            env=env,
            notify=notify,
            socket=sock,
            clean=clean,
            name=name,
        )
        proc._own_home = own
        proc.state_dir = state
        return proc

    # --- starting ----------------------------------------------------------------

    def spawn(self) -> None:
        """Start the process without waiting for it to be ready."""
        if self.alive:
            raise RuntimeError("already running")
        self.home.mkdir(parents=True, exist_ok=True)
        env = self._env()
        if self.use_notify:
            self._close_notify()
            self.notify = NotifyListener()
            env["NOTIFY_SOCKET"] = self.notify.address
        self.ready = None
        self.notices = []
        self.ports = []
        self.starts += 1
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                cwd=self.cwd,
            )

    def start(self, timeout: float = 30.0) -> UltProcess:
        """Spawn and wait until ready; ``RuntimeError`` with the log if it exits or times out."""
        self.spawn()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the process is ready (see the module docstring for what that means)."""
        deadline = time.monotonic() + timeout
        while not self._settle(self._answers() if self._by_socket else self._look()):
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self._what()} not ready in {timeout} s:\n{self.log}")
            if self.notify is not None:
                select.select([self.notify.sock], [], [], min(left, 0.5))
            else:
                time.sleep(min(left, 0.05))

    async def astart(self, timeout: float = 30.0) -> UltProcess:
        """``start`` for trio code: the event loop keeps running while the process comes up."""
        self.spawn()
        try:
            with trio.fail_after(timeout):
                while not self._settle(await self._aanswers() if self._by_socket else self._look()):
                    if self.notify is not None:
                        with trio.move_on_after(0.5):
                            await trio.lowlevel.wait_readable(self.notify.sock)
                    else:
                        await trio.sleep(0.05)
        except trio.TooSlowError:
            raise RuntimeError(f"{self._what()} not ready in {timeout} s:\n{self.log}") from None
        return self

    @property
    def _by_socket(self) -> bool:
        return not self.use_notify and self.socket is not None

    def _look(self) -> bool:
        """Ready now, by notify message or printed port (or at once if neither is asked for)?"""
        if self.use_notify:
            return self.ready is not None or self._take_ready()
        if self.want_ports:
            return self._read_ports()
        return True

    def _settle(self, ready: bool) -> bool:
        """``ready``, unless the process has exited instead: then ``RuntimeError`` with its log."""
        assert self.proc is not None
        if not ready and self.proc.poll() is not None:
            raise RuntimeError(f"{self._what()} exited with {self.proc.returncode}:\n{self.log}")
        return ready

    def _take_ready(self) -> bool:
        for msg in self.drain_notices():
            if self.ready is None and msg.get("READY") == "1":
                self.ready = msg
        return self.ready is not None

    def _answers(self) -> bool:
        from ult_actors.client import Client, UltError

        assert self.socket is not None
        try:
            with Client(self.socket, timeout=5) as client:
                client.ping()
        except (UltError, OSError):
            return False
        return True

    async def _aanswers(self) -> bool:
        from ult_actors.client import AsyncClient, UltError

        assert self.socket is not None
        try:
            async with AsyncClient(self.socket, timeout=5) as client:
                await client.ping()
        except (UltError, OSError):
            return False
        return True

    def _read_ports(self) -> bool:
        # The simulators print their addresses, then a blank line, then anything else.
        head = self.log.split("\n\n")[0]
        self.ports = [int(p) for p in _PORT.findall(head)]
        return bool(self.ports)

    def drain_notices(self) -> list[dict[str, str]]:
        """Notify messages that arrived since the last look (also appended to ``notices``)."""
        if self.notify is None:
            return []
        got = self.notify.drain()
        self.notices.extend(got)
        return got

    async def notice(self, key: str, value: str | None = None) -> dict[str, str]:
        """Wait for the next notify message carrying ``key`` (= ``value``); wrap in ``fail_after``."""
        assert self.notify is not None, "started without notify=True"
        msg = await self.notify.wait_for(key, value)
        self.notices = list(self.notify.messages)
        return msg

    # --- stopping ----------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def signal(self, sig: int) -> None:
        """Send ``sig`` if the process still runs."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then SIGKILL if it has not gone within ``timeout``; the exit code."""
        self.signal(signal.SIGTERM)
        return self._reap(timeout)

    async def astop(self, timeout: float = 15.0) -> int:
        """``stop`` for trio code."""
        self.signal(signal.SIGTERM)
        return await trio.to_thread.run_sync(self._reap, timeout)

    def _reap(self, timeout: float) -> int:
        if self.proc is None:
            return 0
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.drain_notices()
        return self.proc.returncode

    def kill9(self) -> None:
        """SIGKILL: no shutdown, no flush, no clean-up (a stale socket stays behind)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def wait_exit(self, timeout: float = 30.0) -> int:
        """The exit code of a process expected to end by itself."""
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        self.drain_notices()
        return code

    async def await_exit(self, timeout: float = 30.0) -> int:
        """``wait_exit`` for trio code."""
        return await trio.to_thread.run_sync(self.wait_exit, timeout)

    def cleanup(self) -> None:
        """Stop the process (SIGKILL if it hangs), close the notify socket, remove an own home."""
        if self.alive:
            self.stop()
        self._close_notify()
        if self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def _close_notify(self) -> None:
        if self.notify is not None:
            self.drain_notices()
            self.notify.close()
            self.notify = None

    def __enter__(self) -> UltProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    # --- what it said ------------------------------------------------------------

    @property
    def log(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self, event: str) -> list[dict[str, Any]]:
        """The JSON log lines whose ``event`` is ``event``."""
        out = []
        for line in self.log.splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("event") == event:
                    out.append(entry)
        return out

    def wait_log(self, text: str, timeout: float = 10.0) -> str:
        """The log once it contains ``text``: lines are written by a thread of their own
        a moment after they are logged (``AssertionError`` after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while text not in (log := self.log):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self._what()}: no {text!r} in its log after {timeout} s")
            time.sleep(0.02)
        return log

    @property
    def journal(self) -> Path:
        """The journal file of a ``serve`` process."""
        assert self.state_dir is not None, "not started with UltProcess.serve"
        return self.state_dir / "journal.db"

    def _env(self) -> dict[str, str]:
        if self.clean:
            env = clean_env(self.home)
        else:
            env = {k: v for k, v in os.environ.items() if k not in _INHERITED_NOT}
        env.update(self.extra_env)
        return env

    def _what(self) -> str:
        return " ".join(self.argv[2:4]) if self.argv[1:2] == ["-m"] else self.argv[0]
