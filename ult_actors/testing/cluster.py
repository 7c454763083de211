"""Cluster instances as subprocesses, and waiting for an instance's role (tests and runs).

An instance is ``ult serve`` with the journal on PostgreSQL and a ``[cluster]``
section; its role is read from its health over its socket.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import trio

from ult_actors.client import AsyncClient, UltError
from ult_actors.messages import HealthSnapshot
from ult_actors.testing.process import UltProcess


def cluster_instance(
    home: Path,
    name: str,
    *,
    url: str,
    env: dict[str, str],
    lease_s: float,
    cluster: str = "test",
    nats_url: str = "",
) -> UltProcess:
    """``ult serve`` as instance ``name`` of ``cluster`` on the database at ``url`` (and
    serving NATS at ``nats_url`` while active), its config, socket and state under
    ``home``; ready on READY=1 (active or standby)."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "ult.toml"
    config.write_text(
        f'[journal]\nurl = "{url}"\n\n'
        f'[cluster]\nname = "{cluster}"\ninstance = "{name}"\nlease_s = {lease_s}\n'
        + (f'\n[nats]\nurl = "{nats_url}"\n' if nats_url else "")
    )
    return UltProcess.serve(home, env=env, args=["--config", str(config)], name=name)


async def health_of(sock: Path) -> HealthSnapshot | None:
    """The instance's health, or None while it does not answer."""
    try:
        async with AsyncClient(sock, timeout=5) as client:
            return await client.health()
    except (OSError, UltError):
        return None


async def wait_role(
    sock: Path, role: Literal["active", "standby"], timeout: float = 30
) -> HealthSnapshot:
    """Ask every 20 ms until the instance on ``sock`` reports ``role``: active and serving
    its tree, or standby knowing the active instance."""
    with trio.fail_after(timeout):
        while True:
            got = await health_of(sock)
            if got is not None and _in_role(got, role):
                return got
            await trio.sleep(0.02)


def _in_role(health: HealthSnapshot, role: str) -> bool:
    cluster = health.cluster
    if cluster is None or cluster.role != role:
        return False
    return bool(health.actors) if role == "active" else bool(cluster.active)
