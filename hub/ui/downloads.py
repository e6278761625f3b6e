"""Downloads: a period's statements as CSV or XLSX, for everyone or one counterparty, written by the clearing
exports (`clearing.settlement.exports`, the schema of ``ocpi-hub clearing export``)."""

from __future__ import annotations

import asyncio
import io
import tempfile
from pathlib import Path
from typing import Any, Final

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.params import FromPath

from clearing.browse import list_periods, statement_parties
from clearing.settlement.exports import write_csv, write_xlsx
from clearing.settlement.service import PeriodError, SettlementService, StatementReport
from hub.ui.auth import UiError, require_user, runtime_of
from hub.ui.clearing import party_param
from hub.ui.render import SECURITY_HEADERS, page

XLSX: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@get("/downloads", name="ui-downloads", include_in_schema=False)
async def downloads(request: Request[Any, Any, State]) -> Response[str]:
    user = await require_user(request)
    async with runtime_of(request).sessions() as session:
        periods = [p for p in await list_periods(session) if p.statements]
        parties = await statement_parties(session, [p.label for p in periods])
    return page(request, "downloads.html", user=user, section="downloads", periods=periods, parties=parties)


async def _statements(request: Request[Any, Any, State], label: str, party: str | None) -> list[StatementReport]:
    runtime = runtime_of(request)
    async with runtime.sessions() as session:
        try:
            return await SettlementService(runtime.clock).statements(session, label, party)
        except PeriodError as exc:
            raise UiError(status_code=404, detail=str(exc)) from exc


def _attachment(body: bytes, media_type: str, label: str, party: str | None, suffix: str) -> Response[bytes]:
    name = f"settlement-{label}{'-' + party.replace('/', '-') if party else ''}.{suffix}"
    return Response(
        body,
        media_type=media_type,
        headers={**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
    )


def _label(value: str) -> str:
    # Period labels are short names like 2026-11; anything else cannot be one and must not reach a file name.
    if not value or len(value) > 32 or not all(c.isalnum() or c in "-_" for c in value):
        raise UiError(status_code=404, detail=f"no period {value!r}")
    return value


@get("/downloads/{label:str}/statements.csv", name="ui-download-csv", include_in_schema=False)
async def statement_csv(request: Request[Any, Any, State], label: FromPath[str]) -> Response[bytes]:
    await require_user(request)
    label, party = _label(label), party_param(request)
    out = io.StringIO(newline="")
    write_csv(await _statements(request, label, party), out)
    return _attachment(out.getvalue().encode(), "text/csv; charset=utf-8", label, party, "csv")


def _xlsx_bytes(statements: list[StatementReport]) -> bytes:
    with tempfile.TemporaryDirectory(prefix="ocpi-hub-xlsx-") as folder:
        path = Path(folder) / "statement.xlsx"
        write_xlsx(statements, path)
        return path.read_bytes()


@get("/downloads/{label:str}/statements.xlsx", name="ui-download-xlsx", include_in_schema=False)
async def statement_xlsx(request: Request[Any, Any, State], label: FromPath[str]) -> Response[bytes]:
    await require_user(request)
    label, party = _label(label), party_param(request)
    statements = await _statements(request, label, party)
    # openpyxl writes synchronously; a thread keeps the event loop (and OCPI traffic on it) moving.
    body = await asyncio.to_thread(_xlsx_bytes, statements)
    return _attachment(body, XLSX, label, party, "xlsx")


ROUTES = [downloads, statement_csv, statement_xlsx]
