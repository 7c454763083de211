"""Alpaca settings: environment overrides, paper/live URLs, the live-trading guard, no leaked secrets."""

from __future__ import annotations

import logging
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog
import trio

from tests.brokers.alpaca.harness import KEY, SECRET, connected, running_sim, settings_for
from ult_actors.brokers.alpaca.connector import AlpacaConnector
from ult_actors.brokers.alpaca.settings import (
    LIVE_URL,
    PAPER_URL,
    AlpacaSettings,
    alpaca_settings_from_env,
    rest_url,
    stream_url,
)
from ult_actors.brokers.registry import broker_kind
from ult_actors.config import describe, load_config
from ult_actors.errors import AuthFailed, BrokerUnavailable, ConfigError, RateLimited, UltError
from ult_actors.messages import OrderRequest
from ult_actors.secrets import Secret
from ult_actors.sim.alpaca.faults import Fault


def test_environment_supplies_keys_paper_flag_and_urls() -> None:
    settings = alpaca_settings_from_env(
        {
            "ALPACA_API_KEY": KEY,
            "ALPACA_API_SECRET": SECRET,
            "ALPACA_PAPER_TRADING": "false",
            "ALPACA_BASE_URL": "http://127.0.0.1:8765/",
            "ALPACA_STREAM_URL": "ws://127.0.0.1:8765/stream",
        },
        AlpacaSettings(),
    )
    assert settings.api_key == Secret(KEY) and settings.api_secret == Secret(SECRET)
    assert settings.paper is False
    assert rest_url(settings) == "http://127.0.0.1:8765"
    assert stream_url(settings) == "ws://127.0.0.1:8765/stream"
    assert SECRET not in repr(settings)


def test_paper_is_the_default_and_urls_follow_the_paper_flag() -> None:
    paper = alpaca_settings_from_env({}, AlpacaSettings())
    assert paper.paper is True
    assert rest_url(paper) == PAPER_URL
    assert stream_url(paper) == "wss://paper-api.alpaca.markets/stream"
    live = alpaca_settings_from_env({"ALPACA_PAPER_TRADING": "0"}, AlpacaSettings())
    assert rest_url(live) == LIVE_URL
    assert stream_url(live) == "wss://api.alpaca.markets/stream"
    # Only a base URL: the stream is found beside it.
    local = AlpacaSettings(base_url="http://127.0.0.1:9/")
    assert stream_url(local) == "ws://127.0.0.1:9/stream"


def test_secrets_come_from_the_credentials_directory_first() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as creds:
        (Path(creds) / "ALPACA_API_SECRET").write_text(SECRET + "\n")
        settings = alpaca_settings_from_env(
            {"CREDENTIALS_DIRECTORY": creds, "ALPACA_API_KEY": KEY, "ALPACA_API_SECRET": "env"},
            AlpacaSettings(),
        )
    assert settings.api_secret == Secret(SECRET)
    assert settings.api_key == Secret(KEY)


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"ALPACA_PAPER_TRADING": "maybe"}, "ALPACA_PAPER_TRADING"),
        ({"ALPACA_BASE_URL": "ftp://example.com"}, "ALPACA_BASE_URL"),
        ({"ALPACA_STREAM_URL": "http://127.0.0.1:1/stream"}, "ALPACA_STREAM_URL"),
        ({"ALPACA_BASE_URL": f"https://{KEY}:{SECRET}@api.alpaca.markets"}, "credentials"),
    ],
)
def test_bad_environment_is_a_config_error_that_names_the_variable(
    env: dict[str, str], complaint: str
) -> None:
    with pytest.raises(ConfigError, match=complaint) as err:
        alpaca_settings_from_env(env, AlpacaSettings())
    assert SECRET not in str(err.value)


def test_config_file_and_environment_make_an_alpaca_connection_with_masked_secrets() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        path = Path(tmp) / "ult.toml"
        path.write_text(
            '[brokers.alpaca-live]\nkind = "alpaca"\npaper = false\n'
            "live_trading_confirmed = true\nread_timeout_s = 3.5\n"
        )
        cfg = load_config(path, env={"ALPACA_API_KEY": KEY, "ALPACA_API_SECRET": SECRET})
        entry = next(b for b in cfg.brokers if b.name == "alpaca-live")
        assert entry.settings.live_trading_confirmed and entry.settings.read_timeout_s == 3.5
        assert entry.settings.api_key == Secret(KEY)
        shown = msgspec.json.encode(describe(cfg)).decode()
        assert KEY not in shown and SECRET not in shown
        path.write_text('[brokers.a]\nkind = "alpaca"\napi_secret = "in-the-file"\n')
        with pytest.raises(ConfigError, match="api_secret"):
            load_config(path, env={})  # secrets are never read from the file


def test_an_api_key_in_the_environment_enables_alpaca_by_itself() -> None:
    cfg = load_config(None, env={"ALPACA_API_KEY": KEY, "ALPACA_API_SECRET": SECRET})
    assert [b.name for b in cfg.enabled_brokers] == ["paper", "alpaca"]
    connector = broker_kind("alpaca").factory("alpaca", cfg.brokers[1].settings)()
    assert isinstance(connector, AlpacaConnector)


async def test_live_trading_refuses_to_start_without_confirmation() -> None:
    async with running_sim() as (sim, port):
        connector = AlpacaConnector("alpaca-live", settings_for(port, paper=False))
        with pytest.raises(ConfigError, match="live_trading_confirmed = true"):
            await connector.connect()
        assert sim.requests == 0  # refused before anything was sent
        confirmed = AlpacaConnector(
            "alpaca-live", settings_for(port, paper=False, live_trading_confirmed=True)
        )
        with trio.fail_after(10):
            await confirmed.connect()
        await confirmed.disconnect()


async def test_missing_keys_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ALPACA_API_KEY"):
        await AlpacaConnector("alpaca", AlpacaSettings()).connect()


@pytest.mark.parametrize(("key", "secret"), [(KEY, "wrong-secret"), ("PKWRONG", SECRET)])
async def test_refused_keys_are_auth_failed_at_connect(key: str, secret: str) -> None:
    async with running_sim() as (sim, port):
        settings = settings_for(port, api_key=Secret(key), api_secret=Secret(secret))
        with trio.fail_after(10), pytest.raises(AuthFailed):
            await AlpacaConnector("alpaca", settings).connect()
        assert sim.requests == 1


async def test_no_secret_in_logs_or_errors_across_failures() -> None:
    errors: list[UltError] = []
    with structlog.testing.capture_logs() as logs, _stdlib_records() as records:
        async with running_sim() as (sim, port):
            bad = AlpacaConnector("alpaca", settings_for(port, api_secret=Secret(SECRET + "x")))
            errors.append(await _error_of(bad.connect()))
            async with connected(port, read_timeout_s=0.3, rate_limit_max_wait_s=0) as (
                connector,
                _,
            ):
                faults = [
                    Fault(kind="drop"),
                    Fault(kind="status", status=503),
                    Fault(kind="rate_limit", retry_after_s=0),
                    Fault(kind="slow", delay_s=2),
                    Fault(kind="lose_reply"),
                ]
                for fault in faults:
                    sim.arm(fault)
                    request = OrderRequest(
                        symbol="AAPL", side="buy", qty=Decimal(1), client_order_id=fault.kind
                    )
                    errors.append(await _error_of(connector.submit(request)))
                sim.cut_streams()  # the stream authenticates again
                await sim.wait_listening(2)
    assert [type(e) for e in errors] == [
        AuthFailed,
        BrokerUnavailable,
        BrokerUnavailable,
        RateLimited,
        BrokerUnavailable,
        BrokerUnavailable,
    ]
    seen = repr(logs) + repr(records) + "".join(f"{e!r} {e} {e.to_info()}" for e in errors)
    assert logs  # something was logged: the check below is not vacuous
    assert KEY not in seen and SECRET not in seen


async def _error_of(call: Any) -> UltError:
    try:
        with trio.fail_after(10):
            await call
    except UltError as exc:
        return exc
    raise AssertionError("expected an error")


class _stdlib_records:
    """Every stdlib log record (httpx logs each request at INFO) while active."""

    def __enter__(self) -> list[str]:
        self.records: list[str] = []
        self.handler = logging.Handler(logging.DEBUG)
        self.handler.emit = lambda record: self.records.append(record.getMessage())  # type: ignore[method-assign]
        root = logging.getLogger()
        self.level = root.level
        root.setLevel(logging.DEBUG)
        root.addHandler(self.handler)
        return self.records

    def __exit__(self, *exc: object) -> None:
        root = logging.getLogger()
        root.removeHandler(self.handler)
        root.setLevel(self.level)
