"""Who is on the other end of a Unix socket, and whether they may use the service.

The kernel vouches for the peer's pid, uid and gid (``SO_PEERCRED``), taken
when it connected; nothing the client sends can change them.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
from dataclasses import dataclass, field
from typing import Protocol

_UCRED = struct.Struct("3i")


@dataclass(frozen=True)
class PeerCredentials:
    """The connecting process as the kernel saw it at ``connect()``."""

    pid: int
    uid: int
    gid: int


class _HasSockopt(Protocol):
    def getsockopt(self, level: int, option: int, buflen: int, /) -> bytes: ...


def peer_credentials(sock: _HasSockopt) -> PeerCredentials:
    """Read ``SO_PEERCRED`` of a connected AF_UNIX socket (stdlib or trio)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return PeerCredentials(pid=pid, uid=uid, gid=gid)


def group_id(group: str) -> int:
    """A group name (or a number as text) as a gid; ``KeyError`` if there is no such group."""
    if group.isdigit():
        return int(group)
    return grp.getgrnam(group).gr_gid


@dataclass(frozen=True)
class PeerPolicy:
    """Which peers are let in: by uid, or by primary or supplementary group."""

    uids: frozenset[int]
    gids: frozenset[int] = field(default_factory=frozenset)

    @classmethod
    def default(
        cls,
        extra_uids: list[int] | tuple[int, ...] = (),
        gids: list[int] | tuple[int, ...] = (),
        *,
        own_uid: int | None = None,
    ) -> PeerPolicy:
        """The service's own uid and root, plus what the configuration adds."""
        own = os.getuid() if own_uid is None else own_uid
        return cls(uids=frozenset({own, 0, *extra_uids}), gids=frozenset(gids))

    def allows(self, peer: PeerCredentials) -> bool:
        """Whether this peer may send requests."""
        if peer.uid in self.uids or peer.gid in self.gids:
            return True
        if not self.gids:
            return False
        # SO_PEERCRED reports only the primary group; members through a
        # supplementary group are found in the user database.
        try:
            user = pwd.getpwuid(peer.uid)
            return bool(self.gids.intersection(os.getgrouplist(user.pw_name, user.pw_gid)))
        except (KeyError, OSError):
            return False

    def describe(self) -> str:
        """For the refusal message: who would have been let in."""
        text = "uids " + ", ".join(str(u) for u in sorted(self.uids))
        if self.gids:
            text += "; gids " + ", ".join(str(g) for g in sorted(self.gids))
        return text
