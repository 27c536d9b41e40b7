"""What routes receive: the services (deployment handles, shared storage), the caller, the JSON body."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from serve_app.config import AppArgs
from serve_app.envelope import validation_detail
from serve_app.errors import BadRequestError
from serve_app.json_body import read_json
from storage.shared import SharedStorage, shared_storage

logger = logging.getLogger(__name__)

Model = TypeVar("Model", bound=BaseModel)


@dataclass
class Services:
    """The Store and the Downloads deployment (``Remote``s: ``await store.method(token, ...)``)
    and the Planner's handle.

    In tests both wrap local stand-ins for Ray Serve handles."""

    store: Any
    planner: Any
    args: AppArgs
    version: str
    downloads: Any = None
    started: float = field(default_factory=time.monotonic)
    _background: set[asyncio.Task[Any]] = field(default_factory=set)

    @functools.cached_property
    def storage(self) -> SharedStorage:
        """Images and model folders (``args.storage_url``, else the data folder)."""
        return shared_storage(self.args.data_dir, self.args.storage_url)

    def launch(self, response: Any, label: str) -> None:
        """Let a deployment call run on after the HTTP reply; keep it referenced until done."""

        async def wait() -> None:
            try:
                await response
            except Exception:
                logger.exception("background call %s failed", label)

        task = asyncio.get_running_loop().create_task(wait())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def get_services(request: Request) -> Services:
    """``async`` although it awaits nothing: FastAPI runs a plain ``def`` dependency in a thread."""
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


# Bodies larger than this are parsed in a thread (image fields are decoded while validating);
# smaller ones cost less to parse than the hop to a thread.
_PARSE_INLINE_BYTES = 64 * 1024


def _validated(body: bytes, model: type[Model]) -> Model:
    try:
        return model.model_validate(read_json(body))
    except ValidationError as error:
        raise BadRequestError("; ".join(validation_detail(item) for item in error.errors())) from error


async def parse_body(request: Request, model: type[Model]) -> Model:
    body = await request.body()
    if len(body) <= _PARSE_INLINE_BYTES:
        return _validated(body, model)
    return await run_in_threadpool(_validated, body, model)
