"""A request body read as JSON, refusing what would fail later (or cost much) with a clear 400.

Enfugue's clients (and ``curl -d``) send JSON with form content types, so the content type is
not checked; the bytes must be UTF-8 JSON. Nesting is bounded (the deepest body this API takes
is a few levels); strings must be text DuckDB and the text encoders can take (no lone
surrogates from ``\\ud800`` escapes).
"""

from __future__ import annotations

import json
from typing import Any

from serve_app.errors import BadRequestError

MAX_DEPTH = 16


def read_json(body: bytes) -> Any:
    if not body.strip():
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequestError(f"body: not UTF-8 (byte {error.start}); send JSON encoded as UTF-8") from error
    try:
        data = json.loads(text)
    except RecursionError as error:
        raise BadRequestError(f"body: nested more than {MAX_DEPTH} levels deep") from error
    except ValueError as error:  # JSONDecodeError, and integers past Python's 4300-digit limit
        raise BadRequestError(f"body: not valid JSON ({str(error)[:120]})") from error
    _check(data, "", 0)
    return data


def _check(value: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise BadRequestError(f"body: nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        _text(value, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            _text(key, where or "body")
            _check(item, f"{where}.{key}" if where else key, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, f"{where}[{index}]" if where else f"body[{index}]", depth + 1)


def _text(value: str, where: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        code = ord(value[error.start])
        raise BadRequestError(
            f"{where or 'body'}: holds a lone surrogate (\\u{code:04x}), which is not text; send valid Unicode"
        ) from error
