"""Stand-ins for Ray Serve handles, so the real deployment classes run in-process in tests.

``handle.method.remote(...)`` returns something that can be awaited and cancelled, or, with
``options(stream=True)``, iterated with ``async for``, as a DeploymentResponse(Generator) can.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from typing import Any

from deployments.role import Role, RoleDeployment


class LocalResponse:
    def __init__(self, method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._method, self._args, self._kwargs = method, args, kwargs
        self._task: asyncio.Future[Any] | None = None

    def __await__(self) -> Any:
        if self._task is None:
            if inspect.iscoroutinefunction(self._method):
                self._task = asyncio.ensure_future(self._method(*self._args, **self._kwargs))
            else:  # sync deployment methods run in Serve's thread pool; here in asyncio's
                self._task = asyncio.ensure_future(asyncio.to_thread(self._method, *self._args, **self._kwargs))
        return self._task.__await__()

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


class LocalStream:
    def __init__(self, events: AsyncIterator[Any]) -> None:
        self._events = events

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._events

    def cancel(self) -> None:
        close = getattr(self._events, "aclose", None)
        if close is not None:
            asyncio.ensure_future(close())


class _Method:
    def __init__(self, method: Any, streaming: bool) -> None:
        self._method, self._streaming = method, streaming

    def remote(self, *args: Any, **kwargs: Any) -> LocalResponse | LocalStream:
        if self._streaming:
            return LocalStream(self._method(*args, **kwargs))
        return LocalResponse(self._method, args, kwargs)


class LocalHandle:
    def __init__(self, target: Any, **options: Any) -> None:
        self._target = target
        self._options = options

    def options(self, **options: Any) -> LocalHandle:
        return LocalHandle(self._target, **{**self._options, **options})

    def __getattr__(self, name: str) -> _Method:
        # multiplexed_model_id only routes (to a replica holding the model); one process has one "replica".
        return _Method(getattr(self._target, name), streaming=self._options.get("stream", False))


class LocalRole(RoleDeployment):
    """A role in the deployment shell every role runs in (its turns, its stream), without Ray:
    the loaded models in a dict, as Serve's multiplexing needs a replica."""

    def __init__(self, role: Role) -> None:
        self.role_class = lambda: role
        super().__init__()
        self.models: dict[str, Any] = {}

    async def model(self, model_id: str) -> Any:
        if model_id not in self.models:
            self.models[model_id] = await asyncio.to_thread(self._role.load, model_id)
        return self.models[model_id]
