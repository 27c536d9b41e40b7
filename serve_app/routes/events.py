"""GET /api/invocation/{uuid}/events: an invocation's status as server-sent events.

The same JSON as polling, sent at each change; a comment line while nothing changes (so
proxies keep the connection); the stream ends at a final status. Event ids are status versions:
a client that reconnects with ``Last-Event-ID`` gets only what it has not seen.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from serve_app.auth import TokenDep
from serve_app.dependencies import ServicesDep
from serve_app.errors import APIError
from serve_app.routes.invocations import checked_uuid

router = APIRouter()

FINAL = frozenset({"completed", "error", "cancelled"})
HEARTBEAT_S = 15.0


def _event(version: int, status: dict[str, Any]) -> str:
    return f"id: {version}\nevent: status\ndata: {json.dumps(status)}\n\n"


@router.get("/api/invocation/{uuid}/events")
async def events(uuid: str, request: Request, services: ServicesDep, token: TokenDep) -> StreamingResponse:
    uuid = checked_uuid(uuid)
    last = request.headers.get("last-event-id", "")
    seen = int(last) if last.isdigit() else None
    # Asked before the response starts, so a stranger's or unknown invocation is a plain 404.
    version, status = await services.store.watch(token, uuid, None, 0)

    async def stream() -> AsyncIterator[str]:
        nonlocal version, status
        if version != seen:
            yield _event(version, status)
        while status["status"] not in FINAL:
            try:
                changed, status = await services.store.watch(token, uuid, version, HEARTBEAT_S)
            except APIError as error:  # deleted meanwhile, or the token was revoked
                yield f"event: error\ndata: {json.dumps({'status': str(error.status), 'detail': error.detail})}\n\n"
                return
            if changed == version:
                yield ": nothing new\n\n"
            else:
                version = changed
                yield _event(version, status)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
