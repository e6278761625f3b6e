"""Signing in to the dashboard with an operator API key, signing out, and the checks every page and form runs.

The key is verified by the admin service (`hub.admin.service.operator_for_key`, the same check as the admin API's
``Authorization: Bearer``); the roles are the admin API's: every role reads, finance and admin act on clearing,
admin acts on parties and deliveries. A POST must carry the session's CSRF token and, when the browser sends an
``Origin``, come from the hub's own origin (the login form too, against login CSRF).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlsplit

import structlog
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie, State
from litestar.exceptions import HTTPException

from hub.admin.controllers import READ_ROLES
from hub.admin.service import Operator, operator_by_id, operator_for_key
from hub.runtime import Runtime
from hub.ui.render import SECURITY_HEADERS, page
from hub.ui.session import COOKIE, COOKIE_PATH, LIFETIME, SessionClaim, SessionSigner

log = structlog.get_logger("hub.ui")

MAX_FORM_FIELD: Final = 4096


@dataclass(frozen=True, slots=True)
class UiUser:
    operator: Operator
    csrf: str

    @property
    def name(self) -> str:
        return self.operator.name

    @property
    def role(self) -> str:
        return self.operator.role

    @property
    def can_operate(self) -> bool:
        return self.operator.role == "admin"

    @property
    def can_clear(self) -> bool:
        return self.operator.role in ("admin", "finance")


class LoginRequired(Exception):  # noqa: N818 - a redirect, not an error
    """No valid session: the browser goes to the login page and comes back to ``next`` afterwards."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class UiError(HTTPException):
    """A page-level refusal (403, 404, 400…) shown as an HTML page with the message."""


def runtime_of(request: Request[Any, Any, State]) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _signer(request: Request[Any, Any, State]) -> SessionSigner:
    return SessionSigner(runtime_of(request).settings.secret_key)


def _claim(request: Request[Any, Any, State]) -> SessionClaim | None:
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    return _signer(request).verify(value, runtime_of(request).clock.now())


async def current_user(request: Request[Any, Any, State]) -> UiUser | None:
    claim = _claim(request)
    if claim is None:
        return None
    operator = await operator_by_id(runtime_of(request).sessions, claim.key_id)
    if operator is None:  # revoked since the login
        return None
    return UiUser(operator, _signer(request).csrf_token(claim))


async def require_user(request: Request[Any, Any, State], roles: frozenset[str] = READ_ROLES) -> UiUser:
    user = await current_user(request)
    if user is None:
        raise LoginRequired(_local_path(request.url.path + (f"?{request.url.query}" if request.url.query else "")))
    if user.role not in roles:
        raise UiError(status_code=403, detail=f"The role {user.role!r} may not do this.")
    return user


def _local_path(value: str | None) -> str:
    """Only a dashboard path may follow a login (no open redirect to another site)."""
    if not value or not value.startswith("/ui") or value.startswith("//") or "\\" in value:
        return "/ui/"
    return value


def _same_origin(request: Request[Any, Any, State]) -> bool:
    origin = request.headers.get("origin")
    if origin is None:  # not sent by this client (non-browser); the CSRF token still guards session forms
        return True
    host = request.headers.get("host", "")
    public = urlsplit(runtime_of(request).settings.public_url)
    given = urlsplit(origin)
    return given.netloc == host or (given.scheme, given.netloc) == (public.scheme, public.netloc)


async def form_of(request: Request[Any, Any, State]) -> dict[str, str]:
    """The posted form's fields (first value of each), bounded; a body that is no form gives no fields."""
    try:
        form = await request.form()
    except Exception:  # a malformed body is an empty form: the CSRF check then refuses it with a clear message
        return {}
    return {key: str(value)[:MAX_FORM_FIELD] for key, value in form.items() if isinstance(value, str)}


async def require_action(request: Request[Any, Any, State], roles: frozenset[str]) -> tuple[UiUser, dict[str, str]]:
    """For a POST: a signed-in user with one of ``roles``, the hub's own origin and the session's CSRF token."""
    user = await require_user(request, roles)
    form = await form_of(request)
    claim = _claim(request)
    if not _same_origin(request) or claim is None or not _signer(request).csrf_ok(claim, form.get("csrf", "")):
        raise UiError(status_code=403, detail="The form expired or came from elsewhere; reload the page and try again.")
    return user, form


def _session_cookie(request: Request[Any, Any, State], value: str, max_age: int) -> Cookie:
    secure = runtime_of(request).settings.public_url.startswith("https:") or request.url.scheme == "https"
    return Cookie(
        key=COOKIE,
        value=value,
        path=COOKIE_PATH,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=secure,
    )


def redirect(location: str, *, cookies: list[Cookie] | None = None) -> Response[str]:
    # 303: after a POST the browser GETs the next page (a reload does not post again).
    return Response("", status_code=303, headers={**SECURITY_HEADERS, "Location": location}, cookies=cookies)


@get("/login", name="ui-login", include_in_schema=False)
async def login_form(request: Request[Any, Any, State]) -> Response[str]:
    next_path = _local_path(request.query_params.get("next"))
    if await current_user(request) is not None:
        return redirect(next_path)
    return page(request, "login.html", user=None, next_path=next_path, error=None)


@post("/login", name="ui-login-post", include_in_schema=False, status_code=303)
async def login(request: Request[Any, Any, State]) -> Response[str]:
    form = await form_of(request)
    next_path = _local_path(form.get("next"))
    if not _same_origin(request):
        return page(request, "login.html", user=None, next_path=next_path, status_code=403,
                    error="This sign-in did not come from the dashboard's own page.")  # fmt: skip
    key = form.get("key", "").strip()
    operator = await operator_for_key(runtime_of(request).sessions, key) if key else None
    if operator is None:
        log.warning("dashboard sign-in refused", client=request.client.host if request.client else None)
        return page(request, "login.html", user=None, next_path=next_path, status_code=401,
                    error="That key is not a valid operator key (or it was revoked).")  # fmt: skip
    log.info("dashboard sign-in", operator=operator.name, role=operator.role)
    value = _signer(request).issue(operator.id, runtime_of(request).clock.now())
    return redirect(next_path, cookies=[_session_cookie(request, value, int(LIFETIME.total_seconds()))])


@post("/logout", name="ui-logout", include_in_schema=False, status_code=303)
async def logout(request: Request[Any, Any, State]) -> Response[str]:
    user = await current_user(request)
    if user is not None:
        await require_action(request, READ_ROLES)
        log.info("dashboard sign-out", operator=user.name)
    return redirect("/ui/login", cookies=[_session_cookie(request, "", 0)])


def login_redirect(_request: Request[Any, Any, State], exc: Exception) -> Response[str]:
    next_path = exc.next_path if isinstance(exc, LoginRequired) else "/ui/"
    target = "/ui/login" if next_path in ("/ui", "/ui/") else f"/ui/login?next={quote(next_path, safe='/')}"
    return redirect(target)


def error_page(request: Request[Any, Any, State], exc: Exception) -> Response[str]:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "Internal error; see the hub's log."
    if status >= 500:
        log.exception("dashboard error", path=request.url.path)
    titles = {400: "Bad request", 403: "Not allowed", 404: "Not found", 405: "Method not allowed"}
    return page(request, "error.html", user=None, status_code=status, title=titles.get(status, "Error"),
                detail=detail)  # fmt: skip


ROUTES = [login_form, login, logout]
EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    LoginRequired: login_redirect,
    HTTPException: error_page,
}
