"""Downloads of model files (admin only): start, list, cancel. They run in the Downloads deployment."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from serve_app.auth import AdminTokenDep
from serve_app.dependencies import ServicesDep, parse_body
from serve_app.download_schemas import DownloadCancel, DownloadRequest
from serve_app.envelope import success
from serve_app.openapi import json_body

router = APIRouter()


@router.post("/api/download", openapi_extra=json_body(DownloadRequest))
async def start(request: Request, services: ServicesDep, token: AdminTokenDep) -> JSONResponse:
    body = await parse_body(request, DownloadRequest)
    settings = await services.store.settings(token)
    started = await services.downloads.start(
        body.url, body.type, body.filename, body.overwrite,
        settings["max_concurrent_downloads"], settings["max_queued_downloads"],
    )  # fmt: skip
    return success(request, started)


@router.get("/api/download")
async def listing(request: Request, services: ServicesDep, token: AdminTokenDep) -> JSONResponse:
    return success(request, await services.downloads.list())


@router.post("/api/download/cancel", openapi_extra=json_body(DownloadCancel))
async def cancel(request: Request, services: ServicesDep, token: AdminTokenDep) -> JSONResponse:
    body = await parse_body(request, DownloadCancel)
    return success(request, await services.downloads.cancel(body.url))
