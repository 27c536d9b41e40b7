"""The user resource (admin only): list, read, create, change, delete."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from serve_app.auth import AdminTokenDep, TokenDep
from serve_app.dependencies import ServicesDep, parse_body
from serve_app.envelope import success
from serve_app.openapi import json_body, list_query
from serve_app.query import parse_list_query
from serve_app.user_schemas import UserCreate, UserUpdate
from storage.listing import USERS

router = APIRouter()


@router.get("/api/users", openapi_extra=list_query(USERS))
async def list_users(request: Request, services: ServicesDep, token: TokenDep) -> JSONResponse:
    rows, count = await services.store.users(token, parse_list_query(request, USERS))
    return success(request, rows, count=count)


@router.get("/api/users/{username}", openapi_extra=list_query(USERS))
async def get_user(username: str, request: Request, services: ServicesDep, token: TokenDep) -> JSONResponse:
    rows, count = await services.store.users(token, parse_list_query(request, USERS), username)
    return success(request, rows, count=count)


@router.post("/api/users", openapi_extra=json_body(UserCreate))
async def create_user(request: Request, services: ServicesDep, token: AdminTokenDep) -> JSONResponse:
    fields = await parse_body(request, UserCreate)
    return success(request, await services.store.create_user(token, fields.model_dump()))


# The seed shows POST for a change too; both are accepted.
@router.patch("/api/users/{username}", openapi_extra=json_body(UserUpdate))
@router.post("/api/users/{username}", openapi_extra=json_body(UserUpdate))
async def update_user(username: str, request: Request, services: ServicesDep, token: TokenDep) -> JSONResponse:
    """Administrators change anyone; users their own names and password (see the Store)."""
    fields = await parse_body(request, UserUpdate)
    changed = await services.store.update_user(token, username, fields.changes(), fields.current_password)
    return success(request, changed)


@router.delete("/api/users/{username}")
async def delete_user(username: str, request: Request, services: ServicesDep, token: AdminTokenDep) -> JSONResponse:
    await services.store.delete_user(token, username)
    return success(request, None)
