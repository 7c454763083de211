"""The trading state survives a restart: the kill switch stays on until a person turns it off.

Risk writes the global and per-broker trading states to one small file in the
state directory at every change (write, fsync, rename: never a torn file);
the service reads it back at build time, and it wins over the config's
``risk.initial_state`` because it is the operator's latest word.

Each state is saved with who set it and why (``settings``), so a restriction
the service imposed is still the service's to lift after a restart. Files
written before that was recorded load too: their states count as a person's
(fail closed: nobody lifts them but a person).
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from ult_actors.errors import ConfigError
from ult_actors.messages import TradingSetting, TradingState

FILE_NAME = "trading-state.json"


class SavedTradingState(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What is kept across restarts."""

    trading: TradingState
    broker_trading: dict[str, TradingState] = msgspec.field(default_factory=dict)
    reason: str = ""
    at_ns: int = 0
    #: Who set each state and why: ``""`` for the global one, else the broker's name.
    settings: dict[str, TradingSetting] = msgspec.field(default_factory=dict)

    def who_set(self) -> dict[str, TradingSetting]:
        """``settings`` for every saved state, filling in those an older file lacks."""
        held = {"": self.trading, **self.broker_trading}
        out: dict[str, TradingSetting] = {}
        for key, state in held.items():
            known = self.settings.get(key)
            if known is not None and known.state == state:
                out[key] = known
            else:
                # Saved before origins were recorded: only a person may lift it.
                out[key] = TradingSetting(
                    state=state,
                    set_by="person",
                    reason=f"saved without who set it (last change: {self.reason or 'unknown'})",
                    at=self.at_ns,
                )
        return out


def load_trading_state(path: Path) -> SavedTradingState | None:
    """The saved state, ``None`` when there is none; ``ConfigError`` if it is unreadable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the saved trading state {path}: {exc.strerror}") from None
    try:
        return msgspec.json.decode(data, type=SavedTradingState)
    except msgspec.DecodeError as exc:
        # Fail closed: a person must look rather than trading resuming by accident.
        raise ConfigError(
            f"the saved trading state {path} is damaged ({exc}); check it, then delete it or"
            " set it with `ult trading-state` once the service runs"
        ) from None


def save_trading_state(path: Path, saved: SavedTradingState) -> None:
    """Replace the file atomically and durably."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(msgspec.json.encode(saved))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
