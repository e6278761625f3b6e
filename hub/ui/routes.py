"""The dashboard's router under /ui: every page group's handlers, the stylesheet, and HTML error pages."""

from __future__ import annotations

import hashlib
from importlib.resources import files
from typing import Any, Final

from litestar import Request, Response, Router, get
from litestar.datastructures import State
from litestar.params import FromPath

from hub.ui import auth, clearing, deliveries, downloads, messages, overview, parties
from hub.ui.auth import UiError

# The only files served from hub/ui/static: a fixed list, never a path from the URL.
ASSETS: Final = {"ui.css": "text/css; charset=utf-8"}
_CACHE: dict[str, tuple[bytes, str]] = {}


def _asset(name: str) -> tuple[bytes, str]:
    if name not in _CACHE:
        body = files("hub.ui").joinpath("static", name).read_bytes()
        _CACHE[name] = (body, hashlib.sha256(body).hexdigest()[:16])
    return _CACHE[name]


@get("/static/{name:str}", name="ui-static", include_in_schema=False)
async def static(request: Request[Any, Any, State], name: FromPath[str]) -> Response[bytes]:
    if name not in ASSETS:
        raise UiError(status_code=404, detail=f"no file {name!r}")
    body, etag = _asset(name)
    headers = {"ETag": f'"{etag}"', "Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == f'"{etag}"':
        return Response(b"", status_code=304, headers=headers)
    return Response(body, media_type=ASSETS[name], headers=headers)


@get("/{rest:path}", name="ui-not-found", include_in_schema=False)
async def not_found(request: Request[Any, Any, State], rest: FromPath[str]) -> Response[bytes]:
    # Unknown dashboard paths get the dashboard's HTML 404 rather than the admin API's JSON one.
    raise UiError(status_code=404, detail=f"no page {request.url.path}")


router = Router(
    path="/ui",
    route_handlers=[
        overview.overview,
        *auth.ROUTES,
        *parties.ROUTES,
        *messages.ROUTES,
        *deliveries.ROUTES,
        *clearing.ROUTES,
        *downloads.ROUTES,
        static,
        not_found,
    ],
    exception_handlers=auth.EXCEPTION_HANDLERS,
    include_in_schema=False,
)
