"""Bounded integer parameters for the admin API and the dashboard.

Row ids are PostgreSQL ``integer`` columns. A larger number names no row, but handed to the driver it is an error
(asyncpg's "out of int32 range", SQLite's OverflowError) that surfaced as a 500; a negative ``limit`` is one too.
Declared with bounds, Litestar refuses them as a 400 that names the parameter.
"""

from __future__ import annotations

from typing import Annotated, Final, TypeAlias

from litestar.params import Parameter

#: The largest id an ``integer`` column holds.
MAX_ROW_ID: Final = 2**31 - 1

#: A row id in a path or query.
RowId: TypeAlias = Annotated[int, Parameter(ge=1, le=MAX_ROW_ID)]
#: An optional row id filter in a query.
RowIdFilter: TypeAlias = Annotated[int | None, Parameter(ge=1, le=MAX_ROW_ID)]
#: How many rows a list answers; larger values are capped by the route (at 1,000).
Limit: TypeAlias = Annotated[int, Parameter(ge=1)]
#: An OCPI status code filter (1000-4999 are defined; anything in four digits is accepted as a filter).
StatusCodeFilter: TypeAlias = Annotated[int | None, Parameter(ge=0, le=9999)]
