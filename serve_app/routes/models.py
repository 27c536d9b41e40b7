"""Preconfigured models: anyone may read them; admins create, change and delete them."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from serve_app.auth import AdminTokenDep, TokenDep
from serve_app.dependencies import ServicesDep, parse_body
from serve_app.envelope import success
from serve_app.errors import BadRequestError, NotFoundError
from serve_app.model_schemas import ModelCreate, ModelFields
from serve_app.models import model_spec, spec_fields
from serve_app.openapi import json_body, list_query
from serve_app.query import parse_list_query
from storage.listing import MODELS

router = APIRouter()


@router.get("/api/models", openapi_extra=list_query(MODELS))
async def list_models(request: Request, services: ServicesDep, token: TokenDep) -> JSONResponse:
    rows, count = await services.store.models(token, parse_list_query(request, MODELS))
    return success(request, rows, count=count)


@router.get("/api/models/{name}", openapi_extra=list_query(MODELS))
async def get_model(name: str, request: Request, services: ServicesDep, token: TokenDep) -> JSONResponse:
    rows, count = await services.store.models(token, parse_list_query(request, MODELS), name)
    return success(request, rows, count=count)


@router.post("/api/models", openapi_extra=json_body(ModelCreate))
async def create_model(request: Request, services: ServicesDep, token: AdminTokenDep) -> JSONResponse:
    fields = await parse_body(request, ModelCreate)
    spec = await run_in_threadpool(model_spec, fields, services.storage)
    return success(request, await services.store.create_model(token, spec))


@router.patch("/api/models/{name}", openapi_extra=json_body(ModelFields))
async def update_model(name: str, request: Request, services: ServicesDep, token: AdminTokenDep) -> JSONResponse:
    """The fields given replace the model's (a part given is replaced whole; null removes it)."""
    given = (await parse_body(request, ModelFields)).model_dump(exclude_unset=True)
    for required in ("name", "checkpoint"):
        if required in given and given[required] is None:
            raise BadRequestError(f"{required}: may not be null")
    current = await services.store.model(token, name)
    if current is None:
        raise NotFoundError(f"Model {name!r:.80} not found.")
    fields = ModelCreate.model_validate({**spec_fields(current), **given})
    spec = await run_in_threadpool(model_spec, fields, services.storage)
    return success(request, await services.store.update_model(token, name, spec))


@router.delete("/api/models/{name}")
async def delete_model(name: str, request: Request, services: ServicesDep, token: TokenDep) -> JSONResponse:
    await services.store.delete_model(token, name)
    return success(request, None)
