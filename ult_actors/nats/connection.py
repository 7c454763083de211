"""How to reach a NATS server: URL, credentials, TLS; and opening a nats-py connection.

Shared by the service and the remote client. The password, like every
secret, is a ``Secret`` (masked in logs) revealed only when it goes on the
wire; a creds file (user JWT and NKey seed) is read by nats-py itself.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.client import Client as NatsConnection

from ult_actors.config import ServiceConfig
from ult_actors.errors import ConfigError
from ult_actors.secrets import Secret, read_secret

#: The credentials (systemd ``LoadCredential=``, or the environment) for user/password.
USER_CREDENTIAL = "NATS_USER"
PASSWORD_CREDENTIAL = "NATS_PASSWORD"


@dataclass(frozen=True)
class NatsSettings:
    """Where the NATS server is and how to log in; ``cluster`` names the subjects."""

    url: str
    cluster: str = "default"
    creds_file: str = ""
    user: str = ""
    password: Secret = field(default_factory=lambda: Secret(""))
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    connect_timeout_s: float = 5.0
    #: The connection's name in the server's monitoring.
    name: str = "ult"

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context the settings ask for; None for a plain ``nats://`` URL."""
        if not (self.tls_ca or self.tls_cert or self.url.startswith("tls://")):
            return None
        try:
            context = ssl.create_default_context(cafile=self.tls_ca or None)
            if self.tls_cert:
                context.load_cert_chain(self.tls_cert, self.tls_key or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"nats TLS files: {exc}") from None
        return context


def settings_from_config(
    config: ServiceConfig, env: Mapping[str, str] | None = None
) -> NatsSettings | None:
    """The service's NATS settings, None if ``[nats] url`` is empty."""
    section = config.nats
    if not section.url:
        return None
    if not section.url.startswith(("nats://", "tls://")):
        raise ConfigError(
            f"{config.source}: nats.url: expected nats://HOST:PORT or tls://HOST:PORT"
        )
    return NatsSettings(
        url=section.url,
        cluster=config.cluster.name,
        creds_file=section.creds_file,
        user=read_secret(USER_CREDENTIAL, env).reveal(),
        password=read_secret(PASSWORD_CREDENTIAL, env),
        tls_ca=section.tls_ca,
        tls_cert=section.tls_cert,
        tls_key=section.tls_key,
        name=f"ult-{config.cluster.name}",
    )


async def open_connection(
    settings: NatsSettings,
    *,
    error_cb: Callable[[Exception], Awaitable[None]] | None = None,
    disconnected_cb: Callable[[], Awaitable[None]] | None = None,
    reconnected_cb: Callable[[], Awaitable[None]] | None = None,
    reconnect: bool = True,
) -> NatsConnection:
    """Connect (on the loop thread). Raises what nats-py raises when it cannot."""
    options: dict[str, Any] = {
        "servers": [settings.url],
        "name": settings.name,
        "connect_timeout": settings.connect_timeout_s,
        "allow_reconnect": reconnect,
        # With reconnect, forever: the service keeps trying while NATS is down (orders
        # over the socket are unaffected meanwhile). Without, a client gives up after a
        # second try (nats-py reads 0 as "forever").
        "max_reconnect_attempts": -1 if reconnect else 1,
        "reconnect_time_wait": 1.0 if reconnect else 0.1,
    }
    options["error_cb"] = error_cb or _ignore
    if disconnected_cb is not None:
        options["disconnected_cb"] = disconnected_cb
    if reconnected_cb is not None:
        options["reconnected_cb"] = reconnected_cb
    tls = settings.tls_context()
    if tls is not None:
        options["tls"] = tls
    if settings.creds_file:
        options["user_credentials"] = settings.creds_file
    elif settings.user:
        options["user"] = settings.user
        options["password"] = settings.password.reveal()
    return await nats.connect(**options)


async def _ignore(_: Exception) -> None:
    """nats-py logs errors without a callback; callers that want them pass their own."""
