"""Every configuration key has a range: a value outside it stops ``ult config check``
and ``ult serve`` with an error naming the file and the key, and a configuration
built in code is refused by ``build_service`` the same way."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ult_actors.brokers.registry import BROKER_KINDS
from ult_actors.config import (
    _RISK_DECIMALS,
    IpcSection,
    PositionsSection,
    RetrySection,
    RiskSection,
    ServiceConfig,
    ServiceSection,
    SupervisionSection,
    load_config,
)
from ult_actors.errors import ConfigError
from ult_actors.service import build_service
from ult_actors.testing.process import run_ult

#: (TOML text, the key and rule the error must name). The first six are the issue's.
BAD: list[tuple[str, str]] = [
    ("[service]\nsubmit_timeout_s = -5", "service.submit_timeout_s: must be > 0.0"),
    ("[risk]\nmax_order_qty = -1", "risk.max_order_qty: must be > 0, got -1"),
    ("[supervision]\npark_s = -10", "supervision.park_s: must be > 0.0"),
    ("[supervision]\nmax_restarts = -1", "supervision.max_restarts: must be >= 0"),
    ("[ipc]\nmax_frame_bytes = 100000000000000000", "ipc.max_frame_bytes: must be <= 67108864"),
    ("[risk]\nmax_orders_per_second = 0", "risk.max_orders_per_second: must be > 0.0"),
    ("[risk]\nmax_order_notional = inf", "risk.max_order_notional: must be a number below"),
    ("[positions]\nsync_interval_s = 0", "positions.sync_interval_s: must be > 0.0"),
    ("[service]\nshutdown_timeout_s = nan", "service.shutdown_timeout_s: must be > 0.0"),
    ("[ipc]\nallowed_uids = [-1]", "ipc.allowed_uids[0]: must be >= 0"),
    ("[[routing]]\npattern = ''\nbroker = 'paper'", "routing[0].pattern: must not be empty"),
    ("[brokers.paper]\nlatency_ms = -1", "brokers.paper.latency_ms: must be >= 0"),
    ("[brokers.ib]\nport = 0", "brokers.ib.port: must be >= 1"),
    ("[brokers.alpaca]\nread_timeout_s = 0", "brokers.alpaca.read_timeout_s: must be > 0.0"),
    ("[brokers.oanda]\nmax_connections = 0", "brokers.oanda.max_connections: must be >= 1"),
    ("[service]\nbusy_poll_us = -1", "service.busy_poll_us: must be >= 0"),
    ("[service]\nbusy_poll_us = 10001", "service.busy_poll_us: must be <= 10000"),
]


@pytest.mark.parametrize(("toml", "named"), BAD[:6])
def test_config_check_names_the_key_of_a_value_out_of_range(
    tmp_path: Path, toml: str, named: str
) -> None:
    path = tmp_path / "ult.toml"
    path.write_text(toml + "\n")
    done = run_ult("config", "check", "--config", str(path))
    assert done.returncode == 2, done.stdout
    assert f"{path}: {named}" in done.stderr


@pytest.mark.parametrize(("toml", "named"), BAD)
def test_loading_refuses_every_value_out_of_range(tmp_path: Path, toml: str, named: str) -> None:
    path = tmp_path / "ult.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert f"{path}: {named}" in str(info.value)


def test_an_environment_override_out_of_range_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"retry\.max_retries: must be >= 0"):
        load_config(None, env={"ORDER_MAX_RETRIES": "-1"})
    with pytest.raises(ConfigError, match=r"paper broker: latency_ms: must be <= 3600000"):
        load_config(None, env={"PAPER_LATENCY_MS": "99999999999"})


def test_building_the_service_refuses_a_configuration_out_of_range(tmp_path: Path) -> None:
    cfg = ServiceConfig(service=ServiceSection(state_dir=str(tmp_path), submit_timeout_s=-5))
    with pytest.raises(ConfigError, match=r"service\.submit_timeout_s: must be > 0\.0"):
        build_service(cfg, env={}, rng=random.Random(1))
    cfg = ServiceConfig(service=ServiceSection(state_dir=str(tmp_path)))
    cfg.risk.max_order_qty = Decimal("-1")
    with pytest.raises(ConfigError, match=r"risk\.max_order_qty: must be > 0"):
        build_service(cfg, env={}, rng=random.Random(1))


def _unbounded_numbers(struct: type[msgspec.Struct]) -> list[str]:
    """Fields of ``struct`` holding an int or float with no declared range."""
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    out = []
    for field in info.fields:
        kinds: list[Any] = [field.type]
        while kinds:
            t = kinds.pop()
            if isinstance(t, msgspec.inspect.UnionType):
                kinds.extend(t.types)
            elif isinstance(t, msgspec.inspect.ListType):
                kinds.append(t.item_type)
            elif isinstance(t, msgspec.inspect.IntType | msgspec.inspect.FloatType) and (
                (t.ge, t.gt) == (None, None) or (t.le, t.lt) == (None, None)
            ):
                out.append(field.name)
    return out


def test_every_numeric_key_declares_its_range() -> None:
    sections = [ServiceSection, IpcSection, RiskSection, RetrySection, SupervisionSection,
                PositionsSection]  # fmt: skip
    unbounded = {s.__name__: _unbounded_numbers(s) for s in sections}
    for name, kind in BROKER_KINDS.items():
        allowed = {"seed"} if name == "paper" else set()  # any seed replays some walk
        unbounded[name] = [f for f in _unbounded_numbers(kind.settings_type()) if f not in allowed]
    assert {k: v for k, v in unbounded.items() if v} == {}
    decimals = {f.name for f in msgspec.structs.fields(RiskSection) if "Decimal" in str(f.type)}
    assert decimals == set(_RISK_DECIMALS)  # each is checked by hand (msgspec cannot)
