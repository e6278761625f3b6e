"""The operator dashboard at /ui/ (DESIGN §1, §9): server-rendered HTML pages for hub operators and finance.

It owns the login with an operator API key (the admin API's keys and roles), the signed session cookie and CSRF
tokens, the Jinja templates, one stylesheet, the server-made SVG charts, and one small module of route handlers per
page group (overview, parties, message log, deliveries, clearing, downloads). It reads and acts only through the
services the admin API and the CLI use (registry, message log, outbox, admin actions, clearing services); it runs no
SQL of its own and is never on the OCPI fast path (the routing app serves /ocpi before Litestar routes anything).
"""

from __future__ import annotations

from hub.ui.routes import router

__all__ = ["router"]
