"""Invoking, following, and removing invocations; their images; the invocation history."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from serve_app.dependencies import ServicesDep, UserDep, parse_body
from serve_app.envelope import success
from serve_app.errors import NotFoundError
from serve_app.models import default_checkpoint, resolve_checkpoint
from serve_app.query import parse_page
from serve_app.schemas import InvokeRequest

router = APIRouter()

_UUID = re.compile(r"^[0-9a-f]{32}$")


def _checked_uuid(uuid: str) -> str:
    if _UUID.match(uuid) is None:
        raise NotFoundError(f"Invocation {uuid!r:.60} not found.")
    return uuid


@router.post("/api/invoke")
async def invoke(request: Request, services: ServicesDep, user: UserDep) -> JSONResponse:
    invocation = await parse_body(request, InvokeRequest)
    if invocation.model is not None:
        checkpoint = resolve_checkpoint(invocation.model, services.paths)
    else:
        checkpoint = default_checkpoint(await services.store.settings(), services.paths)
    status = await services.store.admit(user.id, {**invocation.summary(), "model": checkpoint.name})
    services.launch(services.planner.run.remote(status["uuid"], invocation, checkpoint), status["uuid"])
    return success(request, status)


@router.get("/api/invocation/images/{name}")
async def image(name: str, services: ServicesDep, user: UserDep) -> Response:
    return Response(await services.store.image(name, user.id), media_type="image/png")


@router.get("/api/invocation/{uuid}")
async def invocation_status(uuid: str, request: Request, services: ServicesDep, user: UserDep) -> JSONResponse:
    return success(request, await services.store.status(_checked_uuid(uuid), user.id))


@router.post("/api/invocation/{uuid}/cancel")
async def cancel(uuid: str, request: Request, services: ServicesDep, user: UserDep) -> JSONResponse:
    return success(request, await services.store.cancel(_checked_uuid(uuid), user.id))


@router.delete("/api/invocation/{uuid}")
async def delete(uuid: str, request: Request, services: ServicesDep, user: UserDep) -> JSONResponse:
    await services.store.delete(_checked_uuid(uuid), user.id)
    return success(request, None)


@router.get("/api/invocation-history")
async def history(request: Request, services: ServicesDep, user: UserDep) -> JSONResponse:
    page = parse_page(request)
    rows, count = await services.store.history(user.id, page.limit, page.offset)
    return success(request, rows, count=count)
