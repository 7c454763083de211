"""The ``--html`` page in a real headless Chromium: it renders offline, its charts are
in the DOM, and the screenshot shows them drawn in their colours."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from decimal import Decimal
from pathlib import Path

import pytest

from ult_actors.messages import Fill, Order, ReportQuery
from ult_actors.report import build_report
from ult_actors.report.html import write_page
from ult_actors.report.inputs import OrdersAndFills

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's package)"
)
DAY_NS = 86_400 * 10**9
#: Bars of the two brokers' slippage, of the cost per day and of the time to fill.
BLUE, ORANGE = (0x2B, 0x6C, 0xB0), (0xC0, 0x56, 0x21)
PURPLE, GREEN = (0x6B, 0x46, 0xC1), (0x2F, 0x85, 0x5A)


def traded(n: int) -> tuple[list[Order], list[Fill]]:
    """``n`` filled buys over three days at two brokers, each a little worse than arrival."""
    orders, fills = [], []
    for i in range(n):
        broker = ("paper", "alpaca")[i % 2]
        created = 1_780_000_000 * 10**9 + (i % 3) * DAY_NS
        price = Decimal(100) + Decimal(i % 7) / 100
        orders.append(
            Order(
                id=f"o{i}", client_order_id=f"c{i}", broker=broker, symbol="AAPL", side="buy",
                qty=Decimal(10), type="market", time_in_force="day", status="filled",
                filled_qty=Decimal(10), avg_fill_price=price, created_at=created,
                updated_at=created + 10**9, arrival_price=Decimal(100),
                arrival_source="venue_quote",
            )
        )  # fmt: skip
        fills.append(
            Fill(
                fill_id=f"f{i}", order_id=f"o{i}", client_order_id=f"c{i}", broker=broker,
                symbol="AAPL", side="buy", qty=Decimal(10), price=price,
                commission=Decimal("0.05"), ts=created + (i % 5 + 1) * 10**8,
            )
        )  # fmt: skip
    return orders, fills


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    assert CHROMIUM is not None
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]  # fmt: skip
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, timeout=120)


def rgb_pixels(png: bytes) -> list[tuple[int, int, int]]:
    """Every pixel of an 8-bit RGB or RGBA PNG (Chromium's screenshots), filters undone."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, data, header = 8, b"", b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        header = body if kind == b"IHDR" else header
        data += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6)
    step = 3 if colour == 2 else 4
    stride = width * step
    raw = zlib.decompress(data)
    rows: list[bytearray] = []
    prev = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - step] if x >= step else 0
            b = prev[x]
            c = prev[x - step] if x >= step else 0
            if kind == 1:
                line[x] = (line[x] + a) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + b) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[x] = (line[x] + pred) & 0xFF
        rows.append(line)
        prev = line
    return [tuple(r[x : x + 3]) for r in rows for x in range(0, stride, step)]  # type: ignore[misc]


def near(pixel: tuple[int, int, int], colour: tuple[int, int, int]) -> bool:
    return all(abs(p - c) <= 8 for p, c in zip(pixel, colour, strict=True))


def test_the_page_renders_offline_with_its_charts_drawn(tmp_path: Path) -> None:
    orders, fills = traded(300)
    report = build_report(OrdersAndFills(orders, fills), ReportQuery(by="broker", with_charts=True))
    page = tmp_path / "costs.html"
    write_page(report, page)

    dom = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout.decode()
    # Slippage at each of the two brokers, cost per day, time to last fill.
    assert html.count("<svg") == 4
    assert html.count("<rect") >= 4 * 3
    assert "Slippage at alpaca" in html and "Slippage at paper" in html

    shot = tmp_path / "shot.png"
    # Half scale: the same page in a quarter of the pixels, which this test decodes in Python.
    done = chromium(
        tmp_path,
        f"--screenshot={shot}",
        "--window-size=1400,1000",
        "--force-device-scale-factor=0.5",
        page.as_uri(),
    )
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = rgb_pixels(shot.read_bytes())
    drawn = sum(1 for p in pixels if p != (255, 255, 255))
    assert drawn > len(pixels) // 50  # far from a blank page
    for colour in (BLUE, ORANGE, PURPLE, GREEN):  # every chart's bars are drawn
        assert sum(1 for p in pixels if near(p, colour)) > 200, colour
