"""GET and POST /api/settings."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from serve_app.auth import AdminTokenDep, TokenDep
from serve_app.dependencies import ServicesDep, parse_body
from serve_app.envelope import success
from serve_app.models import resolve_checkpoint
from serve_app.openapi import json_body
from serve_app.schemas import SettingsUpdate

router = APIRouter()


@router.get("/api/settings")
async def get_settings(request: Request, services: ServicesDep, token: TokenDep) -> JSONResponse:
    return success(request, await services.store.settings(token))


@router.post("/api/settings", openapi_extra=json_body(SettingsUpdate))
@router.post("/api/settings/", include_in_schema=False)
async def update_settings(request: Request, services: ServicesDep, token: AdminTokenDep) -> JSONResponse:
    changes = (await parse_body(request, SettingsUpdate)).changes()
    if changes.get("default_checkpoint") is not None:
        checkpoint = await run_in_threadpool(
            resolve_checkpoint, changes["default_checkpoint"], services.storage, field="default_checkpoint"
        )
        changes["default_checkpoint"] = checkpoint.name
    return success(request, await services.store.update_settings(token, changes))
