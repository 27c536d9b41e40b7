"""Invoking, following, and removing invocations; their images; the invocation history."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from deployments.plan import Checkpoint
from serve_app.auth import UserDep
from serve_app.dependencies import Services, ServicesDep, parse_body
from serve_app.envelope import success
from serve_app.errors import BadRequestError, NotFoundError
from serve_app.models import apply_model, default_checkpoint, model_record, resolve_checkpoint
from serve_app.query import parse_list_query
from serve_app.schemas import InvokeRequest
from storage.listing import INVOCATIONS

router = APIRouter()

_UUID = re.compile(r"^[0-9a-f]{32}$")


def _checked_uuid(uuid: str) -> str:
    if _UUID.match(uuid) is None:
        raise NotFoundError(f"Invocation {uuid!r:.60} not found.")
    return uuid


@router.post("/api/invoke")
async def invoke(request: Request, services: ServicesDep, user: UserDep) -> JSONResponse:
    invocation, checkpoint, model = await _resolve(await parse_body(request, InvokeRequest), services)
    status = await services.store.admit(user.id, {**invocation.summary(), "checkpoint": checkpoint.name})
    services.launch(services.planner.run.remote(status["uuid"], invocation, checkpoint, model), status["uuid"])
    return success(request, status)


async def _resolve(
    invocation: InvokeRequest, services: Services
) -> tuple[InvokeRequest, Checkpoint, dict[str, Any] | None]:
    """The checkpoint to run, and the preconfigured model when ``model`` names one (it wins a tie)."""
    if invocation.model is None:
        return invocation, default_checkpoint(await services.store.settings(), services.paths), None
    spec = await services.store.model(invocation.model) if invocation.model_type != "checkpoint" else None
    if spec is not None:
        effective, checkpoint = apply_model(invocation, spec, services.paths)
        return effective, checkpoint, model_record(spec)
    if invocation.model_type == "model":
        raise BadRequestError(f"model: no preconfigured model named {invocation.model!r:.100}; see GET /api/models")
    return invocation, resolve_checkpoint(invocation.model, services.paths), None


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
    rows, count = await services.store.history(user.id, parse_list_query(request, INVOCATIONS))
    return success(request, rows, count=count)
