"""A throwaway PostgreSQL cluster for tests and runs: initdb in a temporary directory,
served on a Unix socket and 127.0.0.1 on a free port, a fresh database per user.

PostgreSQL refuses to run as root, so under root the server runs as the
``postgres`` user (or ``nobody``) with its directory handed to it.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

#: The role that must log in with a password (``PgServer.password_role``).
PASSWORD_ROLE = "ult_pw"


def find_bin_dir() -> Path | None:
    """Where ``initdb`` and ``postgres`` are: on PATH, or Debian's versioned directory."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    return Path(found[-1]).parent if found else None


def _version_key(path: str) -> int:
    try:
        return int(Path(path).parent.parent.name)
    except ValueError:
        return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One running cluster; ``new_database()`` hands each test its own database."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="ult-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._run_as: str | None = None
        if os.geteuid() == 0:
            self._run_as = _unprivileged_user()
            entry = pwd.getpwnam(self._run_as)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._names = itertools.count(1)

    def _cmd(self, *args: str) -> list[str]:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        return ["runuser", "-u", self._run_as, "--", *cmd] if self._run_as else cmd

    def start(self) -> None:
        """initdb (the first time) and start the server; returns once it accepts connections."""
        if not self.data.exists():
            subprocess.run(
                self._cmd(
                    "initdb", "-D", str(self.data), "-U", "ult", "--auth=trust", "-E", "UTF8"
                ),
                check=True,
                capture_output=True,
            )
            # One role must give a password (the credential tests); every other is trusted.
            hba = self.data / "pg_hba.conf"
            hba.write_text(
                f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n" + hba.read_text()
            )
        options = (
            f"-p {self.port} -k {self.root} -h 127.0.0.1 -c fsync=off -c full_page_writes=off"
            " -c max_connections=200"
        )
        subprocess.run(
            self._cmd("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-o", options,
                      "-l", str(self.root / "log"), "start"),
            check=True,
            capture_output=True,
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate``: as if it crashed)."""
        subprocess.run(
            self._cmd("pg_ctl", "-D", str(self.data), "-w", "-m", mode, "stop"),
            check=False,
            capture_output=True,
        )

    def url(self, database: str = "postgres", user: str = "ult") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def password_role(self, database_url: str, password: str) -> str:
        """Make the password role (or set its password), owner of ``database_url``'s
        database; the URL for it there, without the password."""
        import psycopg

        database = database_url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (PASSWORD_ROLE,)
            ).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(f"{verb} ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{password}'")
            conn.execute(f"ALTER DATABASE {database} OWNER TO {PASSWORD_ROLE}")
        return self.url(database, user=PASSWORD_ROLE)

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            # PostgreSQL 15 copies the template through the WAL by default; with fsync
            # off a plain file copy is several times faster (the suite makes dozens).
            copy = " STRATEGY FILE_COPY" if conn.info.server_version >= 150000 else ""
            conn.execute(f"CREATE DATABASE {name}{copy}")
        return self.url(name)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("no unprivileged user (postgres, nobody) to run PostgreSQL as")
