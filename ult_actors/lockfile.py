"""Opening an ``flock`` file safely: never through a symbolic link, errors naming the file."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ult_actors.errors import ConfigError


def open_lock_file(path: Path, error: type[ConfigError] = ConfigError) -> int:
    """Open (creating, mode 0600) the lock file at ``path``; its descriptor.

    A symbolic link is refused rather than followed (it could point anywhere
    the service may write), and every failure is ``error`` naming the path:
    nothing a restart would fix.
    """
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise error(
                f"lock file {path} is a symbolic link; refusing to follow it (remove it)"
            ) from None
        raise error(
            f"lock file {path} cannot be opened: {exc.strerror or exc}"
            " (is its directory read-only or owned by another user?)"
        ) from None
