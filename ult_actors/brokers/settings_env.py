"""Pieces every broker's ``*_settings_from_env`` uses: typed environment values, the unset secret.

A bad value is a ``ConfigError`` naming the variable and quoting what was
found, so ``ult config check`` says exactly what to fix. (Secrets are never
parsed here: ``ult_actors.secrets`` reads them and they are never quoted.)
"""

from __future__ import annotations

from ult_actors.errors import ConfigError
from ult_actors.secrets import Secret

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def no_secret() -> Secret:
    """The default of a settings field holding a secret: not set."""
    return Secret("")


def env_bool(name: str, value: str) -> bool:
    """``value`` of environment variable ``name`` as a boolean (1/0, true/false, yes/no, on/off)."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"environment variable {name}: expected true or false, got {value!r}")


def env_int(name: str, value: str) -> int:
    """``value`` of environment variable ``name`` as an integer."""
    try:
        return int(value)
    except ValueError:
        raise ConfigError(
            f"environment variable {name}: expected an integer, got {value!r}"
        ) from None
