"""Where the service's socket lives: one rule, shared by the server and every client.

In order: an explicit path (``--socket`` or ``[ipc] socket``), ``$ULT_SOCKET``,
``$RUNTIME_DIRECTORY/ult.sock`` (systemd's ``RuntimeDirectory=``),
``$XDG_RUNTIME_DIR/ult/ult.sock``, and finally ``/tmp/ult-$UID/ult.sock``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ult_actors.errors import ConfigError

SOCKET_NAME = "ult.sock"
#: ``sun_path`` of AF_UNIX holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107


class SocketLocation:
    """A resolved socket path and whether its directory belongs to the service alone.

    ``dedicated`` directories (the systemd runtime directory, ``$XDG_RUNTIME_DIR/ult``,
    ``/tmp/ult-$UID``) may be created and tightened by the server; a directory
    named explicitly by the user is created if missing but never chmod-ed.
    """

    __slots__ = ("dedicated", "path", "source")

    def __init__(self, path: Path, *, dedicated: bool, source: str) -> None:
        self.path = path
        self.dedicated = dedicated
        #: What chose this path, for messages ("--socket", "ULT_SOCKET", ...).
        self.source = source

    def __repr__(self) -> str:
        return f"SocketLocation({str(self.path)!r}, source={self.source!r})"


def resolve_socket(
    explicit: str | None = None,
    env: Mapping[str, str] | None = None,
    uid: int | None = None,
) -> SocketLocation:
    """The socket path by the documented order; raises ``ConfigError`` if it is too long."""
    env = os.environ if env is None else env
    uid = os.getuid() if uid is None else uid
    if explicit:
        loc = SocketLocation(Path(explicit), dedicated=False, source="--socket")
    elif env.get("ULT_SOCKET"):
        loc = SocketLocation(Path(env["ULT_SOCKET"]), dedicated=False, source="ULT_SOCKET")
    elif env.get("RUNTIME_DIRECTORY"):
        # systemd may list several directories separated by colons; ours is the first.
        base = Path(env["RUNTIME_DIRECTORY"].split(":")[0])
        loc = SocketLocation(base / SOCKET_NAME, dedicated=True, source="RUNTIME_DIRECTORY")
    elif env.get("XDG_RUNTIME_DIR"):
        base = Path(env["XDG_RUNTIME_DIR"]) / "ult"
        loc = SocketLocation(base / SOCKET_NAME, dedicated=True, source="XDG_RUNTIME_DIR")
    else:
        base = Path(f"/tmp/ult-{uid}")
        loc = SocketLocation(base / SOCKET_NAME, dedicated=True, source="default")
    if len(os.fsencode(loc.path)) > MAX_SOCKET_PATH_BYTES:
        raise ConfigError(
            f"socket path {loc.path} is {len(os.fsencode(loc.path))} bytes; a Unix socket path"
            f" may have at most {MAX_SOCKET_PATH_BYTES} (choose a shorter --socket)"
        )
    return loc
