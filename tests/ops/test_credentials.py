"""Secrets from systemd credentials, falling back to the environment; never shown."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ult_actors.errors import ConfigError
from ult_actors.secrets import CREDENTIAL_NAMES, read_secret

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "ult-actors.service"


def test_the_unit_loads_exactly_the_documented_credentials_under_their_own_names() -> None:
    loaded = re.findall(r"^LoadCredential=([A-Z_]+):ult-actors\.([A-Z_]+)$", UNIT.read_text(), re.M)
    assert sorted(name for name, _ in loaded) == sorted(CREDENTIAL_NAMES)
    assert all(name == source for name, source in loaded)
    # Never through the environment of the unit.
    assert not re.search(r"^Environment=.*(KEY|SECRET|TOKEN)", UNIT.read_text(), re.M)


def test_the_cluster_database_password_is_loaded_by_the_unit_as_a_credential() -> None:
    # README: the PostgreSQL password is only ever a credential, never in ult.toml.
    assert "PGPASSWORD" in CREDENTIAL_NAMES
    assert re.search(r"^LoadCredential=PGPASSWORD:ult-actors\.PGPASSWORD$", UNIT.read_text(), re.M)


def test_a_credential_file_wins_over_the_environment(tmp_path: Path) -> None:
    (tmp_path / "OANDA_API_TOKEN").write_text("from-credential\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path), "OANDA_API_TOKEN": "from-env"}
    assert read_secret("OANDA_API_TOKEN", env).reveal() == "from-credential"


def test_an_empty_credential_file_counts_as_absent(tmp_path: Path) -> None:
    (tmp_path / "ALPACA_API_KEY").write_text("\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path), "ALPACA_API_KEY": "from-env"}
    assert read_secret("ALPACA_API_KEY", env).reveal() == "from-env"
    assert not read_secret("ALPACA_API_KEY", {"CREDENTIALS_DIRECTORY": str(tmp_path)})


def test_an_unreadable_credential_is_a_config_error_that_does_not_quote_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "ALPACA_API_SECRET").write_bytes(b"sk-\xff\xfe-rest-of-secret")
    with pytest.raises(ConfigError) as info:
        read_secret("ALPACA_API_SECRET", {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert "ALPACA_API_SECRET" in str(info.value)
    assert "rest-of-secret" not in str(info.value)
    assert "xff" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_repr_str_and_format_of_a_secret_are_masked() -> None:
    secret = read_secret("OANDA_API_TOKEN", {"OANDA_API_TOKEN": "tok-abc-123"})
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{[secret]}"):
        assert "tok-abc-123" not in shown
    assert secret.reveal() == "tok-abc-123"
