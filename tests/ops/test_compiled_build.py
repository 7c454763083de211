"""The compiled build: the suite runs against it when meant to, and stale code never runs.

CI runs the suite with ``ULT_COMPILE=1`` (``.ci/run``), against the hot path
compiled by mypyc as it is deployed; if the build fell back to pure Python
unnoticed, the guard here fails. The rest holds for any build: a compiled
module whose ``.py`` changed since its build is refused, not run.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from ult_actors import __version__
from ult_actors.compiled import (
    MODULES,
    STAMP,
    StaleCompiledModule,
    build_state,
    compiled_modules,
    refuse_stale,
    source_digest,
)


@pytest.mark.skipif(
    os.environ.get("ULT_COMPILE") != "1", reason="the suite runs pure Python (not ULT_COMPILE=1)"
)
def test_every_listed_module_runs_compiled_when_the_suite_is_meant_to() -> None:
    assert compiled_modules() == list(MODULES)
    for name in MODULES:
        module = importlib.import_module(name)
        assert module.__file__ is not None and module.__file__.endswith(".so"), name


def _fake_build(package: Path, sources: dict[str, str]) -> None:
    """A package dir with ``sources`` (module -> text), each "compiled" and stamped."""
    stamp = {}
    for module, text in sources.items():
        path = package.joinpath(*module.split(".")[1:]).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.with_name(path.stem + EXTENSION_SUFFIXES[0]).write_bytes(b"")
        stamp[module] = source_digest(path)
    (package / STAMP).write_text(json.dumps(stamp))


def test_a_compiled_module_edited_since_its_build_is_refused(tmp_path: Path) -> None:
    _fake_build(tmp_path, {"ult_actors.recent": "A = 1\n", "ult_actors.actors.risk": "B = 1\n"})
    refuse_stale(tmp_path)  # as built: runs
    (tmp_path / "actors" / "risk.py").write_text("B = 2\n")
    with pytest.raises(StaleCompiledModule, match=r"ult_actors\.actors\.risk"):
        refuse_stale(tmp_path)


def test_an_edit_is_no_matter_once_its_compiled_file_is_gone(tmp_path: Path) -> None:
    _fake_build(tmp_path, {"ult_actors.recent": "A = 1\n"})
    (tmp_path / "recent.py").write_text("A = 2\n")
    (tmp_path / f"recent{EXTENSION_SUFFIXES[0]}").unlink()
    refuse_stale(tmp_path)  # the .py is what runs


def test_the_tree_s_build_state_says_when_to_build_again(tmp_path: Path) -> None:
    assert build_state(tmp_path) == "pure"  # no stamp: nothing compiled
    _fake_build(tmp_path, {name: f"# {name}\n" for name in MODULES})
    assert build_state(tmp_path) == "compiled"
    (tmp_path / "recent.py").write_text("# edited\n")
    assert build_state(tmp_path) == "stale"
    _fake_build(tmp_path, {name: f"# {name}\n" for name in MODULES[1:]})
    assert build_state(tmp_path) == "stale"  # the list grew since this build


def test_ult_version_says_whether_the_hot_path_is_compiled() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ult_actors.cli", "--version"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    build = f"compiled ({len(MODULES)} modules)" if compiled_modules() else "pure Python"
    assert done.stdout == f"ult-actors {__version__} ({build})\n"
