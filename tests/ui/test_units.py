"""The dashboard's pure parts: session cookies and CSRF tokens, display filters, and the SVG charts' text."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from hub.ui.charts import net_positions_chart, nice_ceiling, traffic_chart
from hub.ui.render import amount, exact, signed, when
from hub.ui.session import LIFETIME, SessionSigner
from routing.traffic import MinuteTraffic, TrafficSummary

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def test_a_session_is_signed_expires_and_binds_its_csrf_token() -> None:
    signer = SessionSigner("secret")
    value = signer.issue(7, NOW)
    claim = signer.verify(value, NOW)
    assert claim is not None
    assert (claim.key_id, claim.expires) == (7, NOW + LIFETIME)
    assert signer.verify(value, NOW + LIFETIME) is None, "expired"
    assert SessionSigner("other").verify(value, NOW) is None, "another secret"
    key_id, expires, nonce, mac = value.split(".")
    for forged in (f"8.{expires}.{nonce}.{mac}", f"{key_id}.{int(expires) + 1}.{nonce}.{mac}", value + "x", "", "."):
        assert signer.verify(forged, NOW) is None, forged
    assert signer.issue(7, NOW) != value, "a fresh nonce per sign-in"
    token = signer.csrf_token(claim)
    assert signer.csrf_ok(claim, token)
    assert not signer.csrf_ok(claim, "")
    other = signer.verify(signer.issue(7, NOW), NOW)
    assert other is not None
    assert not signer.csrf_ok(other, token), "a token belongs to one session"
    with pytest.raises(ValueError, match="secret key"):
        SessionSigner("")


def test_display_filters() -> None:
    assert amount(Decimal("-1234.5")) == "\u22121,234.50"
    assert signed(Decimal("10.7")) == "+10.70"
    assert signed(Decimal("-0.4")) == "\u22120.40"
    assert exact(Decimal("4.8000")) == "4.80"
    assert exact(Decimal("0.123456")) == "0.123456"
    assert exact(16, 3) == "16.000"
    assert amount(None) == ""
    assert amount("n/a") == "n/a", "text that is no number is shown as it is, not an error"
    assert when(datetime(2026, 1, 15, 10, 0, 5, tzinfo=UTC)) == "2026-01-15 10:00:05 UTC"
    assert when("2026-01-15T10:00:00+01:00") == "2026-01-15 09:00:00 UTC"
    assert when(None) == ""


def test_nice_ceiling() -> None:
    assert [nice_ceiling(v) for v in (0, 0.3, 1, 3, 7, 11, 87, 101)] == [1, 0.5, 1, 5, 10, 20, 100, 200]


def test_traffic_chart_has_a_pattern_per_module_and_numbered_axis() -> None:
    since = NOW - timedelta(minutes=9)
    rows = [
        MinuteTraffic(minute=since, module="locations", requests=3, errors=0),
        MinuteTraffic(minute=NOW, module="cdrs", requests=40, errors=2),
        MinuteTraffic(minute=NOW, module="<script>", requests=1, errors=0),
    ]
    svg = str(traffic_chart(TrafficSummary(since=since, minutes=10, rows=rows)))
    assert svg.startswith("<svg")
    assert 'role="img"' in svg
    assert len(set(re.findall(r'fill="url\(#(tp-\d)\)"', svg))) == 3, "one pattern per module"
    assert re.findall(r">(\d+)</text>", svg)[-1] == "50", "the axis ends at a round number above the busiest minute"
    assert "08:51" in svg
    assert "09:00" in svg
    assert "<script>" not in svg, "text is escaped"
    assert "&lt;script&gt;" in svg


def test_net_positions_chart_labels_every_bar_with_its_signed_value() -> None:
    svg = str(net_positions_chart([("DE/EMA", Decimal("-11.00")), ("NL/CPA", Decimal("10.70"))], "EUR"))
    assert "+10.70 EUR receives" in svg
    assert "\u221211.00 EUR pays" in svg
    assert svg.index("NL/CPA") < svg.index("DE/EMA"), "receivers first"
    assert 'fill="url(#np-pay)"' in svg, "payers are hatched, not only red"
