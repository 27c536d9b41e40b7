"""The HTTP ingress: the FastAPI app of the Enfugue JSON API, and its Ray Serve deployment."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from ray import serve
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app.config import AppArgs
from serve_app.csrf import SameOriginWrites
from serve_app.dependencies import Services
from serve_app.envelope import error_response, install_error_handlers
from serve_app.errors import PayloadTooLargeError
from serve_app.openapi import describe
from serve_app.remote import Remote
from serve_app.routes import (
    console,
    downloads,
    events,
    files,
    invocations,
    login,
    models,
    settings,
    system,
    users,
)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await error_response(413, "PayloadTooLargeError", self._detail())(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise PayloadTooLargeError(self._detail())
            return message

        await self.app(scope, counting_receive, send)

    def _detail(self) -> str:
        return f"body: larger than the limit of {self.limit} bytes"


def create_api(services: Services) -> FastAPI:
    api = FastAPI(title="enfugue-serve", version=services.version, docs_url="/api/docs", redoc_url=None)
    api.state.services = services
    install_error_handlers(api)
    for module in (system, login, settings, users, models, files, invocations, events, downloads, console):
        api.include_router(module.router)
    describe(api)
    api.add_middleware(BodyLimit, limit=services.args.max_body_bytes)
    api.add_middleware(SameOriginWrites, trusted_origins=services.args.trusted_origins)
    api.add_middleware(
        CORSMiddleware, allow_origins=services.args.cors_origins, allow_methods=["*"], allow_headers=["*"]
    )
    return api


@serve.deployment(max_ongoing_requests=200, health_check_period_s=10)
@serve.ingress()
class Ingress:
    def __init__(self, store: Any, planner: Any, downloads: Any, args: AppArgs, version: str) -> None:
        services = Services(
            store=Remote(store), planner=planner, downloads=Remote(downloads), args=args, version=version
        )
        self._api = create_api(services)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return self._api
