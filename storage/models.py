"""Preconfigured models (Enfugue's DiffusionModel) and their parts, stored and read back."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import duckdb

from serve_app.errors import NotFoundError, StateConflictError
from storage.listing import MODELS, ListQuery
from storage.metadata import Metadata


@dataclass(frozen=True)
class Part:
    """One include: its table, Enfugue's type name, and its attribute columns."""

    table: str
    type_name: str
    columns: tuple[str, ...]
    many: bool  # a list of rows (lora) rather than at most one (vae)


PARTS: dict[str, Part] = {
    "refiner": Part("model_refiners", "DiffusionModelRefiner", ("model", "size"), many=False),
    "inpainter": Part("model_inpainters", "DiffusionModelInpainter", ("model", "size"), many=False),
    "vae": Part("model_vaes", "DiffusionModelVAE", ("name",), many=False),
    "scheduler": Part("model_schedulers", "DiffusionModelScheduler", ("name",), many=False),
    "lora": Part("model_loras", "DiffusionModelLora", ("model", "weight"), many=True),
    "lycoris": Part("model_lycoris", "DiffusionModelLycoris", ("model", "weight"), many=True),
    "inversion": Part("model_inversions", "DiffusionModelInversion", ("model",), many=True),
    "config": Part(
        "model_configs", "DiffusionModelDefaultConfiguration", ("configuration_key", "configuration_value"), many=True
    ),
}
_MODEL_COLUMNS = ("name", "model", "size", "prompt", "negative_prompt")


def _model(row: tuple[Any, ...]) -> dict[str, Any]:
    return {"type": "DiffusionModel", "attributes": dict(zip(_MODEL_COLUMNS, row, strict=True))}


# Pages of GET /api/models kept between changes (the listing is read far more often than written).
_CACHED_PAGES = 256


class Models:
    def __init__(self, db: Metadata) -> None:
        self._db = db
        self._pages: dict[tuple[ListQuery, str | None], tuple[list[dict[str, Any]], int]] = {}

    def list(self, query: ListQuery, name: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """One page and the count of matches; kept until a model changes (all writes pass here)."""
        key = (query, name)
        with self._db.lock:  # writers clear the pages holding it, inside their transaction
            page = self._pages.get(key)
            if page is None:
                page = self._list(query, name)
                if len(self._pages) >= _CACHED_PAGES:
                    self._pages.clear()
                self._pages[key] = page
        return copy.deepcopy(page)

    def _list(self, query: ListQuery, name: str | None) -> tuple[list[dict[str, Any]], int]:
        where, params = MODELS.where(query, [("name = ?", name)] if name is not None else [])
        count = self._db.fetch(f"SELECT count(*) FROM models {where}", params)[0][0]
        order, page = MODELS.order_and_page(query)
        rows = self._db.fetch(f"SELECT {', '.join(_MODEL_COLUMNS)} FROM models {where} {order}", params + page)
        models = [_model(row) for row in rows]
        for model in models:
            if query.include:
                model["include"] = {rel: self._part_objects(model["attributes"]["name"], rel) for rel in query.include}
        return models, int(count)

    def get(self, name: str) -> dict[str, Any]:
        """The model's attributes and every part, as plain values (for planning an invocation)."""
        rows = self._db.fetch(f"SELECT {', '.join(_MODEL_COLUMNS)} FROM models WHERE name = ?", [name])
        if not rows:
            raise NotFoundError(f"Model {name!r:.80} not found.")
        spec = _model(rows[0])["attributes"]
        for relation, part in PARTS.items():
            values = [dict(zip(part.columns, row, strict=True)) for row in self._part_rows(name, part)]
            if relation == "config":
                spec["config"] = {value["configuration_key"]: value["configuration_value"] for value in values}
            elif part.many:
                spec[relation] = values
            else:
                spec[relation] = values[0] if values else None
        return spec

    def find(self, name: str) -> dict[str, Any] | None:
        """As ``get``, or None when there is no model of that name."""
        try:
            return self.get(name)
        except NotFoundError:
            return None

    def create(self, spec: dict[str, Any]) -> dict[str, Any]:
        with self._db.transaction() as connection:
            self._pages.clear()
            if connection.execute("SELECT 1 FROM models WHERE name = ?", [spec["name"]]).fetchall():
                raise StateConflictError(f"Model {spec['name']!r:.80} already exists.")
            connection.execute(
                f"INSERT INTO models ({', '.join(_MODEL_COLUMNS)}) VALUES (?, ?, ?, ?, ?)",
                [spec[column] for column in _MODEL_COLUMNS],
            )
            self._write_parts(connection, spec["name"], spec)
        return self.list(ListQuery(), spec["name"])[0][0]

    def update(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change the given attributes; a part given is replaced whole (null or [] removes it)."""
        current = self.get(name)
        new_name = changes.get("name", name)
        with self._db.transaction() as connection:
            self._pages.clear()
            if new_name != name and connection.execute("SELECT 1 FROM models WHERE name = ?", [new_name]).fetchall():
                raise StateConflictError(f"Model {new_name!r:.80} already exists.")
            merged = {**current, **changes, "name": new_name}
            connection.execute("DELETE FROM models WHERE name = ?", [name])
            connection.execute(
                f"INSERT INTO models ({', '.join(_MODEL_COLUMNS)}) VALUES (?, ?, ?, ?, ?)",
                [merged[column] for column in _MODEL_COLUMNS],
            )
            for part in PARTS.values():
                connection.execute(f"DELETE FROM {part.table} WHERE diffusion_model_name = ?", [name])
            self._write_parts(connection, new_name, merged)
        return self.list(ListQuery(), new_name)[0][0]

    def delete(self, name: str) -> None:
        self.get(name)
        with self._db.transaction() as connection:
            self._pages.clear()
            for part in PARTS.values():
                connection.execute(f"DELETE FROM {part.table} WHERE diffusion_model_name = ?", [name])
            connection.execute("DELETE FROM models WHERE name = ?", [name])

    # parts

    def _part_rows(self, name: str, part: Part) -> list[tuple[Any, ...]]:
        rows = self._db.fetch(
            f"SELECT {', '.join(part.columns)} FROM {part.table} WHERE diffusion_model_name = ? ORDER BY rowid", [name]
        )
        if part.table == "model_configs":
            return [(key, json.loads(value)) for key, value in rows]
        return rows

    def _part_objects(self, name: str, relation: str) -> list[dict[str, Any]]:
        part = PARTS[relation]
        return [
            {
                "type": part.type_name,
                "attributes": {"diffusion_model_name": name, **dict(zip(part.columns, row, strict=True))},
            }
            for row in self._part_rows(name, part)
        ]

    @staticmethod
    def _write_parts(connection: duckdb.DuckDBPyConnection, name: str, spec: dict[str, Any]) -> None:
        rows: dict[str, list[tuple[Any, ...]]] = {
            "refiner": [(spec["refiner"]["model"], spec["refiner"]["size"])] if spec.get("refiner") else [],
            "inpainter": [(spec["inpainter"]["model"], spec["inpainter"]["size"])] if spec.get("inpainter") else [],
            "vae": [(spec["vae"]["name"],)] if spec.get("vae") else [],
            "scheduler": [(spec["scheduler"]["name"],)] if spec.get("scheduler") else [],
            "lora": [(item["model"], item["weight"]) for item in spec.get("lora") or []],
            "lycoris": [(item["model"], item["weight"]) for item in spec.get("lycoris") or []],
            "inversion": [(item["model"],) for item in spec.get("inversion") or []],
            "config": [(key, json.dumps(value)) for key, value in (spec.get("config") or {}).items()],
        }
        for relation, values in rows.items():
            part = PARTS[relation]
            columns = ", ".join(("diffusion_model_name", *part.columns))
            placeholders = ", ".join("?" for _ in range(len(part.columns) + 1))
            for value in values:
                connection.execute(f"INSERT INTO {part.table} ({columns}) VALUES ({placeholders})", [name, *value])
