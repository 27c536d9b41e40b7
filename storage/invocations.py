"""The invocation lifecycle: admitted (queued), processing, then completed, error or cancelled.

Metadata only: image files are written by the Planner and read by the ingress; this module
records their names and says who may read them. Live progress is held in memory (it changes
several times a second); everything else is in DuckDB and survives a restart.
"""

from __future__ import annotations

import logging
import threading
import uuid as uuids
from pathlib import Path
from typing import Any

from serve_app.errors import BadRequestError, NotFoundError, TooManyRequestsError
from storage.images import IMAGE_NAME
from storage.listing import ListQuery
from storage.metadata import ACTIVE_STATUSES, Metadata, utcnow
from storage.signals import EndSignals
from storage.status import LiveProgress, history_object, status_object

logger = logging.getLogger(__name__)

RESTART_MESSAGE = "The server restarted before this invocation finished."


class Invocations:
    def __init__(self, db: Metadata, images: Path) -> None:
        self._db = db
        self._images = images
        self._lock = threading.Lock()
        self._live: dict[str, LiveProgress] = {}
        self._ended = EndSignals()
        interrupted = db.interrupt_unfinished(RESTART_MESSAGE)
        if interrupted:
            logger.warning("marked %s unfinished invocations of a previous run as errors", interrupted)

    # the Planner's side

    def admit(self, user_id: int, request: dict[str, Any], limit: int) -> dict[str, Any]:
        """Record a new queued invocation, or refuse it when ``limit`` are already waiting."""
        with self._lock:
            if self._db.count_invocations(("queued",)) >= limit:
                raise TooManyRequestsError(
                    f"The invocation queue is full ({limit} waiting); try again when one has started.",
                    retry_after=5,
                )
            record = self._db.create_invocation(uuids.uuid4().hex, user_id, request)
        return self._status(record)

    def record_plan(self, uuid: str, plan: dict[str, Any]) -> None:
        self._db.update_invocation(uuid, plan=plan)

    def progress(self, uuid: str, step: int, total: int) -> bool:
        """Where a job stands (the first report marks it processing); False once it is no longer active."""
        with self._lock:
            live = self._live.get(uuid)
            if live is None:
                if not self._active(uuid):
                    return False
                live = self._live[uuid] = LiveProgress(step=step, total=total, started=utcnow())
                self._db.update_invocation(uuid, status="processing", started=live.started)
            live.step, live.total = step, total
        return True

    def complete(self, uuid: str, names: list[str], total: int) -> bool:
        """Record the output images; False (nothing recorded) if it was cancelled or deleted meanwhile."""
        with self._lock:
            if not self._active(uuid):
                return False
            live, ended = self._live.pop(uuid, None), utcnow()
            self._db.update_invocation(
                uuid, status="completed", ended=ended, images=names, outputs=len(names), step=total, total=total,
                # It finished before any progress reached the Store: it started when it ended.
                **({"started": ended} if live is None else {}),
            )  # fmt: skip
        self._ended.notify(uuid)
        return True

    def fail(self, uuid: str, message: str) -> None:
        self._end(uuid, "error", error=message)

    async def stopped(self, uuid: str) -> None:
        """Return once the invocation is no longer active (cancelled, deleted, or ended)."""
        await self._ended.wait(uuid, lambda: self._active(uuid))

    # the caller's side

    def status(self, uuid: str, user_id: int) -> dict[str, Any]:
        return self._status(self._owned(uuid, user_id))

    def cancel(self, uuid: str, user_id: int) -> dict[str, Any]:
        self._owned(uuid, user_id)
        self._end(uuid, "cancelled")
        return self.status(uuid, user_id)

    def delete(self, uuid: str, user_id: int) -> None:
        """Cancel if still running, then remove the record and its image files."""
        with self._lock:
            record = self._owned(uuid, user_id)
            self._live.pop(uuid, None)
            for name in record["images"] or []:
                (self._images / name).unlink(missing_ok=True)
            self._db.delete_invocation(uuid)
        self._ended.notify(uuid)

    def cancel_all(self, user_id: int) -> None:
        for uuid in self._db.active_invocations(user_id):
            self._end(uuid, "cancelled")

    def history(self, user_id: int, query: ListQuery) -> tuple[list[dict[str, Any]], int]:
        records, count = self._db.user_invocations(user_id, query)
        return [history_object(record) for record in records], count

    def readable_image(self, name: str, user_id: int) -> str:
        """``name`` if it is an output image of one of the user's invocations; else 400 / 404."""
        match = IMAGE_NAME.match(name)
        if match is None:
            raise BadRequestError(f"file: {name!r:.80} is not an invocation image name (<uuid>_<n>.png)")
        record = self._owned(match["uuid"], user_id)
        if name not in (record["images"] or []):
            raise NotFoundError(f"Image {name} not found.")
        return name

    def counts(self) -> dict[str, int]:
        return {status: self._db.count_invocations((status,)) for status in ACTIVE_STATUSES}

    # helpers

    def _end(self, uuid: str, status: str, error: str | None = None) -> None:
        """Move an active invocation to a final ``status``, keeping where it got to."""
        with self._lock:
            if not self._active(uuid):
                return
            live = self._live.pop(uuid, None)
            self._db.update_invocation(
                uuid, status=status, error=error, ended=utcnow(),
                step=live.step if live else None, total=live.total if live else None,
            )  # fmt: skip
        self._ended.notify(uuid)

    def _active(self, uuid: str) -> bool:
        record = self._db.invocation(uuid)
        return record is not None and record["status"] in ACTIVE_STATUSES

    def _owned(self, uuid: str, user_id: int) -> dict[str, Any]:
        """The record if it exists and belongs to the user; otherwise 404 (leaking nothing)."""
        record = self._db.invocation(uuid)
        if record is None or record["user_id"] != user_id:
            raise NotFoundError(f"Invocation {uuid} not found.")
        return record

    def _status(self, record: dict[str, Any]) -> dict[str, Any]:
        return status_object(record, self._live.get(record["uuid"]), utcnow())
