"""Reading optional query parameters of dashboard pages: bad input is a 400 page that names the field, never a 500."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import Request
from litestar.datastructures import State

from hub.ui.auth import UiError


def text(request: Request[Any, Any, State], name: str, *, max_length: int = 128) -> str | None:
    value = (request.query_params.get(name) or "").strip()
    if len(value) > max_length:
        raise UiError(status_code=400, detail=f"{name} is longer than {max_length} characters")
    return value or None


def integer(request: Request[Any, Any, State], name: str, *, low: int = 0, high: int = 2**31 - 1) -> int | None:
    value = text(request, name, max_length=12)
    if value is None:
        return None
    if not value.lstrip("-").isdigit() or not low <= int(value) <= high:
        raise UiError(status_code=400, detail=f"{name} must be a whole number from {low} to {high}, not {value!r}")
    return int(value)


def timestamp(request: Request[Any, Any, State], name: str) -> datetime | None:
    value = text(request, name, max_length=40)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UiError(
            status_code=400, detail=f"{name} must be a date and time like 2026-11-28T09:00, not {value!r}"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
