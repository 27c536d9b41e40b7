"""GET and POST /api/settings."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from serve_app.auth import AdminDep
from serve_app.dependencies import ServicesDep, parse_body
from serve_app.envelope import success
from serve_app.models import resolve_checkpoint
from serve_app.schemas import SettingsUpdate

router = APIRouter()


@router.get("/api/settings")
async def get_settings(request: Request, services: ServicesDep, _: AdminDep) -> JSONResponse:
    return success(request, await services.store.settings())


@router.post("/api/settings")
@router.post("/api/settings/", include_in_schema=False)
async def update_settings(request: Request, services: ServicesDep, _: AdminDep) -> JSONResponse:
    changes = (await parse_body(request, SettingsUpdate)).changes()
    if changes.get("default_checkpoint") is not None:
        changes["default_checkpoint"] = resolve_checkpoint(
            changes["default_checkpoint"], services.paths, field="default_checkpoint"
        ).name
    return success(request, await services.store.update_settings(changes))
