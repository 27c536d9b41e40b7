"""Cross-site request forgery: a page of another site cannot make a browser change anything here.

A browser sends the ``enfugue_token`` cookie (and, with auth off, needs none) with a form or
``fetch`` that another site's page makes, and ``Content-Type: text/plain`` asks no CORS
preflight. So a request that changes state and carries no ``Authorization`` header must come
from this server's own pages: its ``Origin`` (or, lacking one, its ``Referer``) must be this
server or an origin listed in ``trusted_origins``. Requests with a Bearer token (Enfugue's own
client, scripts) and requests with neither header (curl, other non-browser clients) pass: a
browser always sends ``Origin`` on cross-site writes.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from serve_app.envelope import error_response

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# A GET that changes state: logging out revokes the token.
UNSAFE_GETS = frozenset({"/logout"})


def _origin(value: str) -> str | None:
    parts = urlsplit(value)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else None


class SameOriginWrites:
    def __init__(self, app: ASGIApp, trusted_origins: list[str]) -> None:
        self.app = app
        self.trusted = frozenset(origin.rstrip("/").lower() for origin in trusted_origins if origin != "*")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._forged(scope):
            detail = "A state change from another site's page is refused; send an Authorization header."
            await error_response(403, "PermissionError", detail)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _forged(self, scope: Scope) -> bool:
        if scope["method"] in SAFE_METHODS and scope["path"] not in UNSAFE_GETS:
            return False
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        if "authorization" in headers:
            return False
        claimed = headers.get("origin") or headers.get("referer")
        if claimed is None:
            return False
        origin = _origin(claimed)  # "null" (sandboxed pages, files) is no origin of ours
        host = headers.get("host", "").lower()
        return origin is None or (urlsplit(origin).netloc != host and origin not in self.trusted)
