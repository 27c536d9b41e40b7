"""Stand-ins for Ray Serve handles, so the real deployment classes run in-process in tests.

``handle.method.remote(...)`` returns something that can be awaited (from the ingress and
the planner) or ``.result()``-ed (from a model role's thread), as a DeploymentResponse can.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any


class LocalResponse:
    def __init__(self, method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._method, self._args, self._kwargs = method, args, kwargs

    def __await__(self) -> Any:
        if inspect.iscoroutinefunction(self._method):
            return self._method(*self._args, **self._kwargs).__await__()
        # Sync deployment methods run in Serve's thread pool; here in asyncio's.
        return asyncio.to_thread(self._method, *self._args, **self._kwargs).__await__()

    def result(self) -> Any:
        if inspect.iscoroutinefunction(self._method):
            raise TypeError("result() on an async method: await it instead")
        return self._method(*self._args, **self._kwargs)


class _Method:
    def __init__(self, method: Any) -> None:
        self._method = method

    def remote(self, *args: Any, **kwargs: Any) -> LocalResponse:
        return LocalResponse(self._method, args, kwargs)


class LocalHandle:
    def __init__(self, target: Any) -> None:
        self._target = target

    def options(self, **_: Any) -> LocalHandle:
        return self

    def __getattr__(self, name: str) -> _Method:
        return _Method(getattr(self._target, name))


class LocalBase:
    """The Base deployment without Ray: the same role, a dict of loaded pipelines, and a lock
    for what ``max_ongoing_requests=1`` guarantees there (one request at a time)."""

    def __init__(self, role: Any) -> None:
        self.role = role
        self.pipelines: dict[str, Any] = {}
        self._one_at_a_time = threading.Lock()

    def generate(self, uuid: str, step: Any, offset: int, remaining: int) -> Any:
        with self._one_at_a_time:
            if step.pipeline_key not in self.pipelines:
                self.pipelines[step.pipeline_key] = self.role.load(step.pipeline_key)
            return self.role.generate(self.pipelines[step.pipeline_key], uuid, step, offset, remaining)
