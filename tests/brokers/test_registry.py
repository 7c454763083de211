"""The registry: a remote broker joins the tree when its credential is set; kinds are cheap to list."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ult_actors.brokers.paper.settings import PaperSettings
from ult_actors.brokers.registry import BROKER_KINDS, broker_kind
from ult_actors.config import load_config


def _kinds(env: dict[str, str]) -> list[str]:
    return [b.kind for b in load_config(None, env).enabled_brokers]


def test_no_credentials_means_paper_only() -> None:
    assert _kinds({}) == ["paper"]


def test_a_credential_in_the_environment_or_credentials_directory_adds_its_broker(
    tmp_path: Path,
) -> None:
    assert "alpaca" in _kinds({"ALPACA_API_KEY": "k", "ALPACA_API_SECRET": "s"})
    (tmp_path / "OANDA_API_TOKEN").write_text("tok\n")
    assert "oanda" in _kinds({"CREDENTIALS_DIRECTORY": str(tmp_path)})


def test_an_empty_credential_file_does_not_add_a_broker(tmp_path: Path) -> None:
    (tmp_path / "ALPACA_API_KEY").write_text("\n")
    assert _kinds({"CREDENTIALS_DIRECTORY": str(tmp_path)}) == ["paper"]


def test_listing_the_kinds_imports_no_http_connector() -> None:
    code = "import sys, ult_actors.brokers.registry; assert 'httpx' not in sys.modules, 'httpx'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_each_kind_is_registered_under_its_own_name() -> None:
    assert sorted(BROKER_KINDS) == ["alpaca", "ib", "oanda", "paper"]
    assert all(broker_kind(name).name == name for name in BROKER_KINDS)


def test_a_paper_account_without_a_state_path_lives_in_the_state_dir(tmp_path: Path) -> None:
    kind = broker_kind("paper")
    placed = kind.with_state_dir(PaperSettings(), tmp_path, "desk")
    assert placed.state_path == str(tmp_path / "paper.db")  # shared by every paper connection
    explicit = PaperSettings(state_path=":memory:")
    assert kind.with_state_dir(explicit, tmp_path, "desk") is explicit
    other = broker_kind("alpaca").settings_type()()
    assert broker_kind("alpaca").with_state_dir(other, tmp_path, "a") is other
