"""Server-made SVG charts that read without colour: every series has its own fill pattern as well as its own colour,
axes carry numbers, and every bar that stands for money is labelled with its signed value.

Pure functions from data to markup (`markupsafe.Markup`); every piece of text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Final

from markupsafe import Markup, escape

from hub.ui.render import signed
from routing.traffic import TrafficSummary

# Okabe-Ito: distinguishable with the common colour-vision deficiencies; the patterns carry the rest.
PALETTE: Final = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#999933", "#555555")
PATTERNS: Final = ("solid", "diagonal", "dots", "cross", "horizontal", "vertical", "backward", "grid")


def _pattern(pid: str, kind: str, colour: str) -> str:
    base = f'<pattern id="{pid}" width="6" height="6" patternUnits="userSpaceOnUse">'
    background = f'<rect width="6" height="6" fill="{colour}" fill-opacity="0.35"/>'
    strokes = {
        "solid": f'<rect width="6" height="6" fill="{colour}"/>',
        "diagonal": f'{background}<path d="M-1,1 l2,-2 M0,6 l6,-6 M5,7 l2,-2" stroke="{colour}" stroke-width="1.6"/>',
        "dots": f'{background}<circle cx="3" cy="3" r="1.5" fill="{colour}"/>',
        "cross": f'{background}<path d="M0,0 L6,6 M6,0 L0,6" stroke="{colour}" stroke-width="1.2"/>',
        "horizontal": f'{background}<path d="M0,3 H6" stroke="{colour}" stroke-width="2"/>',
        "vertical": f'{background}<path d="M3,0 V6" stroke="{colour}" stroke-width="2"/>',
        "backward": f'{background}<path d="M-1,5 l2,2 M0,0 l6,6 M5,-1 l2,2" stroke="{colour}" stroke-width="1.6"/>',
        "grid": f'{background}<path d="M0,3 H6 M3,0 V6" stroke="{colour}" stroke-width="1"/>',
    }
    return base + strokes[kind] + "</pattern>"


def series_style(index: int) -> tuple[str, str]:
    """(colour, pattern name) of the n-th series."""
    return PALETTE[index % len(PALETTE)], PATTERNS[index % len(PATTERNS)]


def swatch(index: int, prefix: str = "sw") -> Markup:
    """A small legend square with the series' colour and pattern."""
    colour, kind = series_style(index)
    pid = f"{prefix}-{index}"
    return Markup(  # noqa: S704 - numbers and fixed colours only
        f'<svg class="swatch" width="16" height="16" viewBox="0 0 16 16" aria-hidden="true">'
        f"<defs>{_pattern(pid, kind, colour)}</defs>"
        f'<rect x="0.5" y="0.5" width="15" height="15" fill="url(#{pid})" stroke="{colour}"/></svg>'
    )


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (a readable axis maximum)."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        candidate = step * 10.0**exponent
        if candidate >= value:
            return candidate
    return 10.0 ** (exponent + 1)  # pragma: no cover - the loop always returns


def traffic_chart(traffic: TrafficSummary, *, width: int = 760, height: int = 240) -> Markup:
    """Stacked bars of inbound requests per minute, one layer per module (patterned), with a numbered y axis."""
    modules = traffic.modules()
    left, right, top, bottom = 44, 12, 14, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    slot = plot_w / traffic.minutes
    counts: dict[tuple[int, str], int] = {}
    totals = [0] * traffic.minutes
    for row in traffic.rows:
        index = int((row.minute - traffic.since) / timedelta(minutes=1))
        if 0 <= index < traffic.minutes:
            counts[index, row.module] = counts.get((index, row.module), 0) + row.requests
            totals[index] += row.requests
    # Up to five gridlines at whole, readable steps (requests are counted, so never half a request).
    highest = max(totals, default=0)
    step = max(1.0, nice_ceiling(highest / 5))
    ticks = max(1, math.ceil(highest / step))
    peak = step * ticks
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-labelledby="traffic-title">',
        f'<title id="traffic-title">Requests into the hub per minute and module, last {traffic.minutes} minutes'
        f"</title>",
        "<defs>",
        *(_pattern(f"tp-{i}", series_style(i)[1], series_style(i)[0]) for i in range(len(modules))),
        "</defs>",
    ]
    for tick in range(ticks + 1):
        value = step * tick
        y = top + plot_h - plot_h * tick / ticks
        label = f"{value:g}" if value < 10_000 else f"{value / 1000:g}k"
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    for index in range(traffic.minutes):
        x = left + index * slot + slot * 0.12
        bar_w = slot * 0.76
        y = top + plot_h
        minute = traffic.since + timedelta(minutes=index)
        for series, module in enumerate(modules):
            n = counts.get((index, module), 0)
            if not n:
                continue
            h = plot_h * n / peak
            y -= h
            colour = series_style(series)[0]
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="url(#tp-{series})" '
                f'stroke="{colour}" stroke-width="0.8"><title>{minute:%H:%M} {escape(module)}: {n}</title></rect>'
            )
        if index % 5 == 0 or index == traffic.minutes - 1:
            parts.append(
                f'<text class="axis" x="{x + bar_w / 2:.1f}" y="{height - 10}" text-anchor="middle">'
                f"{minute:%H:%M}</text>"
            )
    parts.append(
        f'<line class="baseline" x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}"/></svg>'
    )
    return Markup("".join(parts))  # noqa: S704 - every piece of text in ``parts`` went through escape()


def net_positions_chart(positions: Sequence[tuple[str, Decimal]], currency: str, *, width: int = 760) -> Markup:
    """Horizontal bars around a zero line: receivers to the right (solid), payers to the left (hatched), each bar
    labelled with its signed amount and "receives" or "pays"."""
    rows = sorted(positions, key=lambda item: (-item[1], item[0]))
    bar_h, gap, top, label_w, value_w = 22, 10, 10, 90, 150
    height = top * 2 + len(rows) * (bar_h + gap)
    centre = label_w + (width - label_w) / 2
    half = (width - label_w) / 2 - value_w
    peak = max((abs(a) for _, a in rows), default=Decimal(0)) or Decimal(1)
    pos_colour, neg_colour = "#1b7f3b", "#b3261e"
    title = f"Net positions after fees in {currency}: positive receives, negative pays"
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-labelledby="np-{escape(currency)}">',
        f'<title id="np-{escape(currency)}">{escape(title)}</title><defs>',
        _pattern("np-pay", "diagonal", neg_colour),
        "</defs>",
    ]
    for index, (party, value) in enumerate(rows):
        y = top + index * (bar_h + gap)
        length = float(abs(value) / peak) * half
        receives = value >= 0
        x = centre if receives else centre - length
        fill, stroke = (pos_colour, pos_colour) if receives else ("url(#np-pay)", neg_colour)
        words = "receives" if value > 0 else "pays" if value < 0 else "even"
        text = f"{signed(value)} {currency} {words}"
        parts.append(
            f'<text class="label" x="{label_w - 8}" y="{y + bar_h / 2 + 4}" text-anchor="end">{escape(party)}</text>'
        )
        parts.append(
            f'<rect x="{x:.1f}" y="{y}" width="{max(length, 1):.1f}" height="{bar_h}" fill="{fill}" '
            f'stroke="{stroke}"><title>{escape(party)}: {escape(text)}</title></rect>'
        )
        anchor, tx = ("start", x + max(length, 1) + 6) if receives else ("end", x - 6)
        parts.append(
            f'<text class="value" x="{tx:.1f}" y="{y + bar_h / 2 + 4}" text-anchor="{anchor}">{escape(text)}</text>'
        )
    parts.append(f'<line class="zero" x1="{centre}" x2="{centre}" y1="{top - 4}" y2="{height - top + 4}"/></svg>')
    return Markup("".join(parts))  # noqa: S704 - every piece of text in ``parts`` went through escape()
