"""Log lines: JSON for journald, secrets masked at any depth, no local variables in tracebacks;
written by a thread of their own, bounded, so that logging never holds up the event loop."""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from ult_actors.logrender import UtcText
from ult_actors.logsetup import configure_logging, info_line
from ult_actors.logwriter import LogWriter
from ult_actors.secrets import Secret, read_secret


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class GatedStream(io.StringIO):
    """A log stream whose writes wait until ``gate`` is set, as a stuck journald pipe would.

    ``writing`` is set once a write waits; ``writers`` names the threads that wrote.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.writing = threading.Event()
        self.writers: set[str] = set()

    def write(self, text: str) -> int:
        self.writers.add(threading.current_thread().name)
        self.writing.set()
        assert self.gate.wait(10), "the test never opened the gate"
        return super().write(text)


class TellingStream(io.StringIO):
    """A log stream that tells each write as it comes (``wrote``: one release per write)."""

    def __init__(self) -> None:
        super().__init__()
        self.wrote = threading.Semaphore(0)

    def write(self, text: str) -> int:
        written = super().write(text)
        self.wrote.release()
        return written


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.001)


@pytest.fixture
def stuck() -> Iterator[GatedStream]:
    """A gated stream, opened at the end of the test whatever happens."""
    out = GatedStream()
    yield out
    out.gate.set()


def test_a_non_terminal_stream_gets_one_json_object_per_line_with_actor_and_level() -> None:
    out = io.StringIO()
    writer = configure_logging(stream=out)
    structlog.get_logger().bind(actor="broker.paper").info("broker connected", incarnation=2)
    writer.close()
    [line] = _lines(out)
    assert line["event"] == "broker connected"
    assert line["actor"] == "broker.paper"
    assert line["level"] == "info"
    assert line["incarnation"] == 2
    assert str(line["timestamp"]).endswith("Z")


def test_secrets_are_masked_by_key_and_by_type_at_any_depth() -> None:
    out = io.StringIO()
    writer = configure_logging(json=True, stream=out)
    structlog.get_logger().warning(
        "request failed",
        api_key="AKIAREALKEY123",
        headers={"Authorization": "Bearer tok-987", "accept": "json"},
        settings=[{"token": "tok-555"}],
        credential=Secret("s3cr3t-value"),
    )
    writer.close()
    text = out.getvalue()
    for leaked in ("AKIAREALKEY123", "tok-987", "tok-555", "s3cr3t-value"):
        assert leaked not in text
    [line] = _lines(out)
    assert line["headers"] == {"Authorization": "***", "accept": "json"}


def test_a_key_logged_plain_before_still_has_its_secret_masked_later() -> None:
    # Keys seen before skip the per-key look; the values must still be looked at.
    out = io.StringIO()
    writer = configure_logging(json=True, stream=out)
    log = structlog.get_logger()
    log.info("connected", credential="none yet", extra="plain")
    log.info("connected", credential=Secret("s3cr3t-value"), extra={"token": "tok-555"})
    writer.close()
    assert "s3cr3t-value" not in out.getvalue() and "tok-555" not in out.getvalue()
    first, second = _lines(out)
    assert first["credential"] == "none yet"
    assert second["extra"] == {"token": "***"}


def test_exceptions_are_rendered_without_local_variables() -> None:
    out = io.StringIO()
    writer = configure_logging(json=True, stream=out)
    log = structlog.get_logger()

    def connect(api_secret: str) -> None:
        raise ConnectionError("refused")

    value = "-".join(["very", "secret", "value"])  # not in the source, only in a local
    try:
        connect(value)
    except ConnectionError:
        log.exception("connect failed")
    writer.close()
    text = out.getvalue()
    assert "ConnectionError: refused" in text
    assert "very-secret-value" not in text


def test_the_level_filter_drops_debug_lines_at_info() -> None:
    out = io.StringIO()
    writer = configure_logging(json=True, level="info", stream=out)
    structlog.get_logger().debug("noise")
    structlog.get_logger().error("signal")
    writer.close()
    assert [line["event"] for line in _lines(out)] == ["signal"]
    assert writer.stats().handed_over == 1  # the debug call built no record


def test_a_credentials_file_wins_over_the_environment(tmp_path: object) -> None:
    from pathlib import Path

    cred = Path(str(tmp_path))
    (cred / "ALPACA_API_KEY").write_text("from-file\n")
    env = {"CREDENTIALS_DIRECTORY": str(cred), "ALPACA_API_KEY": "from-env"}
    assert read_secret("ALPACA_API_KEY", env).reveal() == "from-file"
    assert read_secret("ALPACA_API_SECRET", {"ALPACA_API_SECRET": "x"}).reveal() == "x"
    assert not read_secret("MISSING", {})
    assert "from-file" not in repr(read_secret("ALPACA_API_KEY", env))


async def test_a_record_logged_on_the_trio_thread_is_written_by_another_thread_as_json() -> None:
    out = GatedStream()
    out.gate.set()
    writer = configure_logging(json=True, stream=out)
    structlog.get_logger().bind(actor="ipc").info(
        "request", client_order_id="c-1", qty=Decimal("1.5"), api_secret="sk-live-123"
    )
    assert writer.close()
    [line] = _lines(out)
    assert line["event"] == "request"
    assert line["actor"] == "ipc"
    assert line["client_order_id"] == "c-1"
    assert line["qty"] == "1.5"
    assert line["api_secret"] == "***"
    assert "sk-live-123" not in out.getvalue()
    assert out.writers == {"log-writer"}  # not the trio thread


def test_a_line_handed_over_after_the_writer_went_idle_is_written_at_once_not_at_close() -> None:
    # An idle writer waits on a bell the next record rings; a lost ring would hold
    # every line back until the next one, or until the service stops.
    out = TellingStream()
    writer = configure_logging(json=True, stream=out)
    log = structlog.get_logger()
    for n in range(3):
        _wait_until(lambda: writer._asleep)  # a window found nothing: the writer waits to be rung
        log.info("line", n=n)
        assert out.wrote.acquire(timeout=10), f"line {n} was not written while the writer ran"
    assert [line["n"] for line in _lines(out)] == [0, 1, 2]
    assert writer.close()


@pytest.mark.skipif(sys.platform != "linux", reason="the OS thread name is read from /proc")
def test_the_writer_thread_carries_its_name_for_the_os_so_top_shows_it() -> None:
    writer = configure_logging(json=True, stream=io.StringIO())
    names = {comm.read_text().strip() for comm in Path("/proc/self/task").glob("*/comm")}
    assert writer.close()
    assert "log-writer" in names


def test_an_info_line_is_the_line_structlog_writes_and_keeps_its_place_among_them() -> None:
    out = GatedStream()
    out.gate.set()
    writer = configure_logging(json=True, stream=out, clock=lambda: 1_700_000_000.25)
    log = structlog.get_logger().bind(actor="ipc", peer_uid=1000)
    request_line = info_line(log)
    fields = {"kind": "Submit", "qty": "1.5", "api_secret": "sk-live-123", "legs": ["a", "b"]}
    with structlog.contextvars.bound_contextvars(session="s-1", actor="shadowed"):
        log.info("request", **fields)
        request_line("request", fields)
        log.info("between", n=1)
        request_line("request", {**fields, "kind": "Cancel"})
    assert writer.close()
    assert out.writers == {"log-writer"}
    structlog_line, lean_line, between, cancel = out.getvalue().splitlines()
    assert lean_line == structlog_line  # same keys, order, time stamp, masking: byte for byte
    first = json.loads(lean_line)
    assert list(first) == [
        "actor", "peer_uid", "kind", "qty", "api_secret", "legs", "event", "session", "level",
        "timestamp",
    ]  # fmt: skip
    assert (first["actor"], first["session"]) == ("ipc", "s-1")  # bound wins over contextvars
    assert first["api_secret"] == "***"
    assert first["timestamp"] == "2023-11-14T22:13:20.250000Z"
    assert "sk-live-123" not in out.getvalue()
    assert [json.loads(line)["event"] for line in (between, cancel)] == ["between", "request"]
    assert json.loads(cancel)["kind"] == "Cancel"


def test_an_info_line_from_a_clock_of_whole_seconds_is_still_the_line_structlog_writes() -> None:
    # Compiled code would turn a time typed float into one; structlog's chain keeps an int.
    out = io.StringIO()
    writer = configure_logging(json=True, stream=out, clock=lambda: 1_700_000_000)
    log = structlog.get_logger().bind(actor="ipc")
    log.info("request", kind="Submit")
    info_line(log)("request", {"kind": "Submit"})
    assert writer.close()
    structlog_line, lean_line = out.getvalue().splitlines()
    assert lean_line == structlog_line


def test_an_info_line_above_its_level_hands_nothing_over() -> None:
    out = io.StringIO()
    writer = configure_logging(json=True, stream=out, level="warning")
    info_line(structlog.get_logger().bind(actor="ipc"))("request", {"kind": "Submit"})
    assert writer.stats().handed_over == 0
    assert writer.close()
    assert out.getvalue() == ""


def test_an_info_line_goes_through_a_chain_swapped_in_after_it_was_made() -> None:
    writer = configure_logging(json=True, stream=io.StringIO())
    request_line = info_line(structlog.get_logger().bind(actor="ipc"))
    with structlog.testing.capture_logs() as logs:
        request_line("request", {"kind": "Submit"})
    assert writer.close()
    assert logs == [{"actor": "ipc", "kind": "Submit", "event": "request", "log_level": "info"}]


def test_a_full_queue_drops_and_counts_without_blocking_the_caller(stuck: GatedStream) -> None:
    writer = configure_logging(json=True, stream=stuck, capacity=2)
    log = structlog.get_logger()
    log.info("first")
    assert stuck.writing.wait(10)  # the writer thread is stuck writing "first"

    caller = threading.Thread(target=lambda: [log.info("line", n=n) for n in range(5)])
    caller.start()
    caller.join(10)
    assert not caller.is_alive(), "a log call waited for the stream"
    stats = writer.stats()
    assert (stats.pending, stats.dropped) == (2, 3)

    stuck.gate.set()
    assert writer.close()
    lines = _lines(stuck)
    assert [(line["event"], line.get("n")) for line in lines] == [
        ("first", None),
        ("line", 0),
        ("line", 1),
        ("3 log lines dropped", None),
    ]
    assert lines[-1]["dropped"] == 3
    assert lines[-1]["level"] == "warning"
    assert writer.stats().written == 4


def test_close_writes_every_queued_line_before_it_returns(stuck: GatedStream) -> None:
    writer = configure_logging(json=True, stream=stuck)
    log = structlog.get_logger()
    log.info("first")
    assert stuck.writing.wait(10)
    for n in range(100):
        log.info("queued", n=n)
    assert writer.stats().pending == 100

    stuck.gate.set()
    assert writer.close()
    assert [line.get("n") for line in _lines(stuck)] == [None, *range(100)]
    log.info("after close")  # written at once, in this thread
    assert _lines(stuck)[-1]["event"] == "after close"


def test_close_gives_up_on_a_stuck_stream_after_its_bound(stuck: GatedStream) -> None:
    writer = configure_logging(json=True, stream=stuck)
    structlog.get_logger().info("never written")
    assert stuck.writing.wait(10)
    assert writer.close(timeout=0.05) is False


def test_the_time_is_taken_when_the_record_is_handed_over_not_when_written(
    stuck: GatedStream,
) -> None:
    now = [100.0]
    writer = configure_logging(json=True, stream=stuck, clock=lambda: now[0])
    log = structlog.get_logger()
    log.info("first")
    assert stuck.writing.wait(10)
    log.info("second")
    now[0] = 200.0
    stuck.gate.set()
    assert writer.close()
    assert [line["timestamp"] for line in _lines(stuck)] == ["1970-01-01T00:01:40Z"] * 2


class _Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_a_record_that_cannot_be_rendered_is_written_as_its_event_and_the_error() -> None:
    out = io.StringIO()
    writer = configure_logging(json=True, stream=out)
    log = structlog.get_logger()
    log.info("odd value", thing=_Unprintable(), api_key="AKIAREALKEY123")
    log.info("next")
    assert writer.close()
    first, second = _lines(out)
    assert first["event"] == "odd value"
    assert first["log_error"] == "cannot render this record: RuntimeError: no repr"
    assert "AKIAREALKEY123" not in out.getvalue()
    assert second["event"] == "next"


def test_a_stream_that_refuses_writes_costs_lines_not_the_caller() -> None:
    class BrokenPipe(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError("journald went away")

    writer = configure_logging(json=True, stream=BrokenPipe())
    structlog.get_logger().info("lost")
    assert writer.close()
    assert writer.stats().write_failed == 1


def test_health_json_reports_the_log_lines_dropped(stuck: GatedStream, tmp_path: Path) -> None:
    from ult_actors.cli.tables import health_document
    from ult_actors.config import ServiceConfig, ServiceSection
    from ult_actors.service import build_service

    writer = configure_logging(json=True, stream=stuck, capacity=1)
    service = build_service(ServiceConfig(service=ServiceSection(state_dir=str(tmp_path))), env={})
    service.log_lines_dropped = lambda: writer.stats().dropped  # as serve wires it
    assert health_document(service.health())["log_lines_dropped"] == 0
    log = structlog.get_logger()
    log.info("first")
    assert stuck.writing.wait(10)
    for n in range(3):
        log.info("line", n=n)  # one waits, two are dropped
    assert health_document(service.health())["log_lines_dropped"] == 2


#: One for every example, as the writer has one for every line: what it remembers of one
#: example's second must not show in another's.
_UTC = UtcText()


@settings(max_examples=2000, deadline=None)
@given(
    stamp=st.floats(min_value=0, max_value=4e9, allow_nan=False)
    | st.integers(0, 4_000_000_000).map(lambda s: s + 0.9999995)
    | st.integers(0, 4_000_000_000).map(lambda s: s + 0.0000005)
)
def test_the_time_stamp_is_written_as_datetime_writes_it(stamp: float) -> None:
    # The date and time of day are reused within a second: the text must still be
    # datetime's, rounding and carry into the next second included.
    expected = datetime.fromtimestamp(stamp, UTC).isoformat().replace("+00:00", "Z")
    assert _UTC.text(stamp) == expected
    assert _UTC.text(stamp) == expected  # again, from the remembered second


class Windows:
    """Stands in for the writer's sleep: each window ends when the test ends it, so the test
    knows what the writer did in each; after ``open_all`` they end at once."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.begun = 0  # windows the writer has begun to wait out
        self._ended = 0
        self._all = False

    def sleep(self, _seconds: float) -> None:
        with self._changed:
            self.begun += 1
            self._changed.notify_all()
            self._changed.wait_for(lambda: self._all or self._ended >= self.begun, timeout=10)

    def end_one(self) -> None:
        with self._changed:
            self._ended += 1
            self._changed.notify_all()

    def wait_begun(self, n: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.begun >= n, timeout=10)

    def open_all(self) -> None:
        with self._changed:
            self._all = True
            self._changed.notify_all()


def test_lines_handed_over_during_a_write_wait_for_the_next_window_not_a_write_each() -> None:
    # While the writer writes it has handed the GIL back, and the loop hands lines over;
    # taking each of them with a write of its own would take the GIL from the loop again
    # and again while orders run.
    windows = Windows()

    class Busy(io.StringIO):
        """A stream during whose writes the loop hands three more lines over, one a write."""

        def __init__(self) -> None:
            super().__init__()
            self.writes = 0

        def write(self, text: str) -> int:
            self.writes += 1
            if self.writes <= 3:
                writer.hand_over({"event": "meanwhile", "n": self.writes})
            return super().write(text)

    out = Busy()
    writer = LogWriter(out, lambda r: json.dumps(r) + "\n", now=time.time, sleep=windows.sleep)
    try:
        windows.wait_begun(1)
        writer.hand_over({"event": "first"})
        windows.end_one()
        windows.wait_begun(2)  # the first window's write is done: one write, not four
        assert (out.writes, writer.stats().pending) == (1, 1)
        for window in (2, 3, 4):  # each line handed over meanwhile: the next window's write
            windows.end_one()
            windows.wait_begun(window + 1)
            assert (out.writes, writer.stats().pending) == (window, 1 if window < 4 else 0)
    finally:
        windows.open_all()
        assert writer.close()
    assert [line.get("n") for line in _lines(out)] == [None, 1, 2, 3]
