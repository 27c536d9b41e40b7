"""POST /api/login and logout: tokens in the response body and in the ``enfugue_token`` cookie."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from serve_app.auth import TOKEN_COOKIE, presented_token
from serve_app.dependencies import ServicesDep, parse_body
from serve_app.envelope import success
from serve_app.openapi import json_body
from serve_app.user_schemas import LoginRequest

router = APIRouter()


@router.post("/api/login", openapi_extra=json_body(LoginRequest))
async def login(request: Request, services: ServicesDep) -> JSONResponse:
    credentials = await parse_body(request, LoginRequest)
    # The peer's address as the server sees it (a forwarded header would be the client's word).
    address = request.client.host if request.client else "unknown"
    token = await services.store.login(credentials.username, credentials.password, address)
    response = success(request, token)
    response.set_cookie(
        TOKEN_COOKIE,
        token["attributes"]["access_token"],
        max_age=int(services.args.token_days * 86400),
        httponly=True,
        samesite="lax",
    )
    return response


@router.post("/api/logout")
@router.get("/logout")
async def logout(request: Request, services: ServicesDep) -> JSONResponse:
    """Revoke the token the request carries (if any) and forget the cookie."""
    token = await presented_token(request)
    if token:
        await services.store.logout(token)
    response = success(request, None)
    response.delete_cookie(TOKEN_COOKIE)
    return response
