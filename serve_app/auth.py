"""Who a request says it is: the token from ``Authorization: Bearer`` or the ``enfugue_token`` cookie.

The ingress only reads the token; the Store checks it in the same call that does the work.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Request

from serve_app.dependencies import ServicesDep
from serve_app.errors import AccessDeniedError

TOKEN_COOKIE = "enfugue_token"
# What a token of ours can look like; anything else is refused without a database lookup.
_TOKEN = re.compile(r"^[0-9a-f]{32,128}$")


async def presented_token(request: Request) -> str | None:
    """The token the request carries: None when it carries none, "" when it is malformed.

    ``async`` although it awaits nothing: FastAPI runs a plain ``def`` dependency in a thread."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        token = value.strip()
    else:
        scheme, token = "bearer", request.cookies.get(TOKEN_COOKIE, "")
        if not token:
            return None
    return token if scheme.lower() == "bearer" and _TOKEN.match(token) else ""


TokenDep = Annotated[str | None, Depends(presented_token)]


async def checked_admin_token(token: TokenDep, services: ServicesDep) -> str | None:
    """The token, once the Store says it is an administrator's (401 / 403 otherwise).

    For writes that look at the body before their Store call (file lookups): nobody learns
    anything from them without the right to make them. Reads check in their one Store call.
    """
    caller = await services.store.session(token)
    if not caller["admin"]:
        raise AccessDeniedError("This requires an administrator.")
    return token


AdminTokenDep = Annotated[str | None, Depends(checked_admin_token)]
