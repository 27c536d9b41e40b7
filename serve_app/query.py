"""Enfugue's REST list parameters read from the query string: limit, offset, sort, ilike, filter, include."""

from __future__ import annotations

from fastapi import Request

from serve_app.errors import BadRequestError
from storage.listing import DEFAULT_LIMIT, Listing, ListQuery, QueryError

# Bounds for limit and offset: far past any real page, well inside DuckDB's BIGINT.
MAX_PAGE_NUMBER = 1_000_000_000


def _whole_number(request: Request, name: str, default: int) -> int:
    values = request.query_params.getlist(name)
    if not values:
        return default
    if len(values) > 1:
        raise BadRequestError(f"{name}: given {len(values)} times; give it once")
    value = values[0]
    # isdigit() alone admits "²" and other digits int() refuses.
    if not (value.isascii() and value.isdigit()) or len(value) > 10 or int(value) > MAX_PAGE_NUMBER:
        raise BadRequestError(f"{name}: must be a whole number from 0 to {MAX_PAGE_NUMBER}, got {value!r:.40}")
    return int(value)


def _pairs(request: Request, name: str) -> list[tuple[str, str]]:
    """``name=column:value`` parameters as (column, value); the value may itself hold colons."""
    pairs = []
    for raw in request.query_params.getlist(name):
        column, separator, value = raw.partition(":")
        if not separator or not column:
            raise BadRequestError(f"{name}: expected <column>:<value>, got {raw!r:.60}")
        pairs.append((column, value))
    return pairs


def _sorts(request: Request) -> tuple[tuple[str, bool], ...]:
    sorts = []
    for raw in request.query_params.getlist("sort"):
        column, _, direction = raw.partition(":")
        if direction.lower() not in ("", "asc", "desc"):
            raise BadRequestError(f"sort: unknown direction {direction!r:.40}; allowed: asc, desc")
        sorts.append((column, direction.lower() == "desc"))
    return tuple(sorts)


def parse_list_query(request: Request, listing: Listing) -> ListQuery:
    query = ListQuery(
        limit=_whole_number(request, "limit", DEFAULT_LIMIT),
        offset=_whole_number(request, "offset", 0),
        sort=_sorts(request),
        ilike=tuple(_pairs(request, "ilike")),
        filter=tuple((column, tuple(value.split("|"))) for column, value in _pairs(request, "filter")),
        include=tuple(request.query_params.getlist("include")),
    )
    try:
        listing.check(query)
    except QueryError as error:
        raise BadRequestError(str(error)) from error
    return query
