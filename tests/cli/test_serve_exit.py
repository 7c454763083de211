"""`ult serve` exit codes: a tree that cannot run exits after one line saying why.

Exit 1 (systemd restarts it) is for failures a fresh process may not meet;
exit 2 (``RestartPreventExitStatus=2``) for a configuration or environment a
restart cannot fix: corrupt or locked journal, read-only state directory, a
non-socket file at the socket path, a symlinked lock file.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ult_actors.testing.process import run_ult


@pytest.fixture
def root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        (Path(tmp) / "run").mkdir(mode=0o700)
        yield Path(tmp)


def serve(root: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """Run ``ult serve`` in ``root`` until it exits; its JSON log lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ULT_", "NOTIFY_"))}
    args = ["--socket", str(root / "run" / "ult.sock"), "--state-dir", str(root / "state"),
            "--log-format", "json", *extra]
    proc = run_ult("serve", *args, env=env, timeout=60)
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    return proc, lines


def the_error(proc: subprocess.CompletedProcess[str], lines: list[dict[str, Any]]) -> str:
    """The one line of level error/critical saying why it stopped; no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    final = [line for line in lines if line.get("level") in ("error", "critical")]
    assert len(final) == 1, proc.stderr
    return str(final[0].get("error"))


def test_a_journal_path_inside_a_regular_file_exits_2_naming_the_child_and_path(
    root: Path,
) -> None:
    (root / "not-a-dir").write_text("")
    config = root / "ult.toml"
    # The journal cannot be created inside a regular file: nothing a restart fixes.
    config.write_text(f'[journal]\npath = "{root}/not-a-dir/journal.db"\n')
    proc, lines = serve(root, "--config", str(config))
    assert proc.returncode == 2
    final = [line for line in lines if line.get("level") == "critical"]
    assert len(final) == 1
    assert final[0]["child"] == "journal"
    assert f"{root}/not-a-dir" in final[0]["error"]
    assert not (root / "run" / "ult.sock").exists()  # the socket never opened on a broken tree


def test_a_corrupt_journal_exits_2_naming_the_file(root: Path) -> None:
    state = root / "state"
    state.mkdir(mode=0o700)
    (state / "journal.db").write_bytes(b"this is not an SQLite file\n" * 200)
    proc, lines = serve(root)
    assert proc.returncode == 2, proc.stderr
    error = the_error(proc, lines)
    assert f"journal {state / 'journal.db'} is corrupt" in error


def test_a_journal_locked_by_another_process_exits_2(root: Path) -> None:
    state = root / "state"
    state.mkdir(mode=0o700)
    with open(state / "journal.db.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a second service would
        proc, lines = serve(root)
    assert proc.returncode == 2, proc.stderr
    assert "in use by another ult process" in the_error(proc, lines)


@contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Make ``directory`` unwritable, for root too (root ignores mode bits)."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(directory)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
    else:
        directory.chmod(0o500)
        try:
            yield
        finally:
            directory.chmod(0o700)


def test_a_read_only_state_directory_exits_2_naming_it(root: Path) -> None:
    state = root / "state"
    state.mkdir(mode=0o700)
    # The state of an earlier run: a journal whose lock and WAL cannot be created now.
    conn = sqlite3.connect(state / "journal.db")
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    with read_only(state):
        proc, lines = serve(root)
    assert proc.returncode == 2, proc.stderr
    error = the_error(proc, lines)
    assert str(state / "journal.db") in error and "read-only" in error


def test_a_non_socket_file_at_the_socket_path_exits_2(root: Path) -> None:
    sock = root / "run" / "ult.sock"
    sock.write_text("someone's file\n")
    proc, lines = serve(root)
    assert proc.returncode == 2, proc.stderr
    assert f"{sock} exists and is not a socket" in the_error(proc, lines)
    assert sock.read_text() == "someone's file\n"  # left alone


@pytest.mark.parametrize("which", ["socket", "journal"])
def test_a_symlinked_lock_file_is_a_clean_error_naming_it_exit_2(root: Path, which: str) -> None:
    state = root / "state"
    state.mkdir(mode=0o700)
    target = root / "elsewhere"
    target.write_text("")
    lock = root / "run" / "ult.sock.lock" if which == "socket" else state / "journal.db.lock"
    lock.symlink_to(target)
    proc, lines = serve(root)
    assert proc.returncode == 2, proc.stderr
    assert f"lock file {lock} is a symbolic link" in the_error(proc, lines)
    assert target.read_text() == ""  # nothing written through the link


def test_the_unit_file_does_not_restart_after_exit_2() -> None:
    unit = Path(__file__).resolve().parents[2] / "systemd" / "ult-actors.service"
    lines = [line.strip() for line in unit.read_text().splitlines()]
    assert "Restart=on-failure" in lines
    assert "RestartPreventExitStatus=2" in lines
