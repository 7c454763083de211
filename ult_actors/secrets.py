"""Secrets that cannot leak by accident: masked in repr, str and logs.

Values come from systemd's credentials directory (``$CREDENTIALS_DIRECTORY``)
or the environment, never from the TOML file. Call ``reveal()`` only at the
point where the secret goes on the wire (an HTTP header, a login message).

The credential names are the environment variable names (``CREDENTIAL_NAMES``);
the unit loads each with ``LoadCredential=NAME:ult-actors.NAME``, so an operator
puts the Alpaca key in ``/etc/credstore/ult-actors.ALPACA_API_KEY``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ult_actors.errors import ConfigError

MASK = "***"

#: Every secret the service reads, by the name used both as environment variable
#: and as systemd credential (see ``systemd/ult-actors.service``). The OANDA
#: account id (and the NATS user) is not secret, but is read the same way so it can
#: sit with the token (the password).
CREDENTIAL_NAMES = (
    "ALPACA_API_KEY",
    "ALPACA_API_SECRET",
    "OANDA_API_TOKEN",
    "OANDA_ACCOUNT_ID",
    "NATS_USER",
    "NATS_PASSWORD",
    "PGPASSWORD",
)


class Secret:
    """A string whose repr and str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the wire only."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return f"Secret({MASK!r})" if self._value else "Secret('')"

    __str__ = __repr__


def read_secret(name: str, env: Mapping[str, str] | None = None) -> Secret:
    """Read ``name`` from ``$CREDENTIALS_DIRECTORY/name``, else the environment.

    The credentials file wins so that a unit using ``LoadCredential=`` never
    needs the secret in its environment; an empty file counts as absent.
    Missing everywhere gives an empty ``Secret`` (falsy). A file that cannot
    be read is a ``ConfigError`` naming the credential, never its content.
    """
    env = os.environ if env is None else env
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        path = Path(cred_dir) / name
        if path.is_file():
            try:
                value = path.read_bytes().decode("utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read credential {name} from $CREDENTIALS_DIRECTORY: {exc.strerror}"
                ) from None
            except UnicodeDecodeError:
                # The exception's text quotes the offending byte: keep it out.
                raise ConfigError(f"credential {name} is not UTF-8 text") from None
            if value:
                return Secret(value)
    return Secret(env.get(name, "").strip())


def masked_url(url: str) -> str:
    """``url`` with the password of its user info, if any, masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{MASK}@{host}"))
