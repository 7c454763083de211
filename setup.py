"""Build ult-actors pure Python (the default) or with its hot path compiled by mypyc.

``ULT_COMPILE=1 pip install [-e] .`` compiles the modules listed in
``ult_actors/compiled.py`` (``MODULES``); anything else builds pure Python.
Without a C compiler or Python's headers a compiled build warns and installs
pure Python. ``MYPYC_OPT_LEVEL`` (default 3) is the C compiler's ``-O`` level.
docs/architecture.md, "The compiled build", says why and what a developer must know.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import tomllib
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
PACKAGE = HERE / "ult_actors"
# compiled.py is stdlib only, so it runs here before anything is installed.
compiled: dict[str, Any] = runpy.run_path(str(PACKAGE / "compiled.py"))
MODULES: tuple[str, ...] = compiled["MODULES"]
# mypyc's shared library of every compiled module's code, inside the package (a
# top-level module would sit outside what an editable install maps).
SHARED_LIB_GROUP = "ult_actors._hot_path"
#: How many C libraries the compiled modules are split into (``groups``).
GROUPS = 2
#: setup.py runs once per PEP 517 step; only these steps build (the others ask for
#: requirements or metadata, and must not pay mypyc's type-check).
BUILD_COMMANDS = {"build", "build_ext", "bdist_wheel", "editable_wheel", "develop", "install"}


def _say(message: str) -> None:
    print(f"ult-actors setup.py: {message}", file=sys.stderr)


class StampingBuildExt(build_ext):
    """build_ext that stamps what it compiled: each compiled source's digest as mypyc
    read it, which lets ``ult_actors`` refuse to run compiled code older than its ``.py``."""

    digests: dict[str, str] = {}

    def finalize_options(self) -> None:
        super().finalize_options()
        if not self.parallel:
            # The compiled groups' C compiled at once, one per core (see ``groups``).
            self.parallel = os.cpu_count() or 1

    def run(self) -> None:
        super().run()
        if not self.extensions:
            return
        in_tree = self.inplace or getattr(self, "editable_mode", False)
        package_dir = PACKAGE if in_tree else Path(self.build_lib) / "ult_actors"
        package_dir.mkdir(parents=True, exist_ok=True)
        stamp = json.dumps(self.digests, indent=1)
        (package_dir / compiled["STAMP"]).write_text(stamp + "\n")


def remove_compiled_files() -> None:
    """Clear a compiled build from the tree: its ``.so`` files would shadow the ``.py``
    files of the pure editable install being made."""
    # Every extension file in the package, not only the listed modules': a module taken off
    # the list would otherwise keep its old .so, which imports from a library that no
    # longer has it. The package has no C extensions of its own besides these.
    gone = sorted({path for suffix in EXTENSION_SUFFIXES for path in PACKAGE.rglob(f"*{suffix}")})
    gone += [PACKAGE / compiled["STAMP"]]
    for path in gone:
        if path.exists():
            _say(f"pure build: removing {path.relative_to(HERE)}")
            path.unlink()


def extensions(argv: list[str]) -> tuple[list[Any], list[str]]:
    """The compiled extensions, and the build's extra requirements (asked of the
    frontend before mypy is there to compile with)."""
    building = not BUILD_COMMANDS.isdisjoint(argv)
    compile_wanted = os.environ.get("ULT_COMPILE", "").strip().lower() in ("1", "true", "yes")
    missing = compiled["missing_toolchain"]() if compile_wanted else None
    if missing is not None:
        _say(f"warning: ULT_COMPILE=1 but {missing}: installing pure Python (slower)")
    if not compile_wanted or missing is not None:
        if building and "editable_wheel" in argv:
            remove_compiled_files()
        return [], []
    try:
        from mypyc.build import mypycify
    except ImportError:
        # mypyc type-checks the program, so it needs the dependencies' types too: the
        # optional clients' as well, since compiled modules import modules that use them
        # (the client package its NATS transport, the journal package its PostgreSQL store).
        project = tomllib.loads((HERE / "pyproject.toml").read_text())["project"]
        optional = project["optional-dependencies"]
        return [], [
            "mypy>=1.10",
            *project["dependencies"],
            *optional["postgres"],
            *optional["nats"],
        ]
    if not building:
        return [], []
    if "editable_wheel" in argv or "--inplace" in argv:
        remove_compiled_files()  # a module taken off the list must not keep its .so
    sources = {module: compiled["source_path"](module, PACKAGE) for module in MODULES}
    StampingBuildExt.digests = {m: compiled["source_digest"](p) for m, p in sources.items()}
    paths = [str(path.relative_to(HERE)) for path in sources.values()]
    built = mypycify(
        paths,
        opt_level=os.environ.get("MYPYC_OPT_LEVEL", "3"),
        separate=[(group, f"{SHARED_LIB_GROUP}_{n}") for n, group in enumerate(groups(paths))],
    )
    return built, []


def groups(paths: list[str], count: int = GROUPS) -> list[list[str]]:
    """``paths`` in ``count`` groups of about equal source size, each one C library.

    Almost all of the build is the C compiler on a group's one C file, so two groups
    take about half the time on two cores (CI's); a call from one group into another
    costs a little more than one within a group (under 1 % of an order, measured).
    """
    sized = sorted(paths, key=lambda path: (-(HERE / path).stat().st_size, path))
    out: list[list[str]] = [[] for _ in range(count)]
    totals = [0] * count
    for path in sized:
        smallest = totals.index(min(totals))
        out[smallest].append(path)
        totals[smallest] += (HERE / path).stat().st_size
    return [group for group in out if group]


ext_modules, setup_requires = extensions(sys.argv[1:])
setup(
    ext_modules=ext_modules,
    setup_requires=setup_requires,
    cmdclass={"build_ext": StampingBuildExt},
)
