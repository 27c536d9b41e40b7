"""Queries on the DuckDB file. Only the Store deployment creates a ``Metadata``.

Every value is a bound parameter; no SQL is built from request input.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from serve_app.schemas import CONTROLNET_SETTINGS
from storage.listing import INVOCATIONS, ListQuery
from storage.migrations import migrate

logger = logging.getLogger(__name__)

ADMIN_USER_ID = 1

DEFAULT_SETTINGS: dict[str, Any] = {
    "safe": True,
    "auth": False,
    "max_queued_invocations": 4,
    "max_queued_downloads": 10,
    "max_concurrent_downloads": 2,
    "switch_mode": "offload",
    "cache_mode": "xl",
    "precision": None,
    "intermediate_steps": None,
    "default_checkpoint": None,
    # What one user may have waiting, so that nobody fills the whole queue.
    "max_queued_invocations_per_user": 2,
    # How many times an invocation may start: one whose Planner was lost (it died, its node was
    # lost, the server stopped) runs again from its first step until it has started this often.
    "max_invocation_attempts": 3,
    # The cost of one invocation, checked at admission: prompt characters (the text encoders
    # read 77 tokens, a few hundred characters), pixels in one denoising step over every sample
    # (a cancel acts between steps), and pixels times steps over the whole plan.
    "max_prompt_length": 2000,
    "max_pixels_per_step": 2048 * 2048 * 2,
    "max_pixel_steps": 2048 * 2048 * 2 * 100,
    # The ControlNet file of each kind (None: the file Enfugue downloaded, deployments/control.py).
    **dict.fromkeys(CONTROLNET_SETTINGS),
}

ACTIVE_STATUSES = ("queued", "processing")
_CACHED_INVOCATIONS = 1024

_INVOCATION_COLUMNS = (
    "id, uuid, user_id, status, request, plan, created, started, ended, step, total, outputs, images, error, attempts"
)


def utcnow() -> datetime:
    """Naive UTC, as DuckDB's TIMESTAMP stores it."""
    return datetime.now(UTC).replace(tzinfo=None)


def _invocation(row: tuple[Any, ...]) -> dict[str, Any]:
    names = [name.strip() for name in _INVOCATION_COLUMNS.split(",")]
    record = dict(zip(names, row, strict=True))
    for key in ("request", "plan", "images"):
        if record[key] is not None:
            record[key] = json.loads(record[key])
    return record


class Metadata:
    """One DuckDB connection guarded by a lock: the Store calls in from a thread pool."""

    def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
        self._connection = connection
        self._lock = threading.RLock()
        self._settings: dict[str, Any] | None = None
        # Invocation records by uuid: polled many times a second while a job runs. Coherent
        # because every write to the table goes through this object.
        self._invocations: OrderedDict[str, dict[str, Any]] = OrderedDict()
        with self._lock:
            migrate(connection)

    @classmethod
    def open(cls, path: Path | str, wait_s: float = 60) -> Metadata:
        """Open the file, waiting up to ``wait_s`` while another process still holds it (a
        replica of a stopped server that has not exited yet)."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                # Point lookups and small writes, one at a time: more threads only cost CPU.
                return cls(duckdb.connect(str(path), config={"threads": 1}))
            except duckdb.IOException as error:
                if "lock" not in str(error).lower() or time.monotonic() > deadline:
                    raise
                logger.warning("%s is held by another process; waiting for it", path)
                time.sleep(1)

    @property
    def lock(self) -> threading.RLock:
        """Held by every query and transaction; hold it to read and cache without a write between."""
        return self._lock

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def fetch(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._connection.execute(sql, params or []).fetchall()

    def execute(self, sql: str, params: list[Any] | None = None) -> None:
        with self._lock:
            self._connection.execute(sql, params or [])

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The connection, inside BEGIN ... COMMIT (ROLLBACK on error), holding the lock."""
        with self._lock:
            self._connection.execute("BEGIN TRANSACTION")
            try:
                yield self._connection
            except BaseException:
                self._connection.execute("ROLLBACK")
                self._settings = None
                raise
            self._connection.execute("COMMIT")

    # settings

    def settings(self) -> dict[str, Any]:
        """Read on every request; held in memory, since only this process writes them."""
        with self._lock:
            if self._settings is None:
                stored = {key: json.loads(value) for key, value in self.fetch("SELECT key, value FROM settings")}
                self._settings = {key: stored.get(key, default) for key, default in DEFAULT_SETTINGS.items()}
            return dict(self._settings)

    def write_settings(self, connection: duckdb.DuckDBPyConnection, changes: dict[str, Any]) -> None:
        """Store ``changes`` inside the caller's transaction (``transaction()``)."""
        unknown = set(changes) - set(DEFAULT_SETTINGS)
        if unknown:
            raise KeyError(f"unknown settings: {', '.join(sorted(unknown))}")
        self._settings = None  # read again after the commit (or the rollback)
        for key, value in changes.items():
            connection.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", [key, json.dumps(value)])

    # invocations

    def create_invocation(self, uuid: str, user_id: int, request: dict[str, Any]) -> dict[str, Any]:
        created = utcnow()
        with self._lock:
            (identifier,) = self._connection.execute(
                "INSERT INTO invocations (uuid, user_id, status, request, created) VALUES (?, ?, 'queued', ?, ?) "
                "RETURNING id",
                [uuid, user_id, json.dumps(request), created],
            ).fetchone()
            record = self._invocations[uuid] = {
                "id": identifier, "uuid": uuid, "user_id": user_id, "status": "queued", "request": request,
                "plan": None, "created": created, "started": None, "ended": None, "step": None, "total": None,
                "outputs": 0, "images": None, "error": None, "attempts": 0,
            }  # fmt: skip
        return record

    def invocation(self, uuid: str) -> dict[str, Any] | None:
        """The record of ``uuid`` (do not change the dict: it may be the cached one)."""
        with self._lock:
            record = self._invocations.get(uuid)
            if record is not None:
                self._invocations.move_to_end(uuid)
                return record
            rows = self.fetch(f"SELECT {_INVOCATION_COLUMNS} FROM invocations WHERE uuid = ?", [uuid])
            if not rows:
                return None
            record = self._invocations[uuid] = _invocation(rows[0])
            if len(self._invocations) > _CACHED_INVOCATIONS:
                self._invocations.popitem(last=False)
            return record

    def update_invocation(self, uuid: str, **values: Any) -> None:
        """Set columns of one invocation; the column names are this module's own, never a request's."""
        allowed = {"status", "plan", "started", "ended", "step", "total", "outputs", "images", "error", "attempts"}
        if not values or set(values) - allowed:
            raise ValueError(f"cannot update invocation columns {sorted(set(values) - allowed)}")
        encoded = {
            key: json.dumps(value) if key in ("plan", "images") and value is not None else value
            for key, value in values.items()
        }
        assignments = ", ".join(f"{key} = ?" for key in encoded)
        with self._lock:
            self._invocations.pop(uuid, None)
            self.execute(f"UPDATE invocations SET {assignments} WHERE uuid = ?", [*encoded.values(), uuid])

    def user_invocations(self, user_id: int, query: ListQuery) -> tuple[list[dict[str, Any]], int]:
        """One page of the user's invocations (newest first unless sorted), and how many match."""
        where, params = INVOCATIONS.where(query, [("user_id = ?", user_id)])
        count = self.fetch(f"SELECT count(*) FROM invocations {where}", params)[0][0]
        order, page = INVOCATIONS.order_and_page(query)
        rows = self.fetch(f"SELECT {_INVOCATION_COLUMNS} FROM invocations {where} {order}", params + page)
        return [_invocation(row) for row in rows], int(count)

    def active_invocations(self, user_id: int | None) -> list[str]:
        """The queued and processing invocations of ``user_id`` (None: of everyone), oldest first."""
        scope, params = ("AND user_id = ?", [user_id]) if user_id is not None else ("", [])
        rows = self.fetch(
            f"SELECT uuid FROM invocations WHERE status IN ('queued', 'processing') {scope} ORDER BY id", params
        )
        return [row[0] for row in rows]

    def recent_invocations(self, user_id: int | None, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` invocations of ``user_id`` (None: of everyone)."""
        scope, params = ("WHERE user_id = ?", [user_id]) if user_id is not None else ("", [])
        rows = self.fetch(
            f"SELECT {_INVOCATION_COLUMNS} FROM invocations {scope} ORDER BY created DESC, id DESC LIMIT ?",
            [*params, limit],
        )
        return [_invocation(row) for row in rows]

    def known_invocations(self, uuids: set[str]) -> set[str]:
        """Which of ``uuids`` have a record."""
        if not uuids:
            return set()
        rows = self.fetch("SELECT uuid FROM invocations WHERE list_contains(?, uuid)", [sorted(uuids)])
        return {row[0] for row in rows}

    def completed_images(self) -> list[tuple[str, list[str]]]:
        """(uuid, image names) of every completed invocation with images."""
        rows = self.fetch("SELECT uuid, images FROM invocations WHERE status = 'completed' AND images IS NOT NULL")
        return [(uuid, json.loads(images)) for uuid, images in rows]

    def delete_invocation(self, uuid: str) -> None:
        with self._lock:
            self._invocations.pop(uuid, None)
            self.execute("DELETE FROM invocations WHERE uuid = ?", [uuid])

    def requeue_unfinished(self, max_attempts: int, message: str) -> list[tuple[str, int, bool]]:
        """Put the invocations a previous run left queued or processing back in the queue, as
        (uuid, user id, whether it was processing) oldest first; those that already started
        ``max_attempts`` times end in error with ``message``."""
        with self.transaction() as connection:
            self._invocations.clear()
            connection.execute(
                "UPDATE invocations SET status = 'error', error = ?, ended = ? "
                "WHERE status IN ('queued', 'processing') AND attempts >= ?",
                [message, utcnow(), max_attempts],
            )
            running = connection.execute("SELECT uuid FROM invocations WHERE status = 'processing'").fetchall()
            processing = {uuid for (uuid,) in running}
            rows = connection.execute(
                "UPDATE invocations SET status = 'queued', started = NULL, step = NULL, total = NULL "
                "WHERE status IN ('queued', 'processing') RETURNING uuid, user_id, id",
            ).fetchall()
        return [(uuid, user_id, uuid in processing) for uuid, user_id, _ in sorted(rows, key=lambda row: row[2])]
