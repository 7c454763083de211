"""The socket on disk: a private directory, one instance per path, no moment it is open.

- The directory is created with mode 0700 (0750 when a group may connect),
  and must belong to the service's user; a directory the service owns by
  design (``RuntimeDirectory=``, ``$XDG_RUNTIME_DIR/ult``, ``/tmp/ult-$UID``)
  is tightened if it is laxer, a directory the user named is refused.
- ``InstanceLock`` is an ``flock`` on ``<socket>.lock`` holding the owner's
  pid. The kernel releases it when the process dies, so a socket file left by
  a dead process is recognised as stale and replaced, while a live service
  makes the next one fail with "already running, pid N".
- The socket is bound under a umask that leaves it 0600; only then is its
  group changed and the mode widened to 0660, so it is never connectable by
  anyone it should not be.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
from pathlib import Path

from ult_actors.errors import ConfigError
from ult_actors.lockfile import open_lock_file


class AlreadyRunning(RuntimeError):
    """Another live service holds this socket path."""

    def __init__(self, socket_path: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "pid unknown"
        super().__init__(f"already running, {who} (socket {socket_path})")
        self.socket_path = socket_path
        self.pid = pid


class SocketPathError(ConfigError):
    """The socket's directory or path is unsafe or unusable; the message says how to fix it."""


def lock_path_for(socket_path: Path) -> Path:
    """Where the instance lock of a socket lives (next to it)."""
    return socket_path.with_name(socket_path.name + ".lock")


class InstanceLock:
    """An exclusive ``flock`` proving this process is the service on one socket path."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, socket_path: Path) -> InstanceLock:
        """Take the lock or raise ``AlreadyRunning`` naming the holder's pid.

        The socket's directory must already exist (see ``prepare_directory``).
        """
        path = lock_path_for(socket_path)
        fd = open_lock_file(path, SocketPathError)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise AlreadyRunning(socket_path, holder) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Let go of the lock. The file stays: unlinking a lock file races with the next owner."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def prepare_directory(directory: Path, *, dedicated: bool, group_gid: int | None) -> None:
    """Make sure the socket's directory exists, is ours, and only we (and the group) enter it."""
    want = 0o750 if group_gid is not None else 0o700
    created = False
    try:
        os.makedirs(directory, mode=want)
        created = True
    except FileExistsError:
        pass
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise SocketPathError(f"socket directory {directory} is not a directory")
    uid = os.getuid()
    if st.st_uid != uid:
        raise SocketPathError(
            f"socket directory {directory} belongs to uid {st.st_uid}, not to this service's"
            f" uid {uid}; remove it or choose another --socket"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & ~want:
        if not (dedicated or created):
            raise SocketPathError(
                f"socket directory {directory} has mode {mode:04o}: other users can enter it;"
                f" put the socket in a private directory (mode {want:04o})"
            )
        os.chmod(directory, want)
    if group_gid is not None and st.st_gid != group_gid:
        os.chown(directory, -1, group_gid)


def remove_stale_socket(path: Path) -> bool:
    """Remove a socket file left by a dead process; True if one was removed.

    Call only while holding the ``InstanceLock``. Refuses to remove anything
    that is not a socket, and anything still accepting connections.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketPathError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError:
        pass  # refused or reset: nobody is listening, the file is stale
    else:
        raise AlreadyRunning(path, None)
    finally:
        probe.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return True


def bind_socket(path: Path, *, group_gid: int | None, backlog: int = 128) -> socket.socket:
    """A listening AF_UNIX socket at ``path``, mode 0600 (0660 for a group) from its birth."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        # The umask is per process; binding is the only file creation while it is set.
        old = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        if group_gid is not None:
            os.chown(path, -1, group_gid)
            os.chmod(path, 0o660)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def socket_inode(path: Path) -> int:
    """The inode of the socket file just bound, to recognise it at shutdown."""
    return os.lstat(path).st_ino


def unlink_if_ours(path: Path, inode: int) -> None:
    """Remove the socket file on shutdown unless something else has replaced it since."""
    with contextlib.suppress(OSError):
        if os.lstat(path).st_ino == inode:
            os.unlink(path)
