"""REST list queries (limit, offset, sort, ilike, filter, include) turned into SQL safely.

Column names are looked up in a per-resource allow-list that maps them to fixed SQL; a name
that is not there never reaches SQL. Values are always bound parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_LIMIT = 100


class QueryError(ValueError):
    """A list query that names something not allowed; the message names the parameter and value."""


@dataclass(frozen=True)
class ListQuery:
    limit: int = DEFAULT_LIMIT  # 0: no limit
    offset: int = 0
    sort: tuple[tuple[str, bool], ...] = ()  # (column, descending)
    ilike: tuple[tuple[str, str], ...] = ()  # (column, text): ORed
    filter: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (column, alternatives): ANDed
    include: tuple[str, ...] = ()


@dataclass(frozen=True)
class Listing:
    """What one resource can be listed by: API column name -> SQL expression, and includes."""

    columns: Mapping[str, str]
    default_order: str  # SQL, applied after the requested sorts (a stable order for paging)
    includes: frozenset[str] = field(default_factory=frozenset)

    def check(self, query: ListQuery) -> None:
        named = [("sort", name) for name, _ in query.sort]
        named += [("ilike", name) for name, _ in query.ilike]
        named += [("filter", name) for name, _ in query.filter]
        for parameter, name in named:
            if name not in self.columns:
                raise QueryError(f"{parameter}: unknown column {name!r:.60}; allowed: {', '.join(self.columns)}")
        for name in query.include:
            if name not in self.includes:
                allowed = ", ".join(sorted(self.includes)) or "none"
                raise QueryError(f"include: unknown relation {name!r:.60}; allowed: {allowed}")

    def where(self, query: ListQuery, scope: list[tuple[str, Any]]) -> tuple[str, list[Any]]:
        """The WHERE clause: the caller's fixed scope conditions, the filters, the ilikes."""
        self.check(query)
        conditions = [condition for condition, _ in scope]
        params: list[Any] = [value for _, value in scope]
        for name, alternatives in query.filter:
            placeholders = ", ".join("?" for _ in alternatives)
            conditions.append(f"CAST({self.columns[name]} AS VARCHAR) IN ({placeholders})")
            params.extend(alternatives)
        if query.ilike:
            matches = [f"CAST({self.columns[name]} AS VARCHAR) ILIKE ? ESCAPE '\\'" for name, _ in query.ilike]
            conditions.append("(" + " OR ".join(matches) + ")")
            params.extend(f"%{_escape_like(text)}%" for _, text in query.ilike)
        return ("WHERE " + " AND ".join(conditions)) if conditions else "", params

    def order_and_page(self, query: ListQuery) -> tuple[str, list[Any]]:
        self.check(query)
        requested = [f"{self.columns[name]} {'DESC' if desc else 'ASC'}" for name, desc in query.sort]
        clause = "ORDER BY " + ", ".join([*requested, self.default_order])
        if query.limit > 0:
            return f"{clause} LIMIT ? OFFSET ?", [query.limit, query.offset]
        return f"{clause} OFFSET ?", [query.offset]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


USERS = Listing(
    columns={
        "id": "id",
        "username": "username",
        "first_name": "first_name",
        "last_name": "last_name",
        "admin": "admin",
        "last_login": "last_login",
    },
    default_order="id",
)

MODEL_INCLUDES = frozenset({"refiner", "inpainter", "vae", "lora", "lycoris", "inversion", "scheduler", "config"})

MODELS = Listing(
    columns={
        "name": "name",
        "model": "model",
        "size": "size",
        "prompt": "prompt",
        "negative_prompt": "negative_prompt",
    },
    default_order="name",
    includes=MODEL_INCLUDES,
)

INVOCATIONS = Listing(
    columns={
        "id": "uuid",
        "status": "status",
        "started": "created",
        "duration": "epoch(ended) - epoch(created)",
        "outputs": "outputs",
        "error": "error",
    },
    default_order="created DESC, id DESC",
)
