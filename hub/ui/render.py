"""Rendering dashboard pages: the Jinja environment (templates shipped as package data, autoescaped), the display
filters, and the security headers every page carries."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from jinja2 import ChainableUndefined, Environment, PackageLoader, Undefined, select_autoescape
from litestar import Request, Response
from litestar.datastructures import State

# No script runs on the dashboard; styles and images come from the hub itself (inline SVG is markup, not style).
CSP: Final = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Pages show operator data: never kept by shared caches or the browser's back-forward cache.
    "Cache-Control": "no-store",
}
HTML: Final = "text/html; charset=utf-8"


def when(value: object) -> str:
    """``2026-11-28 07:48:02 UTC``: operators compare times across parties, so always UTC, to the second."""
    if value is None or isinstance(value, Undefined):
        return ""
    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
    if not isinstance(moment, datetime):
        return str(value)
    if moment.tzinfo is None:  # stored timestamps are UTC (UtcDateTime); a naive one can only be UTC too
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _number(value: object) -> Decimal | None:
    """A Decimal, or None for anything that is not a finite number (missing keys render empty, not as an error)."""
    if value is None or isinstance(value, Undefined | bool):
        return None
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def amount(value: object, places: int = 2) -> str:
    """Thousands separators and a real minus sign; exact for Decimals (money is never a float here)."""
    number = _number(value)
    if number is None:
        return "" if value is None or isinstance(value, Undefined) else str(value)
    text = f"{abs(number):,.{places}f}"
    return f"\u2212{text}" if number < 0 else text


def signed(value: object, places: int = 2) -> str:
    """An amount with its sign spelled out (plus, or a real minus sign): positions must read right without colour."""
    number = _number(value)
    if number is None:
        return amount(value, places)
    return amount(number, places) if number < 0 else "+" + amount(number, places)


def exact(value: object, minimum: int = 2) -> str:
    """An explanation amount at full precision, but no trailing zeros beyond ``minimum`` places (4.8000 → 4.80)."""
    number = _number(value)
    if number is None:
        return amount(value)
    places = max(minimum, -number.normalize().as_tuple().exponent)  # type: ignore[operator]
    return amount(number, places)


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f} %"


_ENV: Final = Environment(
    loader=PackageLoader("hub.ui", "templates"),
    autoescape=select_autoescape(["html"]),
    # Reports carry optional keys (a fee line has no CDR details): a missing one renders empty, never a 500.
    undefined=ChainableUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters.update({"when": when, "amount": amount, "signed": signed, "exact": exact, "percent": percent})


def render(template: str, **context: Any) -> str:
    return _ENV.get_template(template).render(**context)


def page(
    request: Request[Any, Any, State],
    template: str,
    *,
    user: Any,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Response[str]:
    """A full page: the template with the hub's name, the signed-in user (None on the login page), the section."""
    context.setdefault("section", "")
    body = render(template, hub_name=request.app.state.settings.hub_name, user=user, **context)
    return Response(body, status_code=status_code, media_type=HTML, headers={**SECURITY_HEADERS, **(headers or {})})
