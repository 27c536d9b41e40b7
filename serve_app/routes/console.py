"""The web console at ``/``: three static files, a client of the public JSON API.

No build step and no CDN: the page loads only what is listed here, from this server. The policy
below lets it run no inline script, load nothing from another origin, and be framed by nobody;
console.js inserts every text that comes from a user (prompts, names, errors) as text.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

from serve_app.errors import NotFoundError

router = APIRouter()

FOLDER = Path(__file__).resolve().parent.parent / "console"
# name -> media type: the only files served (a name is looked up, never joined to a path).
FILES = {"index.html": "text/html", "console.js": "text/javascript", "console.css": "text/css"}
# data: and blob: images are the caller's own files, previewed before they are sent.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Small files that change with each release: revalidated, never served stale.
    "Cache-Control": "no-cache",
}


def _served(name: str) -> Response:
    return Response((FOLDER / name).read_bytes(), media_type=FILES[name], headers=HEADERS)


@router.get("/", include_in_schema=False)
async def page() -> Response:
    return _served("index.html")


@router.get("/console/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    if name not in FILES:
        raise NotFoundError(f"Console file {name!r:.60} not found.")
    return _served(name)
