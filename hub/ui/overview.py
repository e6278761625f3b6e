"""The overview page: parties by status, traffic per minute per module, error rate, failed deliveries."""

from __future__ import annotations

from collections import Counter
from typing import Any, Final

from litestar import Request, Response, get
from litestar.datastructures import State

from clearing.browse import list_periods
from hub.parties.models import Platform, RegistrationStatus
from hub.ui import params
from hub.ui.auth import UiError, require_user, runtime_of
from hub.ui.charts import swatch, traffic_chart
from hub.ui.render import page
from routing import outbox
from routing.traffic import traffic_per_minute

# Minutes of traffic the overview can show (30 by default). The minutes are grouped in the database over the message
# log's rows of the window, so the window stays short: a busy hub writes thousands of rows a second.
WINDOWS: Final = (10, 30, 60)
# The order operators read them in: working, needs a look, on purpose, not yet.
STATUS_ORDER: Final = ("CONNECTED", "OFFLINE", "SUSPENDED", "PLANNED", "INVITED", "CONNECTING", "UNREGISTERED")


def party_status(platform: Platform) -> str:
    """A party's status as HubClientInfo would tell it, or where its platform stands before/after registration."""
    return platform.connection_status if platform.status == RegistrationStatus.REGISTERED else platform.status


@get("/", name="ui-overview", include_in_schema=False)
async def overview(request: Request[Any, Any, State]) -> Response[str]:
    user = await require_user(request)
    window = params.integer(request, "minutes") or 30
    if window not in WINDOWS:
        raise UiError(status_code=400, detail=f"minutes must be one of {', '.join(map(str, WINDOWS))}")
    runtime = runtime_of(request)
    platforms = await runtime.registry.list_platforms()
    statuses = Counter(party_status(p) for p in platforms for _ in p.parties)
    async with runtime.sessions() as session:
        traffic = await traffic_per_minute(session, now=runtime.clock.now(), minutes=window)
        deliveries = await outbox.count_by_status(session)
        latest = await list_periods(session, limit=1)
    modules = traffic.modules()
    per_module = {m: [0, 0] for m in modules}
    for row in traffic.rows:
        per_module[row.module][0] += row.requests
        per_module[row.module][1] += row.errors
    return page(
        request,
        "overview.html",
        user=user,
        section="overview",
        statuses=[(s, statuses[s]) for s in STATUS_ORDER if statuses[s]]
        + [(s, n) for s, n in sorted(statuses.items()) if s not in STATUS_ORDER],
        party_count=sum(statuses.values()),
        platform_count=len(platforms),
        traffic=traffic,
        chart=traffic_chart(traffic),
        legend=[(swatch(i), m, per_module[m][0], per_module[m][1]) for i, m in enumerate(modules)],
        deliveries=deliveries,
        window=window,
        windows=WINDOWS,
        period=latest[0] if latest else None,
    )
