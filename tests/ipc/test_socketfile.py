"""The socket on disk: private directory, one live instance per path, stale files replaced."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.ipc.harness import ipc_service, settings_for
from ult_actors.client import AsyncClient
from ult_actors.ipc.server import serve_ipc
from ult_actors.ipc.socketfile import (
    AlreadyRunning,
    InstanceLock,
    SocketPathError,
    prepare_directory,
)

_UNUSED: Any = None  # the gateway: these servers fail before serving anyone


async def test_a_stale_socket_left_by_a_dead_process_is_replaced(sock_dir: Path) -> None:
    path = sock_dir / "s"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # bound, never listening, then gone: what a kill -9 leaves
    dead.close()
    assert path.exists()
    async with ipc_service(sock_dir) as (_svc, served):
        assert served == path
        with trio.fail_after(10):
            async with AsyncClient(path) as client:
                await client.ping()


async def test_a_live_service_on_the_path_makes_the_next_one_fail_naming_its_pid(
    sock_dir: Path,
) -> None:
    path = sock_dir / "s"
    holder = InstanceLock.acquire(path)
    try:
        with pytest.raises(AlreadyRunning, match=rf"already running, pid {os.getpid()}"):
            await serve_ipc(_UNUSED, settings_for(path))
    finally:
        holder.release()
    # Released (as when the holder dies): the path can be claimed again.
    InstanceLock.acquire(path).release()


async def test_a_file_that_is_not_a_socket_is_never_replaced(sock_dir: Path) -> None:
    (sock_dir / "s").write_text("precious")
    with pytest.raises(SocketPathError, match="exists and is not a socket"):
        await serve_ipc(_UNUSED, settings_for(sock_dir / "s"))
    assert (sock_dir / "s").read_text() == "precious"


def test_a_named_directory_others_can_enter_is_refused_and_a_dedicated_one_tightened(
    sock_dir: Path,
) -> None:
    open_dir = sock_dir / "open"
    open_dir.mkdir()
    open_dir.chmod(0o755)
    with pytest.raises(SocketPathError, match="mode 0755: other users can enter it"):
        prepare_directory(open_dir, dedicated=False, group_gid=None)
    prepare_directory(open_dir, dedicated=True, group_gid=None)
    assert stat.S_IMODE(open_dir.stat().st_mode) == 0o700
    fresh = sock_dir / "new" / "deeper"
    prepare_directory(fresh, dedicated=False, group_gid=None)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
