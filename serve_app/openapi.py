"""What the API says about itself: /openapi.json with every body, query parameter and error,
and ``OPTIONS`` answered with every method a path takes.

Bodies are parsed by hand (Enfugue's clients send JSON with form content types), so FastAPI
cannot see them; routes name their body model with ``json_body`` and their list parameters with
``list_query``, and ``describe`` adds the schemas. The description holds no data, so it is
served without a token, auth on or off.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from serve_app.query import MAX_PAGE_NUMBER
from storage.listing import Listing

_BODY_MODELS: dict[str, type[BaseModel]] = {}
_REF = "#/components/schemas/{model}"

ERROR_STATUSES = {
    "400": "The request is invalid; the detail names the field and what is allowed.",
    "401": "No valid credentials (auth on).",
    "403": "Not allowed: an administrator's route, or a state change from another site's page.",
    "404": "Not found (another user's invocations are not found either).",
    "409": "Conflicts with the current state (a name that exists, the default user).",
    "413": "The body is larger than the server takes.",
    "429": "Too many requests: a full queue or failed logins; Retry-After says when to try again.",
}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` of a route whose JSON body ``model`` validates."""
    _BODY_MODELS[model.__name__] = model
    schema = {"$ref": _REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def list_query(listing: Listing) -> dict[str, Any]:
    """``openapi_extra`` of a REST list route: Enfugue's query language over ``listing``."""
    columns = sorted(listing.columns)

    def parameter(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}

    names = "|".join(map(re.escape, columns))
    pattern = f"^({names}):"
    page = {"type": "integer", "minimum": 0, "maximum": MAX_PAGE_NUMBER}
    parameters = [
        parameter("limit", "Rows to return; 0: all (default 100).", page),
        parameter("offset", "Rows to skip.", page),
        parameter(
            "sort", "column or column:desc; repeatable, applied in order.",
            {"type": "array", "items": {"type": "string", "pattern": f"^({names})(:(asc|desc))?$"}},
        ),
        parameter("ilike", "column:text, case-insensitive substring; several are ORed.",
                  {"type": "array", "items": {"type": "string", "pattern": pattern}}),
        parameter("filter", "column:value or column:a|b; several are ANDed.",
                  {"type": "array", "items": {"type": "string", "pattern": pattern}}),
    ]  # fmt: skip
    if listing.includes:
        parameters.append(
            parameter("include", "Related objects to include; repeatable.",
                      {"type": "array", "items": {"type": "string", "enum": sorted(listing.includes)}})
        )  # fmt: skip
    return {"parameters": parameters}


def describe(api: FastAPI) -> None:
    """Replace FastAPI's generated description with one that has bodies and the real errors."""

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            api.openapi_schema = _description(api)
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
    api.include_router(_options_router(api))


def _description(api: FastAPI) -> dict[str, Any]:
    document = get_openapi(title=api.title, version=api.version, routes=api.routes)
    _, definitions = models_json_schema([(model, "validation") for model in _BODY_MODELS.values()], ref_template=_REF)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(definitions.get("$defs", {}))
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Errors"] = {
        "type": "object",
        "required": ["errors"],
        "properties": {
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["status", "title", "detail"],
                    "properties": {
                        "status": {"type": "string"},
                        "title": {"type": "string"},
                        "detail": {"type": "string"},
                    },  # fmt: skip
                },
            }
        },
    }
    for path in document["paths"].values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)  # FastAPI's own validation error; this API answers 400
            for status, description in ERROR_STATUSES.items():
                responses[status] = {
                    "description": description,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}},
                }
    return document


def all_routes(routes: list[Any]) -> Iterator[Any]:
    """Every route, also inside included routers (which this FastAPI keeps as routers)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from all_routes(included.routes)
        else:
            yield route


def _options_router(api: FastAPI) -> APIRouter:
    router = APIRouter()

    @router.options("/{path:path}", include_in_schema=False)
    async def allowed(request: Request) -> Response:
        """Every method the path takes (a CORS preflight is answered before this, by its middleware)."""
        methods: set[str] = set()
        for route in all_routes(api.routes):
            route_methods = getattr(route, "methods", None) or set()
            regex = getattr(route, "path_regex", None)
            if regex is not None and route_methods != {"OPTIONS"} and regex.match(request.url.path):
                methods |= route_methods
        if not methods:
            return Response(status_code=404)
        return Response(status_code=204, headers={"Allow": ", ".join(sorted(methods | {"OPTIONS"}))})

    return router
