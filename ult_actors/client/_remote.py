"""Which transport a client uses: the Unix socket, or NATS when given a ``nats://`` URL.

NATS support is optional (the ``nats`` extra): it is imported only when a
URL asks for it, so a socket client never needs nats-py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ult_actors.client._nats import NatsTransport


def remote_transport(
    url: str | None,
    cluster: str,
    creds: str | Path | None,
    tls_ca: str | Path | None,
    tls_cert: str | Path | None,
    tls_key: str | Path | None,
    *,
    event_buffer: int,
) -> NatsTransport | None:
    """The NATS transport for ``url``; None without a URL (the socket is used).

    ``ConfigError`` for a URL that is not ``nats://`` or ``tls://``, or without nats-py.
    """
    if not url:
        return None
    from ult_actors.client._nats import NatsTransport

    return NatsTransport(
        url,
        cluster=cluster,
        creds=str(creds) if creds else None,
        tls_ca=str(tls_ca) if tls_ca else None,
        tls_cert=str(tls_cert) if tls_cert else None,
        tls_key=str(tls_key) if tls_key else None,
        event_buffer=event_buffer,
    )
