"""Which modules the compiled build compiles with mypyc, and whether they run compiled.

``MODULES`` is the one list: ``setup.py`` compiles these (when ``ULT_COMPILE=1``),
the CI's guard test checks them, ``ult --version`` reports them. Adding a module
is adding its line. Stdlib only: ``setup.py`` and ``scripts/_venv.sh`` run this
file before anything is installed (``python ult_actors/compiled.py --help``).

A compiled module is a ``.so`` beside its ``.py``, and Python imports the ``.so``
first, so an edit of the ``.py`` would silently not run. The build therefore writes
``STAMP``, each compiled module's source digest at build time, and
``ult_actors/__init__.py`` calls ``refuse_stale`` before any module loads.
"""

from __future__ import annotations

import json
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Literal

#: The order's hot path, compiled in the compiled build (docs/architecture.md).
MODULES: tuple[str, ...] = (
    "ult_actors.brokers.paper.venue",
    "ult_actors.brokers.paper.account",
    "ult_actors.holding",
    "ult_actors.runtime.direct",
    "ult_actors.recent",
    "ult_actors.order_state",
    "ult_actors.actors.risk",
    "ult_actors.actors.positions",
    "ult_actors.fills",
    "ult_actors.actors.router",
    "ult_actors.validation",
    "ult_actors.actors.broker",
    "ult_actors.runtime.mailbox",  # not mailbox_errors: its classes subclass builtin errors
    "ult_actors.runtime.pubsub",
    "ult_actors.runtime.actor",
    "ult_actors.actors.lookup",
    "ult_actors.actors.journal",
    "ult_actors.report.arrival",
    "ult_actors.ipc.dispatch",
    "ult_actors.ipc.framing",
    "ult_actors.ipc.outbox",
    "ult_actors.ipc.connection",
    "ult_actors.brokers.paper.exchange",
    "ult_actors.brokers.paper.feed",
    "ult_actors.brokers.paper.unfiled",
    "ult_actors.brokers.paper.store",
    "ult_actors.journal.seen",  # the fold's thread and each new submit's lacks()
    "ult_actors.journal.sqlite",  # not journal_event, running: see their docstrings
    "ult_actors.segment_log",  # the journal's and the paper file's appends
    "ult_actors.journal.log_sync",
    "ult_actors.logrender",  # the log writer's thread: a line's render holds the GIL
    "ult_actors.logwriter",  # not logstats: its Struct takes class keywords
    "ult_actors.brokers.paper.batch",  # not paper.records: its Structs take class keywords
    "ult_actors.brokers.paper.changelog",
    "ult_actors.brokers.paper.writer",
    "ult_actors.client._requests",  # the client's: not _call, _event_stream (docstrings)
    "ult_actors.client._connection",
    "ult_actors.client._trio_socket",
    "ult_actors.client._async",
    "ult_actors.client._blocking",
    "ult_actors.sqlite_insert",  # the fold's and the paper writer's statements, every round
    "ult_actors.journal.changelog",  # not journal.log_record: its Struct takes class keywords
    "ult_actors.brokers.paper.connector",  # answer_now, price: called per order
    "ult_actors.actors.gateway",  # handle, _submit: every request's way into the actors
)

#: Written by the compiled build beside this file: {module: digest of its source}.
STAMP = "_compiled_sources.json"

_PACKAGE_DIR = Path(__file__).resolve().parent


def source_path(module: str, package_dir: Path = _PACKAGE_DIR) -> Path:
    """The ``.py`` file of ``module`` (a name from ``MODULES``) under ``package_dir``."""
    return package_dir.joinpath(*module.split(".")[1:]).with_suffix(".py")


def extension_paths(module: str, package_dir: Path = _PACKAGE_DIR) -> list[Path]:
    """The compiled extension files of ``module`` that exist under ``package_dir``."""
    source = source_path(module, package_dir)
    candidates = (source.with_name(source.stem + suffix) for suffix in EXTENSION_SUFFIXES)
    return [path for path in candidates if path.exists()]


def source_digest(path: Path) -> str:
    """The digest the stamp records for a source file (its bytes' SHA-256)."""
    import hashlib  # here: every start imports this module, most never hash (pure build)

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _source_is(path: Path, digest: str) -> bool:
    try:
        return source_digest(path) == digest
    except FileNotFoundError:
        return False


class StaleCompiledModule(ImportError):
    """A compiled module's ``.py`` changed after it was compiled."""


def stale_modules(package_dir: Path = _PACKAGE_DIR) -> list[str] | None:
    """The compiled modules whose source changed since their build; ``None``: no
    compiled build here (no stamp)."""
    try:
        stamp: dict[str, str] = json.loads((package_dir / STAMP).read_text())
    except FileNotFoundError:
        return None
    return [
        module
        for module, digest in stamp.items()
        if extension_paths(module, package_dir)
        and not _source_is(source_path(module, package_dir), digest)
    ]


def refuse_stale(package_dir: Path = _PACKAGE_DIR) -> None:
    """Raise ``StaleCompiledModule`` if a compiled module's source changed since its build.

    Without a stamp (the pure build) this is one failed ``open``.
    """
    stale = stale_modules(package_dir)
    if stale:
        raise StaleCompiledModule(
            f"ult_actors: the compiled build is older than {', '.join(stale)}, and its old "
            "code would run instead. Rebuild (ULT_COMPILE=1 pip install -e .) or go back "
            "to pure Python (pip install -e .); docs/architecture.md, 'The compiled build'."
        )


def build_state(package_dir: Path = _PACKAGE_DIR) -> Literal["pure", "compiled", "stale"]:
    """What the tree holds: no compiled build, a current one of every listed module,
    or one that needs building again (a source changed, the list changed, a file gone)."""
    stale = stale_modules(package_dir)
    if stale is None:
        return "pure"
    stamp: dict[str, str] = json.loads((package_dir / STAMP).read_text())
    complete = set(stamp) == set(MODULES) and all(
        extension_paths(module, package_dir) for module in MODULES
    )
    return "compiled" if complete and not stale else "stale"


def missing_toolchain() -> str | None:
    """What stops a compiled build with this interpreter (no C compiler, no headers)."""
    import shutil  # here, as the build alone asks: not on every start
    import sysconfig

    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler})"
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.exists():
        return f"no Python headers ({headers}; Debian: apt-get install python3-dev)"
    return None


def compiled_modules() -> list[str]:
    """The modules of ``MODULES`` that import as compiled extensions (without importing them)."""
    import importlib.util  # here, as only ``ult --version`` and the tests ask

    compiled = []
    for module in MODULES:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin is not None and spec.origin.endswith(".so"):
            compiled.append(module)
    return compiled


def describe() -> str:
    """``compiled (N modules)`` or ``pure Python``: what an operator reads in ``ult --version``."""
    count = len(compiled_modules())
    if count == 0:
        return "pure Python"
    partly = "" if count == len(MODULES) else f" of {len(MODULES)}"
    return f"compiled ({count}{partly} modules)"


def _main(args: list[str]) -> int:
    if args == ["--toolchain"]:
        missing = missing_toolchain()
        print(missing or "ok")
        return 0 if missing is None else 1
    if args:
        print(
            "usage: python ult_actors/compiled.py [--toolchain]\n"
            "  prints this tree's build: pure | compiled | stale (compiled, needs building);\n"
            "  --toolchain: ok, or what a compiled build lacks here",
            file=sys.stderr,
        )
        return 2
    print(build_state())
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
