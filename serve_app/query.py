"""REST list parameters: limit and offset (Enfugue's query language grows here)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from serve_app.errors import BadRequestError

DEFAULT_LIMIT = 100


@dataclass(frozen=True)
class Page:
    limit: int  # 0 means no limit
    offset: int


def _whole_number(request: Request, name: str, default: int) -> int:
    values = request.query_params.getlist(name)
    if not values:
        return default
    if len(values) > 1:
        raise BadRequestError(f"{name}: given {len(values)} times; give it once")
    value = values[0]
    if not value.isdigit():
        raise BadRequestError(f"{name}: must be a whole number >= 0, got {value!r:.40}")
    return int(value)


def parse_page(request: Request) -> Page:
    return Page(limit=_whole_number(request, "limit", DEFAULT_LIMIT), offset=_whole_number(request, "offset", 0))
