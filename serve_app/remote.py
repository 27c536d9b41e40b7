"""How domain errors cross a deployment boundary: as return values, raised again by the caller.

Ray Serve logs every exception that leaves a replica with a traceback ("Request failed."); a
404 for an unknown invocation is an answer, not a failure of the Store.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from serve_app.errors import APIError

Cls = TypeVar("Cls", bound=type)


def errors_as_values(cls: Cls) -> Cls:
    """A subclass of ``cls`` whose public methods return an ``APIError`` instead of raising it."""

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(method):

            @functools.wraps(method)
            async def answer_later(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await method(*args, **kwargs)
                except APIError as error:
                    return error

            return answer_later

        @functools.wraps(method)
        def answer(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except APIError as error:
                return error

        return answer

    methods = {
        name: wrap(member) for name, member in inspect.getmembers(cls, inspect.isfunction) if not name.startswith("_")
    }
    return type(cls.__name__, (cls,), {**methods, "__module__": cls.__module__, "__doc__": cls.__doc__})  # type: ignore[return-value]


class Remote:
    """``await remote.method(...)`` calls ``handle.method.remote(...)`` and raises an answered APIError."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._handle, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = await method.remote(*args, **kwargs)
            if isinstance(result, APIError):
                raise result
            return result

        return call
