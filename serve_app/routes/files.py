"""GET the model files in each folder: checkpoints, LoRA, LyCORIS, inversions, ..."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from serve_app.auth import TokenDep
from serve_app.dependencies import ServicesDep
from serve_app.envelope import success

router = APIRouter()

# URL path -> model folder kind. /api/inversion is the path Enfugue's own client uses.
_LISTINGS = {
    "/api/checkpoints": "checkpoint",
    "/api/lora": "lora",
    "/api/lycoris": "lycoris",
    "/api/inversions": "inversion",
    "/api/inversion": "inversion",
    "/api/vae": "vae",
    "/api/controlnet": "controlnet",
    "/api/upscalers": "upscaler",
    "/api/annotators": "annotators",
}


def _listing(kind: str):  # noqa: ANN202 - a route factory
    async def listing(request: Request, services: ServicesDep, token: TokenDep) -> JSONResponse:
        await services.store.session(token)
        # The folder walk runs in a thread, off the event loop.
        return success(request, await run_in_threadpool(services.storage.list_models, kind))

    return listing


for _path, _kind in _LISTINGS.items():
    router.add_api_route(_path, _listing(_kind), methods=["GET"], name=f"list {_path}")
