"""``config/ult.toml`` and ``.env.example`` stay true to the code.

The shipped config must load with strict decoding, must behave exactly like
no file at all, must mention every key the code knows (so a new key cannot be
added without documenting it), and its example values must decode too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec

from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.config import (
    IpcSection,
    JournalSection,
    PositionsSection,
    RetrySection,
    RiskSection,
    RoutingRule,
    ServiceConfig,
    ServiceSection,
    SupervisionSection,
    load_config,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "ult.toml"
ENV_EXAMPLE = ROOT / ".env.example"

SECTIONS: dict[str, type[msgspec.Struct]] = {
    "service": ServiceSection,
    "ipc": IpcSection,
    "risk": RiskSection,
    "retry": RetrySection,
    "supervision": SupervisionSection,
    "positions": PositionsSection,
    "journal": JournalSection,
    "brokers.paper": PaperSettings,
}


def as_data(cfg: ServiceConfig) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(
        {k: getattr(cfg, k) for k in SECTIONS if "." not in k} | {"routing": cfg.routing}
    )
    data["brokers"] = [
        (b.name, b.kind, b.enabled, msgspec.to_builtins(b.settings)) for b in cfg.brokers
    ]
    return data


def section_texts(text: str) -> dict[str, str]:
    """The text under each ``[section]`` header, by section name."""
    parts = re.split(r"^\[([^\]\[]+)\]\s*$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_shipped_config_loads_strictly_and_equals_the_defaults() -> None:
    cfg = load_config(CONFIG, env={})
    assert cfg.source == str(CONFIG)
    assert as_data(cfg) == as_data(load_config(None, env={}))


def test_the_shipped_config_mentions_every_key_the_code_knows() -> None:
    sections = section_texts(CONFIG.read_text())
    missing = []
    for name, struct in SECTIONS.items():
        body = sections.get(name, "")
        for field in struct.__struct_fields__:
            if not re.search(rf"^(# )?{field} = ", body, flags=re.MULTILINE):
                missing.append(f"{name}.{field}")
    text = CONFIG.read_text()
    for field in RoutingRule.__struct_fields__:
        if not re.search(rf"^# {field} = ", text, flags=re.MULTILINE):
            missing.append(f"routing.{field}")
    assert not missing, f"config/ult.toml does not document: {', '.join(missing)}"


def test_the_example_values_of_optional_keys_decode(tmp_path: Path) -> None:
    # Uncomment "# key = value" for the optional risk limits and paper keys.
    optional = set(RiskSection.__struct_fields__) | set(PaperSettings.__struct_fields__)

    def uncomment(match: re.Match[str]) -> str:
        return match.group(0)[2:] if match.group(1) in optional else match.group(0)

    text = re.sub(r"^# (\w+) = .*$", uncomment, CONFIG.read_text(), flags=re.MULTILINE)
    path = tmp_path / "ult.toml"
    path.write_text(text)
    cfg = load_config(path, env={})
    assert cfg.risk.max_order_qty is not None and cfg.risk.daily_loss_limit is not None
    assert cfg.risk.max_orders_per_second is not None
    (paper,) = cfg.brokers
    assert paper.settings.state_path and paper.settings.state_path.endswith(".db")


def env_lines(*, commented: bool) -> dict[str, str]:
    pattern = r"^# ([A-Z][A-Z0-9_]*)=(.*)$" if commented else r"^([A-Z][A-Z0-9_]*)=(.*)$"
    return dict(re.findall(pattern, ENV_EXAMPLE.read_text(), flags=re.MULTILINE))


def test_env_example_lists_the_overrides() -> None:
    names = set(env_lines(commented=True)) | set(env_lines(commented=False))
    expected = {
        "DEFAULT_BROKER",
        "ENABLE_PAPER_TRADING",
        "ORDER_RETRY_ENABLED",
        "ORDER_MAX_RETRIES",
        "ORDER_RETRY_DELAY",
        "ULT_SOCKET",
        "ULT_STATE_DIR",
        "ULT_LOG_LEVEL",
        "PAPER_STARTING_CASH",
        "PAPER_LATENCY_MS",
        "PAPER_SLIPPAGE_BPS",
        "PAPER_COMMISSION_PER_SHARE",
        "PAPER_SEED",
        "ALPACA_API_KEY",
        "ALPACA_API_SECRET",
        "ALPACA_PAPER_TRADING",
        "OANDA_API_TOKEN",
        "IB_PORT",
    }
    assert expected <= names


def test_env_example_as_copied_is_a_valid_environment() -> None:
    # The placeholders left empty must not switch anything on or break loading.
    env = env_lines(commented=False)
    assert env and all(value == "" for value in env.values())
    cfg = load_config(None, env=env)
    assert [b.name for b in cfg.enabled_brokers] == ["paper"]


def test_env_example_shows_the_real_defaults() -> None:
    shown = env_lines(commented=True)
    examples = {"ULT_CONFIG", "ULT_SOCKET", "ULT_STATE_DIR"}  # paths, not defaults
    env = {k: v for k, v in shown.items() if k not in examples}
    assert as_data(load_config(None, env=env)) == as_data(load_config(None, env={}))
