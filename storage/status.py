"""The invocation status object and history row, as Enfugue clients read them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.images import FLAGGED


@dataclass
class LiveProgress:
    """Progress of a running invocation, held in memory only (it changes every step)."""

    step: int
    total: int
    started: datetime
    # Names of the latest intermediate images (in the intermediates folder), if any.
    intermediates: list[str] | None = None


def _seconds(start: datetime | None, end: datetime) -> float | None:
    return None if start is None else max((end - start).total_seconds(), 0.0)


def status_object(record: dict[str, Any], live: LiveProgress | None, now: datetime) -> dict[str, Any]:
    end = record["ended"] or now
    step, total, started = record["step"], record["total"], record["started"]
    if live is not None:
        step, total, started = live.step, live.total, live.started
    running = _seconds(started, end)
    rate = step / running if step and running else None
    progress = min(step / total, 1.0) if step is not None and total else None
    status: dict[str, Any] = {
        "id": record["id"],
        "uuid": record["uuid"],
        "status": record["status"],
        "progress": progress,
        "step": step,
        "total": total,
        "rate": rate,
        "duration": _seconds(record["created"], end),
        "images": _images(record, live),
        # How many times it started: more than one when a lost Planner's job ran again.
        "attempts": record["attempts"] or 0,
    }
    if record["error"] is not None:
        status["message"] = record["error"]
    return status


def _images(record: dict[str, Any], live: LiveProgress | None) -> list[str] | None:
    """The outputs once completed; while processing, the latest intermediates (as Enfugue)."""
    if record["images"]:
        return _paths(record["images"])
    if live is not None and live.intermediates:
        return [f"intermediates/{name}" for name in live.intermediates]
    return None


def _paths(names: list[str]) -> list[str]:
    """Output paths under /api/invocation/; a withheld output is listed as "nsfw", as Enfugue does
    (its client fetches /api/invocation/nsfw, a placeholder)."""
    return [name if name == FLAGGED else f"images/{name}" for name in names]


def history_object(record: dict[str, Any]) -> dict[str, Any]:
    """A ``DiffusionInvocation`` of the invocation history."""
    end = record["ended"]
    return {
        "type": "DiffusionInvocation",
        "attributes": {
            "id": record["uuid"],
            "user_id": record["user_id"],
            "status": record["status"],
            "plan": record["plan"] if record["plan"] is not None else record["request"],
            "started": record["created"].isoformat(),
            "duration": _seconds(record["created"], end) if end else None,
            "outputs": record["outputs"],
            "images": _paths(record["images"]) if record["images"] else [],
            "error": record["error"],
        },
    }
