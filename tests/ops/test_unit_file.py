"""The shipped unit file: systemd accepts it without a word, and its hardening holds.

``systemd-analyze verify`` fails when ``ExecStart``'s binary is missing, so the
test checks a copy whose binary is this checkout's ``ult`` (the installed path,
``/opt/ult-actors/venv/bin/ult``, exists only after ``scripts/install-systemd``);
every other line is the shipped one. ``verify`` only *warns* about an unknown
key and still exits 0, so any stderr at all counts as a failure.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "ult-actors.service"
INSTALLED_ULT = "/opt/ult-actors/venv/bin/ult"
#: Exposure measured when the unit was written (``systemd-analyze security``, 252);
#: a change that loosens the hardening fails here.
MAX_EXPOSURE = 1.2

analyze = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(analyze is None, reason="systemd-analyze is not installed")


def local_ult() -> str:
    candidate = Path(sys.executable).with_name("ult")
    found = str(candidate) if candidate.exists() else shutil.which("ult")
    if found is None:
        pytest.skip("the ult entry point is not installed in this environment")
    return found


@pytest.fixture
def unit_copy() -> Iterator[Path]:
    """The shipped unit in a temp dir, ExecStart pointing at this checkout's ``ult``."""
    text = UNIT.read_text()
    assert INSTALLED_ULT in text
    workdir = Path(tempfile.mkdtemp(prefix="ultu", dir="/tmp"))
    copy = workdir / UNIT.name
    copy.write_text(text.replace(INSTALLED_ULT, local_ult()))
    yield copy
    shutil.rmtree(workdir, ignore_errors=True)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    assert analyze is not None
    return subprocess.run(
        [analyze, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_systemd_analyze_verify_accepts_the_unit_without_any_warning(unit_copy: Path) -> None:
    result = run("verify", str(unit_copy))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_verify_would_catch_a_misspelled_key(unit_copy: Path) -> None:
    # The guard above is only worth something if verify speaks up on a typo.
    unit_copy.write_text(unit_copy.read_text().replace("NoNewPrivileges=", "NoNewPrivilege="))
    result = run("verify", str(unit_copy))
    assert "NoNewPrivilege" in result.stderr


def test_the_hardening_keeps_the_exposure_at_or_below_the_measured_score(
    unit_copy: Path,
) -> None:
    result = run("security", "--offline=true", str(unit_copy))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    exposure = float(match.group(1))
    print(f"systemd-analyze security exposure: {exposure}")
    assert exposure <= MAX_EXPOSURE
