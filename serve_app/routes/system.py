"""GET /api: what the server is doing, and on which machines."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from serve_app.auth import TokenDep
from serve_app.cluster import ClusterView
from serve_app.dependencies import ServicesDep
from serve_app.envelope import success

router = APIRouter()


def _cluster_view(request: Request) -> ClusterView:
    # One per app, made on first use: its cache and its refresh task belong to the app's event loop.
    view = getattr(request.app.state, "cluster_view", None)
    if view is None:
        view = request.app.state.cluster_view = ClusterView()
    return view


@router.get("/api")
async def status(request: Request, services: ServicesDep, token: TokenDep) -> JSONResponse:
    system = await services.store.system(token)
    downloads = await services.downloads.counts()
    cluster = await _cluster_view(request).snapshot()
    return success(
        request,
        {
            "status": "busy" if system["processing"] else "idle",
            "system": {
                "downloads": downloads,
                "invocations": {
                    "active": system["processing"] > 0,
                    "queued": system["queued"],
                    "total": system["processing"] + system["queued"],
                },
            },
            # Enfugue's field: the first GPU of the cluster. Ours beside it: all of them, the nodes,
            # and the replicas of each role (deployment) of this application.
            "gpu": cluster["gpu"],
            "gpus": cluster["gpus"],
            "nodes": cluster["nodes"],
            "replicas": cluster["replicas"],
            "version": services.version,
            "uptime": time.monotonic() - services.started,
            "warnings": system["warnings"],
        },
    )
