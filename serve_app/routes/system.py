"""GET /api: what the server is doing."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from serve_app.auth import TokenDep
from serve_app.dependencies import ServicesDep
from serve_app.envelope import success

router = APIRouter()


@router.get("/api")
async def status(request: Request, services: ServicesDep, token: TokenDep) -> JSONResponse:
    system = await services.store.system(token)
    downloads = await services.downloads.counts()
    return success(
        request,
        {
            "status": "busy" if system["processing"] else "idle",
            "system": {
                "downloads": downloads,
                "invocations": {
                    "active": system["processing"] > 0,
                    "queued": system["queued"],
                    "total": system["processing"] + system["queued"],
                },
            },
            "gpu": None,
            "version": services.version,
            "uptime": time.monotonic() - services.started,
            "warnings": system["warnings"],
        },
    )
