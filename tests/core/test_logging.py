"""Log lines: JSON for journald, secrets masked at any depth, no local variables in tracebacks."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from ult_actors.logsetup import configure_logging
from ult_actors.secrets import Secret, read_secret


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_non_terminal_stream_gets_one_json_object_per_line_with_actor_and_level() -> None:
    out = io.StringIO()
    configure_logging(stream=out)
    structlog.get_logger().bind(actor="broker.paper").info("broker connected", incarnation=2)
    [line] = _lines(out)
    assert line["event"] == "broker connected"
    assert line["actor"] == "broker.paper"
    assert line["level"] == "info"
    assert line["incarnation"] == 2
    assert str(line["timestamp"]).endswith("Z")


def test_secrets_are_masked_by_key_and_by_type_at_any_depth() -> None:
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    structlog.get_logger().warning(
        "request failed",
        api_key="AKIAREALKEY123",
        headers={"Authorization": "Bearer tok-987", "accept": "json"},
        settings=[{"token": "tok-555"}],
        credential=Secret("s3cr3t-value"),
    )
    text = out.getvalue()
    for leaked in ("AKIAREALKEY123", "tok-987", "tok-555", "s3cr3t-value"):
        assert leaked not in text
    [line] = _lines(out)
    assert line["headers"] == {"Authorization": "***", "accept": "json"}


def test_exceptions_are_rendered_without_local_variables() -> None:
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    log = structlog.get_logger()

    def connect(api_secret: str) -> None:
        raise ConnectionError("refused")

    value = "-".join(["very", "secret", "value"])  # not in the source, only in a local
    try:
        connect(value)
    except ConnectionError:
        log.exception("connect failed")
    text = out.getvalue()
    assert "ConnectionError: refused" in text
    assert "very-secret-value" not in text


def test_the_level_filter_drops_debug_lines_at_info() -> None:
    out = io.StringIO()
    configure_logging(json=True, level="info", stream=out)
    structlog.get_logger().debug("noise")
    structlog.get_logger().error("signal")
    assert [line["event"] for line in _lines(out)] == ["signal"]


def test_a_credentials_file_wins_over_the_environment(tmp_path: object) -> None:
    from pathlib import Path

    cred = Path(str(tmp_path))
    (cred / "ALPACA_API_KEY").write_text("from-file\n")
    env = {"CREDENTIALS_DIRECTORY": str(cred), "ALPACA_API_KEY": "from-env"}
    assert read_secret("ALPACA_API_KEY", env).reveal() == "from-file"
    assert read_secret("ALPACA_API_SECRET", {"ALPACA_API_SECRET": "x"}).reveal() == "x"
    assert not read_secret("MISSING", {})
    assert "from-file" not in repr(read_secret("ALPACA_API_KEY", env))
