"""Secrets put in the environment never show up in a log line, an error or any CLI output.

One session uses them for real: every remote broker kind whose connector is
installed is configured with the secrets from the environment and pointed at
a 127.0.0.1 port that refuses connections, so connecting fails and the
failure is logged (and shown by ``ult health``). ``ult config check`` (text
and JSON), ``ult serve``'s whole output and ``ult health`` are then searched
for each secret and for the marker inside all of them.

Kinds whose connector module is not installed cannot be configured; the
secrets still sit in the environment and the same outputs are searched.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from functools import partial
from typing import Any

import msgspec
import pytest
import trio

from ult_actors.brokers.registry import broker_kind
from ult_actors.errors import ConfigError
from ult_actors.testing.process import UltProcess, clean_env, run_ult, short_dir

MARKER = "Q7CANARYZ"
SECRETS = {
    "ALPACA_API_KEY": f"PK{MARKER}alpacakey0001",
    "ALPACA_API_SECRET": f"sk{MARKER}alpacasecret/0002+x",
    "OANDA_API_TOKEN": f"tok-{MARKER}-oandatoken-0003",
}
#: The secrets each remote kind reads.
KIND_SECRETS = {"alpaca": ("ALPACA_API_KEY", "ALPACA_API_SECRET"), "oanda": ("OANDA_API_TOKEN",)}
REMOTE_KINDS = tuple(KIND_SECRETS)


def installed_kinds() -> dict[str, type[msgspec.Struct]]:
    kinds = {}
    for kind in REMOTE_KINDS:
        try:
            kinds[kind] = broker_kind(kind).settings_type()
        except ConfigError:
            continue  # connector not written yet: nothing to configure
    return kinds


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port that is bound but never listens: every connect is refused."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    try:
        yield holder.getsockname()[1]
    finally:
        holder.close()


#: Where each kind's URL settings point in this test, by scheme. Traffic must
#: stay on loopback: a URL left empty would mean the broker's real host.
KIND_URLS = {
    "alpaca": {"base_url": "http", "stream_url": "ws", "data_url": "http"},
    "oanda": {"base_url": "http", "stream_url": "http"},
}


def broker_tables(port: int) -> str:
    """``[brokers.<kind>]`` tables pointing every URL setting of each installed kind at ``port``."""
    tables = []
    for kind, settings_type in installed_kinds().items():
        names = {f.name for f in msgspec.structs.fields(settings_type)}
        urls = KIND_URLS[kind]
        unknown = {n for n in names if "url" in n or "host" in n} - set(urls)
        assert not unknown, f"{kind} has URL settings this test does not point at loopback: {unknown}"
        lines = [f"[brokers.{kind}]", f'kind = "{kind}"']
        lines += [f'{n} = "{scheme}://127.0.0.1:{port}"' for n, scheme in urls.items() if n in names]
        tables.append("\n".join(lines))
    return "\n\n".join(tables) + "\n"


def assert_loopback_only(document: dict[str, Any], kinds: dict[str, Any]) -> None:
    """Before anything connects: every remote broker's URLs are set, and on 127.0.0.1."""
    for broker in document["config"]["brokers"]:
        if broker["kind"] in kinds:
            urls = {k: v for k, v in broker["settings"].items() if "url" in k or "host" in k}
            assert urls, f"{broker['name']}: no URL setting found; it would reach the real broker"
            for key, value in urls.items():
                assert str(value).split("://")[-1].startswith("127.0.0.1:"), (key, value)


def leaks(text: str) -> list[str]:
    """Which secrets (or fragments, or encodings of them) appear in ``text``."""
    found = [name for name, value in SECRETS.items() if value in text]
    if MARKER.lower() in text.lower():
        found.append("marker")
    pair = f"{SECRETS['ALPACA_API_KEY']}:{SECRETS['ALPACA_API_SECRET']}".encode()
    if base64.b64encode(pair).decode() in text:
        found.append("basic-auth")
    return found


def assert_no_leaks(outputs: dict[str, str]) -> None:
    for name, output in outputs.items():
        assert leaks(output) == [], f"{name} shows a secret:\n{output}"


async def test_secrets_of_a_session_that_uses_them_never_appear_in_any_output(
    refusing_port: int,
) -> None:
    kinds = installed_kinds()
    assert set(kinds) == set(REMOTE_KINDS)  # every remote connector's secrets are exercised
    used = {n: SECRETS[n] for kind in kinds for n in KIND_SECRETS[kind]}
    outputs: dict[str, str] = {}
    with short_dir() as home:
        config = home / "ult.toml"
        config.write_text(broker_tables(refusing_port))
        session = {"ULT_CONFIG": str(config), "OANDA_ACCOUNT_ID": "101-001-0000000-001", **used}
        env = clean_env(home, **session)

        text = run_ult("config", "check", env=env, timeout=60)
        outputs["config check"] = text.stdout + text.stderr
        as_json = run_ult("config", "check", "--json", env=env, timeout=60)
        outputs["config check --json"] = as_json.stdout + as_json.stderr
        # The session really read them: each configured kind shows its secrets as set.
        assert text.returncode == 0, outputs["config check"]
        document = json.loads(as_json.stdout)
        assert_loopback_only(document, kinds)
        for broker in document["config"]["brokers"]:
            if broker["kind"] in kinds:
                masked = [v for v in broker["settings"].values() if v == "***"]
                assert len(masked) == len(KIND_SECRETS[broker["kind"]]), broker

        serve = UltProcess.serve(home, env=session, clean=True)
        try:
            await serve.astart(timeout=60)
            assert serve.ready is not None, serve.log
            # Connecting to the refusing port fails, and the failure is logged.
            with trio.fail_after(30):
                while not broker_trouble_logged(serve.log, kinds):
                    await trio.sleep(0.05)  # polling a log file, bounded by fail_after
            health_env = clean_env(home, ULT_SOCKET=str(serve.socket))
            for args in (["health"], ["health", "--json"]):
                health = partial(run_ult, *args, env=health_env, timeout=60)
                shown = await trio.to_thread.run_sync(health)
                outputs[" ".join(args)] = shown.stdout + shown.stderr
            with trio.fail_after(30):
                await serve.astop()
        finally:
            serve.cleanup()
        outputs["serve"] = serve.log
    assert_no_leaks(outputs)


def broker_trouble_logged(log: str, kinds: dict[str, type[msgspec.Struct]]) -> bool:
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") in ("warning", "error", "critical") and any(
            kind in json.dumps(entry) for kind in kinds
        ):
            return True
    return False
