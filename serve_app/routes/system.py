"""GET /api: what the server is doing."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from serve_app.dependencies import ServicesDep, UserDep
from serve_app.envelope import success

router = APIRouter()


@router.get("/api")
async def status(request: Request, services: ServicesDep, _: UserDep) -> JSONResponse:
    counts = await services.store.invocation_counts()
    return success(
        request,
        {
            "status": "busy" if counts["active"] else "idle",
            "system": {
                "downloads": {"active": 0, "queued": 0, "total": 0},
                "invocations": {
                    "active": counts["active"] > 0,
                    "queued": counts["queued"],
                    "total": counts["active"] + counts["queued"],
                },
            },
            "gpu": None,
            "version": services.version,
            "uptime": time.monotonic() - services.started,
        },
    )
