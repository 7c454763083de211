"""scripts/install-systemd: refuses without root, stages a complete install, and running it twice changes nothing.

The install runs with ``--destdir`` (every file under a temp root, no user, no
systemctl) and a stand-in ``venv/bin/python`` that records the pip call, so the
test needs neither root nor the network.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ult_actors.secrets import CREDENTIAL_NAMES

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "install-systemd"


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        input=stdin, capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.fixture
def destdir() -> Iterator[Path]:
    if not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("the script's default interpreter /usr/bin/python3 is missing")
    root = Path(tempfile.mkdtemp(prefix="ulti", dir="/tmp"))
    fake = root / "opt/ult-actors/venv/bin/python"
    fake.parent.mkdir(parents=True)
    fake.write_text('#!/bin/sh\necho "ULT_COMPILE=$ULT_COMPILE $*" >> "$(dirname "$0")/pip-calls"\n')
    fake.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def tree(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file and directory under ``root``: mode and content."""
    out = {}
    for path in sorted(root.rglob("*")):
        mode = stat.S_IMODE(path.lstat().st_mode)
        out[str(path.relative_to(root))] = (mode, path.read_bytes() if path.is_file() else b"")
    return out


def test_help_lists_install_credentials_and_uninstall() -> None:
    done = run("--help")
    assert done.returncode == 0
    for option in ("--set-credential", "--uninstall", "--purge", "--start", "--check"):
        assert option in done.stdout


def test_it_refuses_to_install_without_root() -> None:
    if os.getuid() != 0:
        done = run("--start")
    else:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and setpriv is missing")
        # A copy nobody (uid 65534) can read, wherever the checkout lives (CI may keep it under /root).
        workdir = Path(tempfile.mkdtemp(prefix="ulti", dir="/tmp"))
        try:
            workdir.chmod(0o755)
            (workdir / "scripts").mkdir(mode=0o755)
            copy = workdir / "scripts" / SCRIPT.name
            shutil.copy(SCRIPT, copy)
            copy.chmod(0o755)
            done = subprocess.run(
                [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "bash", str(copy),
                 "--start"],
                capture_output=True, text=True, timeout=60, check=False, cwd="/",
            )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    assert done.returncode == 1, done.stderr
    assert "must run as root" in done.stderr


def test_a_staged_install_is_complete_and_idempotent(destdir: Path) -> None:
    first = run("--destdir", str(destdir))
    assert first.returncode == 0, first.stderr
    unit = destdir / "etc/systemd/system/ult-actors.service"
    assert unit.read_text() == (ROOT / "systemd/ult-actors.service").read_text()
    config = destdir / "etc/ult-actors/ult.toml"
    assert 'group = "ult-actors"' in config.read_text()
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert stat.S_IMODE((destdir / "etc/ult-actors").stat().st_mode) == 0o750
    assert stat.S_IMODE((destdir / "etc/credstore").stat().st_mode) == 0o700
    wrapper = (destdir / "usr/local/bin/ult").read_text()
    assert "ULT_SOCKET:=/run/ult-actors/ult.sock" in wrapper
    assert "exec /opt/ult-actors/venv/bin/ult" in wrapper
    assert "credential ALPACA_API_KEY not set" in first.stdout

    # The operator edits the config; a second run (an upgrade) keeps it and changes nothing else.
    config.write_text(config.read_text() + "\n[risk]\nmax_open_orders = 50\n")
    before = tree(destdir)
    second = run("--destdir", str(destdir))
    assert second.returncode == 0, second.stderr
    after = tree(destdir)
    calls = after.pop("opt/ult-actors/venv/bin/pip-calls")[1].decode().splitlines()
    before.pop("opt/ult-actors/venv/bin/pip-calls")
    assert after == before
    # Compiled wherever the interpreter can build C extensions (this host's answer).
    toolchain = subprocess.run(
        ["/usr/bin/python3", "-P", str(ROOT / "ult_actors/compiled.py"), "--toolchain"],
        capture_output=True, check=False,
    )
    compiled = int(toolchain.returncode == 0)
    pip = f"-m pip install --quiet --disable-pip-version-check --upgrade {ROOT}"
    assert calls == [f"ULT_COMPILE={compiled} {pip}"] * 2


def test_a_credential_is_read_from_stdin_into_a_root_only_file_and_never_echoed(
    destdir: Path,
) -> None:
    done = run("--destdir", str(destdir), "--set-credential", "OANDA_API_TOKEN",
               stdin="tok-not-for-eyes\n")
    assert done.returncode == 0, done.stderr
    stored = destdir / "etc/credstore/ult-actors.OANDA_API_TOKEN"
    assert stored.read_text() == "tok-not-for-eyes"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert "tok-not-for-eyes" not in done.stdout + done.stderr

    unknown = run("--destdir", str(destdir), "--set-credential", "AWS_KEY", stdin="x\n")
    assert unknown.returncode == 2
    assert "unknown credential AWS_KEY" in unknown.stderr


def test_every_credential_the_unit_loads_can_be_set(destdir: Path) -> None:
    for name in CREDENTIAL_NAMES:
        done = run("--destdir", str(destdir), "--set-credential", name, stdin="v\n")
        assert done.returncode == 0, done.stderr
        assert (destdir / f"etc/credstore/ult-actors.{name}").read_text() == "v"


def test_uninstall_keeps_config_state_and_secrets_unless_purged(destdir: Path) -> None:
    assert run("--destdir", str(destdir)).returncode == 0
    assert run("--destdir", str(destdir), "--set-credential", "ALPACA_API_KEY",
               stdin="k\n").returncode == 0
    state = destdir / "var/lib/ult-actors"
    state.mkdir(parents=True)
    (state / "journal.db").write_text("orders")

    kept = run("--destdir", str(destdir), "--uninstall")
    assert kept.returncode == 0, kept.stderr
    assert not (destdir / "etc/systemd/system/ult-actors.service").exists()
    assert not (destdir / "opt/ult-actors").exists()
    assert not (destdir / "usr/local/bin/ult").exists()
    assert (destdir / "etc/ult-actors/ult.toml").exists()
    assert (state / "journal.db").exists()
    assert (destdir / "etc/credstore/ult-actors.ALPACA_API_KEY").exists()

    purged = run("--destdir", str(destdir), "--uninstall", "--purge")
    assert purged.returncode == 0, purged.stderr
    assert not (destdir / "etc/ult-actors").exists()
    assert not state.exists()
    assert not (destdir / "etc/credstore/ult-actors.ALPACA_API_KEY").exists()


def test_an_interpreter_the_unit_cannot_see_is_refused(destdir: Path) -> None:
    done = run("--destdir", str(destdir), "--python", "/root/.pyenv/shims/python3")
    assert done.returncode == 1
    assert "ProtectHome" in done.stderr
