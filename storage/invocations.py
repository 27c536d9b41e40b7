"""The invocation lifecycle: admitted (queued), processing, then completed, error or cancelled.

Metadata only: image files are written by the Planner and read by the ingress; this module
records their names and says who may read them. Live progress is held in memory (it changes
several times a second); everything else is in DuckDB and survives a restart.

Work is not lost with a Planner: an invocation whose Planner stopped renewing its lease or handed
it back as it stopped, or that was unfinished when the server stopped, goes back to the queue
without a lease, and a Planner adopts it (``adopt``) and runs its stored plan again from the first
step, until it has started ``max_invocation_attempts`` times.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid as uuids
from typing import Any

from serve_app.errors import BadRequestError, NotFoundError, TooManyRequestsError
from serve_app.metrics import invocation_ended, queue_depth, queue_seconds
from storage.accounts import Caller
from storage.images import IMAGE_NAME, INTERMEDIATE_NAME
from storage.leases import LEASE_S, RESTART_GRACE_S, Leases
from storage.listing import ListQuery
from storage.metadata import ACTIVE_STATUSES, Metadata, utcnow
from storage.shared import IMAGES, JOBS, SharedStorage
from storage.signals import Changes
from storage.status import LiveProgress, history_object, status_object

logger = logging.getLogger(__name__)

# How many invocations GET /api/invocation lists.
RECENT = 100
LOST_MESSAGE = (
    "This invocation was interrupted every time it ran (its planner stopped, or the server restarted), "
    "as many times as the max_invocation_attempts setting allows; invoke it again."
)


class Invocations:
    def __init__(self, db: Metadata, storage: SharedStorage, leases: Leases | None = None) -> None:
        self._db = db
        self._storage = storage
        self._lock = threading.Lock()
        self._live: dict[str, LiveProgress] = {}
        # Admitted and not yet started, by owner, kept here: the queue limits are checked on every invoke.
        self._queued: dict[str, int] = {}
        self._admitted: dict[str, float] = {}  # time.monotonic() of each queued one's admission
        self._changes = Changes()
        self._leases = leases or Leases()
        unfinished = db.requeue_unfinished(db.settings()["max_invocation_attempts"], LOST_MESSAGE)
        for uuid, user_id, was_processing in unfinished:  # a Planner still running one renews it
            self._queued[uuid] = user_id
            self._admitted[uuid] = time.monotonic()
            # One that was running when the Store went most likely runs still (the Store alone was
            # replaced: a redeploy, a kill): its Planner gets a whole lease to say so, as a busy
            # machine may delay its renewals. One that waited is adopted sooner when nobody holds it.
            self._leases.grant(uuid, LEASE_S if was_processing else RESTART_GRACE_S)
        if unfinished:
            logger.warning("%s unfinished invocations of a previous run are queued again", len(unfinished))

    # the Planner's side

    def admit(self, user_id: int, request: dict[str, Any], limit: int, per_user: int | None = None) -> dict[str, Any]:
        """Record a new queued invocation, or refuse it when ``limit`` are already waiting, or
        ``per_user`` of this user's."""
        with self._lock:
            if len(self._queued) >= limit:
                raise TooManyRequestsError(
                    f"The invocation queue is full ({limit} waiting); try again when one has started.",
                    retry_after=5,
                )
            mine = sum(1 for owner in self._queued.values() if owner == user_id)
            if per_user is not None and mine >= per_user:
                raise TooManyRequestsError(
                    f"You have {mine} invocations waiting, the most one user may; try again when one has started.",
                    retry_after=5,
                )
            record = self._db.create_invocation(uuids.uuid4().hex, user_id, request)
            self._queued[record["uuid"]] = user_id
            self._admitted[record["uuid"]] = time.monotonic()
            self._leases.grant(record["uuid"])
            queue_depth(len(self._queued))
        self._changes.notify(record["uuid"])
        return self._status(record)

    def progress(
        self, uuid: str, step: int, total: int, plan: dict[str, Any] | None = None,
        intermediates: list[str] | None = None,
    ) -> bool:  # fmt: skip
        """Where a job stands (and its latest intermediate images); False once it is no longer
        active. The first report of a run marks it processing and records its ``plan``: a report
        without one continues a run this Store did not see begin (it was restarted meanwhile), so
        it does not count as another attempt."""
        with self._lock:
            live = self._live.get(uuid)
            if live is None:
                if not self._active(uuid):
                    return False
                live = self._live[uuid] = LiveProgress(step=step, total=total, started=utcnow())
                self._dequeue(uuid)  # started: out of the queue, still leased
                attempts = self._db.invocation(uuid)["attempts"] + (1 if plan else 0)  # type: ignore[index]
                self._db.update_invocation(
                    uuid, status="processing", started=live.started, attempts=attempts,
                    **({"plan": plan} if plan else {}),
                )  # fmt: skip
            live.step, live.total = step, total
            if intermediates is not None:
                live.intermediates = intermediates
        self._changes.notify(uuid)
        return True

    def complete(self, uuid: str, names: list[str], total: int, plan: dict[str, Any] | None = None) -> bool:
        """Record the output images (and the plan); False (nothing recorded) if it was cancelled or
        deleted meanwhile."""
        with self._lock:
            if not self._active(uuid):
                return False
            live, ended = self._forget(uuid), utcnow()
            self._db.update_invocation(
                uuid, status="completed", ended=ended, images=names, outputs=len(names), step=total, total=total,
                # It finished before any progress reached the Store: it started when it ended.
                **({"started": ended} if live is None else {}), **({"plan": plan} if plan else {}),
            )  # fmt: skip
        self._storage.remove(JOBS, uuid)
        invocation_ended("completed")
        self._changes.notify(uuid)
        return True

    def renew(self, uuids: list[str]) -> None:
        """A Planner still holds these (queued or running); after a restart of the Store alone,
        the ones it holds are leased to it again (ended ones are not revived)."""
        with self._lock:
            for uuid in uuids:
                if not self._leases.held(uuid) and self._active(uuid):
                    self._leases.grant(uuid, LEASE_S)
        self._leases.renew(uuids)

    def expire(self) -> int:
        """Queue again every invocation whose Planner stopped renewing it (ended, when it started
        as often as allowed); how many there were."""
        lost = self._leases.expired()
        for uuid in lost:
            logger.warning("invocation %s lost its planner", uuid)
            self._requeue(uuid)
        return len(lost)

    def adopt(self, limit: int) -> list[str]:
        """Up to ``limit`` queued invocations no Planner holds (their Planner was lost), oldest
        first, leased now to the caller: it runs their stored plans."""
        with self._lock:
            # Orphans are always queued: most rounds find none without a query (every Planner asks).
            unleased = {uuid for uuid in self._queued if not self._leases.held(uuid)}
            if not unleased:
                return []
            orphans = [uuid for uuid in self._db.active_invocations(None) if uuid in unleased][:limit]
            for uuid in orphans:
                self._leases.grant(uuid, LEASE_S)
        return orphans

    def hand_back(self, uuids: list[str]) -> None:
        """Queue again, unleased, the invocations a stopping Planner gives up (as a lost Planner's
        are when their leases run out, without the wait): a Planner adopts them."""
        for uuid in uuids:
            self._requeue(uuid)

    def fail(self, uuid: str, message: str, plan: dict[str, Any] | None = None) -> None:
        self._end(uuid, "error", error=message, plan=plan)

    async def stopped(self, uuid: str, timeout: float) -> bool:
        """True once the invocation is no longer active (cancelled, deleted, or ended); False when
        it still is after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            version = self._changes.version(uuid)
            if not self._active(uuid):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await self._changes.wait(uuid, version, left)

    # the caller's side

    def status(self, uuid: str, caller: Caller) -> dict[str, Any]:
        return self._status(self._owned(uuid, caller))

    async def watch(self, uuid: str, caller: Caller, seen: int | None, timeout: float) -> tuple[int, dict[str, Any]]:
        """(version, status) once the status is past version ``seen`` (at once when ``seen`` is None
        or already past), or after ``timeout`` seconds with the version unchanged."""
        self._owned(uuid, caller)
        version = self._changes.version(uuid)
        if seen is not None and version == seen:
            version = await self._changes.wait(uuid, seen, timeout)
        return version, self.status(uuid, caller)

    def cancel(self, uuid: str, caller: Caller) -> dict[str, Any]:
        self._owned(uuid, caller)
        self._end(uuid, "cancelled")
        return self.status(uuid, caller)

    def delete(self, uuid: str, caller: Caller) -> None:
        """Cancel if still running, then remove the record and its image files."""
        with self._lock:
            record = self._owned(uuid, caller)
            self._forget(uuid)
            self._db.delete_invocation(uuid)
        # Outside the lock: on shared storage a removal is a network call.
        for name in record["images"] or []:
            self._storage.remove(IMAGES, name)
        self._storage.remove(JOBS, uuid)
        self._changes.notify(uuid)

    def cancel_all(self, user_id: int | None) -> list[str]:
        """Cancel the user's active invocations (None: everyone's); their uuids."""
        uuids = self._db.active_invocations(user_id)
        for uuid in uuids:
            self._end(uuid, "cancelled")
        return uuids

    def recent(self, caller: Caller, limit: int = RECENT) -> list[dict[str, Any]]:
        """Status objects of the caller's newest invocations (an administrator's: everyone's)."""
        records = self._db.recent_invocations(None if caller.admin else caller.id, limit)
        return [self._status(record) for record in records]

    def history(self, user_id: int, query: ListQuery) -> tuple[list[dict[str, Any]], int]:
        records, count = self._db.user_invocations(user_id, query)
        return [history_object(record) for record in records], count

    def readable_image(self, name: str, caller: Caller) -> str:
        """``name`` if it is an output image of one of the caller's invocations (any, for an
        administrator); else 400 / 404."""
        match = IMAGE_NAME.match(name)
        if match is None:
            raise BadRequestError(f"file: {name!r:.80} is not an invocation image name (<uuid>_<n>.png)")
        record = self._owned(match["uuid"], caller)
        if name not in (record["images"] or []):
            raise NotFoundError(f"Image {name} not found.")
        return name

    def readable_intermediate(self, name: str, caller: Caller) -> str:
        """``name`` if it is an intermediate image of one of the caller's invocations (whether it
        is still on disk, the ingress finds out); else 400 / 404."""
        match = INTERMEDIATE_NAME.match(name)
        if match is None:
            raise BadRequestError(f"file: {name!r:.80} is not an intermediate image name (<uuid>_<step>_<n>.png)")
        self._owned(match["uuid"], caller)
        return name

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"queued": len(self._queued), "processing": len(self._live)}

    # helpers

    def _requeue(self, uuid: str) -> None:
        """Back in the queue, unleased, where it was before it started (or ended in error)."""
        record = self._db.invocation(uuid)
        if record is not None and record["attempts"] >= self._db.settings()["max_invocation_attempts"]:
            self._end(uuid, "error", error=LOST_MESSAGE)
            return
        with self._lock:
            if not self._active(uuid):
                return
            self._leases.release(uuid)
            self._live.pop(uuid, None)
            self._db.update_invocation(uuid, status="queued", started=None, step=None, total=None)
            if uuid not in self._queued:
                self._queued[uuid] = self._db.invocation(uuid)["user_id"]  # type: ignore[index]
                self._admitted[uuid] = time.monotonic()
                queue_depth(len(self._queued))
        self._changes.notify(uuid)

    def _end(self, uuid: str, status: str, error: str | None = None, plan: dict[str, Any] | None = None) -> None:
        """Move an active invocation to a final ``status``, keeping where it got to."""
        with self._lock:
            if not self._active(uuid):
                return
            live = self._forget(uuid)
            self._db.update_invocation(
                uuid, status=status, error=error, ended=utcnow(),
                step=live.step if live else None, total=live.total if live else None,
                **({"plan": plan} if plan else {}),
            )  # fmt: skip
        self._storage.remove(JOBS, uuid)
        invocation_ended(status)
        self._changes.notify(uuid)

    def _forget(self, uuid: str) -> LiveProgress | None:
        """Drop what is held in memory of an invocation that ends; its live progress, if any."""
        self._dequeue(uuid)
        self._leases.release(uuid)
        return self._live.pop(uuid, None)

    def _dequeue(self, uuid: str) -> None:
        """Out of the queue: started, or ended before it started."""
        if self._queued.pop(uuid, None) is not None:
            queue_seconds(time.monotonic() - self._admitted.pop(uuid))
            queue_depth(len(self._queued))

    def _active(self, uuid: str) -> bool:
        record = self._db.invocation(uuid)
        return record is not None and record["status"] in ACTIVE_STATUSES

    def _owned(self, uuid: str, caller: Caller) -> dict[str, Any]:
        """The record if it exists and is the caller's (or the caller is an administrator);
        otherwise 404, as for an invocation that does not exist (leaking nothing)."""
        record = self._db.invocation(uuid)
        if record is None or not (caller.admin or record["user_id"] == caller.id):
            raise NotFoundError(f"Invocation {uuid} not found.")
        return record

    def _status(self, record: dict[str, Any]) -> dict[str, Any]:
        return status_object(record, self._live.get(record["uuid"]), utcnow())
