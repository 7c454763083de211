"""A remote broker joins the tree when its credential is set, and only then."""

from __future__ import annotations

from pathlib import Path

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
