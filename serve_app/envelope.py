"""The Enfugue response envelope and the one place where exceptions become HTTP replies."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve_app.errors import APIError, TooManyRequestsError

logger = logging.getLogger(__name__)

_HTTP_TITLES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionError",
    404: "NotFoundError",
    405: "MethodNotAllowedError",
    409: "StateConflictError",
    413: "PayloadTooLargeError",
    429: "TooManyRequestsError",
}


def meta_params(request: Request) -> dict[str, list[str]]:
    """Every query parameter as a list of strings, as Enfugue reports them in ``meta.params``."""
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    return params


def success(request: Request, data: Any, **meta: Any) -> JSONResponse:
    return JSONResponse({"meta": {"params": meta_params(request), **meta}, "data": data})


def error_response(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"errors": [{"status": str(status), "title": title, "detail": detail}]}
    return JSONResponse(body, status_code=status, headers=headers)


# Error types whose input is the whole body or already quoted in the message.
_NO_ECHO = frozenset({"not_supported", "body", "image", "mask", "image_size", "strength", "null", "multiple_of_8"})


def validation_detail(error: dict[str, Any]) -> str:
    """One pydantic error as '<field>: <message>' (the field is the dotted location)."""
    location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    message = error.get("msg", "is invalid")
    if error.get("type") == "extra_forbidden":
        message = "unknown parameter"
    elif isinstance(error.get("input"), int | float | str | bool) and error.get("type") not in _NO_ECHO:
        message = f"{message} (got {error['input']!r:.80})"
    return f"{location}: {message}" if location else message


def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    headers = None
    if isinstance(exc, TooManyRequestsError):
        headers = {"Retry-After": str(exc.retry_after)}
    return error_response(exc.status, exc.title, exc.detail, headers)


def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = _HTTP_TITLES.get(exc.status_code, "HTTPError")
    return error_response(exc.status_code, title, str(exc.detail), exc.headers)


def _request_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = "; ".join(validation_detail(error) for error in exc.errors())
    return error_response(400, "BadRequestError", detail)


def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    # Ray wraps errors raised in other deployments; a wrapped APIError is still one.
    if isinstance(exc, APIError):
        return _api_error(_, exc)
    logger.exception("unhandled error", exc_info=exc)
    return error_response(500, "InternalServerError", "An unexpected error occurred.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
