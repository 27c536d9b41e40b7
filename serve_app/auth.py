"""Who a request acts as: the token from ``Authorization: Bearer`` or the ``enfugue_token`` cookie."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from serve_app.dependencies import ServicesDep
from serve_app.errors import AccessDeniedError

TOKEN_COOKIE = "enfugue_token"
# What a token of ours can look like; anything else is refused without a database lookup.
_TOKEN = re.compile(r"^[0-9a-f]{32,128}$")


@dataclass(frozen=True)
class User:
    id: int
    username: str
    admin: bool


def presented_token(request: Request) -> str | None:
    """The token the request carries: None when it carries none, "" when it is malformed."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        token = value.strip()
    else:
        scheme, token = "bearer", request.cookies.get(TOKEN_COOKIE, "")
        if not token:
            return None
    return token if scheme.lower() == "bearer" and _TOKEN.match(token) else ""


async def current_user(request: Request, services: ServicesDep) -> User:
    """The caller (401 without valid credentials when auth is on; the admin when it is off)."""
    found = await services.store.authenticate(presented_token(request))
    return User(id=found["id"], username=found["username"], admin=found["admin"])


UserDep = Annotated[User, Depends(current_user)]


async def admin_user(user: UserDep) -> User:
    if not user.admin:
        raise AccessDeniedError("This requires an administrator.")
    return user


AdminDep = Annotated[User, Depends(admin_user)]
