"""Invoking, following, and removing invocations; their images; the invocation history."""

from __future__ import annotations

import re
import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from deployments.jobs import Job, save_job
from deployments.plan import make_plan
from deployments.turns import Turn
from serve_app.auth import TokenDep
from serve_app.costs import check_cost
from serve_app.dependencies import ServicesDep, parse_body
from serve_app.envelope import success
from serve_app.errors import APIError, NotFoundError
from serve_app.models import generation_request
from serve_app.openapi import json_body, list_query
from serve_app.query import parse_list_query
from serve_app.schemas import InvokeRequest
from storage.listing import INVOCATIONS
from storage.shared import IMAGES, INTERMEDIATES, SharedStorage

router = APIRouter()

_UUID = re.compile(r"^[0-9a-f]{32}$")
# An image's name never changes meaning (a new invocation gets a new uuid): cache it for good.
_IMMUTABLE = "private, max-age=31536000, immutable"


def checked_uuid(uuid: str) -> str:
    if _UUID.match(uuid) is None:
        raise NotFoundError(f"Invocation {uuid!r:.60} not found.")
    return uuid


@router.post("/api/invoke", openapi_extra=json_body(InvokeRequest))
async def invoke(request: Request, services: ServicesDep, token: TokenDep) -> JSONResponse:
    body = await parse_body(request, InvokeRequest)
    model = body.model if body.model_type != "checkpoint" else None
    admitted = await services.store.admit(token, body.summary(), model)
    uuid = admitted["status"]["uuid"]
    try:
        # Folder walks, checkpoint headers and the job file: off the event loop.
        job = await run_in_threadpool(_planned, body, admitted, services.storage)
    except APIError:
        await services.store.withdraw(token, uuid)
        raise
    services.launch(services.planner.run.remote(uuid, job.plan, job.turn), uuid)
    return success(request, admitted["status"])


def _planned(body: InvokeRequest, admitted: dict[str, Any], storage: SharedStorage) -> Job:
    """The invocation's plan (a random seed where the request has none), once its cost is within
    the limits; the Planner runs it as it is. Stored before the answer: should its Planner be
    lost, another runs it again (deployments/jobs.py)."""
    plan = make_plan(generation_request(body, admitted, storage), random_seed=secrets.randbelow(2**32))
    check_cost(plan, admitted["limits"])
    job = Job(plan, Turn(**admitted["turn"]))
    save_job(storage, admitted["status"]["uuid"], job)
    return job


@router.get("/api/invocation/images/{name}")
async def image(name: str, request: Request, services: ServicesDep, token: TokenDep) -> Response:
    """The Store says whether the caller may read it; the file comes from the images folder."""
    await services.store.readable_image(token, name)
    return await _png(request, services.storage, IMAGES, name)


@router.get("/api/invocation/intermediates/{name}")
async def intermediate(name: str, request: Request, services: ServicesDep, token: TokenDep) -> Response:
    """An image of a running invocation, as its status lists it (gone once the invocation ends)."""
    await services.store.readable_intermediate(token, name)
    return await _png(request, services.storage, INTERMEDIATES, name)


async def _png(request: Request, storage: SharedStorage, folder: str, name: str) -> Response:
    """A PNG whose name never changes meaning (a new one gets a new name): validated, cached for
    good; streamed from the storage, local or not (the Store has checked ``name``)."""
    etag = f'"{name}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": _IMMUTABLE})
    opened = await run_in_threadpool(storage.opened, folder, name)
    if opened is None:
        raise NotFoundError(f"Image {name} not found.")
    size, chunks = opened
    headers = {"ETag": etag, "Cache-Control": _IMMUTABLE, "Content-Length": str(size)}
    # A plain iterator: Starlette reads it in a thread, so blocking reads stay off the event loop.
    return StreamingResponse(chunks, media_type="image/png", headers=headers)


@router.get("/api/invocation")
async def recent(request: Request, services: ServicesDep, token: TokenDep) -> JSONResponse:
    """The caller's newest invocations as status objects (an administrator's: everyone's)."""
    return success(request, await services.store.recent(token))


@router.post("/api/invocation/stop")
async def stop(request: Request, services: ServicesDep, token: TokenDep) -> JSONResponse:
    """Cancel the caller's queued and running invocations (an administrator's: all of them).

    Enfugue stopped its one engine for everyone; here each user stops only their own work."""
    return success(request, {"cancelled": await services.store.stop(token)})


# What Enfugue's UI shows for an output the safety checker withheld (listed as "nsfw").
_WITHHELD = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="512" height="512" viewBox="0 0 512 512">'
    '<rect width="512" height="512" fill="#222222"/>'
    '<text x="256" y="256" transform="rotate(-45 256 256)" text-anchor="middle" dominant-baseline="middle" '
    'font-family="sans-serif" font-size="96" font-weight="bold" fill="#555555">NSFW</text></svg>'
)


@router.get("/api/invocation/nsfw")
async def withheld(token: TokenDep) -> Response:
    """The placeholder for an output the safety checker withheld (the ``safe`` setting)."""
    return Response(_WITHHELD, media_type="image/svg+xml", headers={"Cache-Control": _IMMUTABLE})


@router.get("/api/invocation/{uuid}")
async def invocation_status(uuid: str, request: Request, services: ServicesDep, token: TokenDep) -> JSONResponse:
    return success(request, await services.store.status(token, checked_uuid(uuid)))


@router.post("/api/invocation/{uuid}/cancel")
async def cancel(uuid: str, request: Request, services: ServicesDep, token: TokenDep) -> JSONResponse:
    return success(request, await services.store.cancel(token, checked_uuid(uuid)))


@router.delete("/api/invocation/{uuid}")
async def delete(uuid: str, request: Request, services: ServicesDep, token: TokenDep) -> JSONResponse:
    await services.store.delete(token, checked_uuid(uuid))
    return success(request, None)


@router.get("/api/invocation-history", openapi_extra=list_query(INVOCATIONS))
async def history(request: Request, services: ServicesDep, token: TokenDep) -> JSONResponse:
    rows, count = await services.store.history(token, parse_list_query(request, INVOCATIONS))
    return success(request, rows, count=count)
