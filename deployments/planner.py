"""The Planner deployment: makes an invocation's plan and runs it through the model roles."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from ray import serve

from deployments.plan import Checkpoint, make_plan
from serve_app.errors import APIError, InvocationCancelled
from serve_app.schemas import InvokeRequest

logger = logging.getLogger(__name__)


@serve.deployment(max_ongoing_requests=1000, health_check_period_s=30)
class Planner:
    def __init__(self, store: Any, base: Any, version: str) -> None:
        self._store = store
        self._base = base
        self._version = version

    async def run(
        self, uuid: str, request: InvokeRequest, checkpoint: Checkpoint, model: dict[str, Any] | None = None
    ) -> str:
        """Execute the invocation to its end; the outcome goes to the Store. Returns the final status."""
        try:
            plan = make_plan(request, checkpoint, random_seed=secrets.randbelow(2**32), model=model)
            await self._store.record_plan.remote(uuid, plan.to_dict())
            images: list[Any] = []
            done, remaining = 0, plan.expected_steps
            for step in plan.steps:
                remaining -= step.expected_steps
                base = self._base.options(multiplexed_model_id=step.pipeline_key)
                images.extend(await base.generate.remote(uuid, step, done, remaining))
                done += step.expected_steps
            saved = await self._store.complete.remote(uuid, images, {"plan": plan.to_dict()})
            return "completed" if saved else "cancelled"
        except InvocationCancelled:
            logger.info("invocation %s cancelled", uuid)
            return "cancelled"
        except APIError as error:
            await self._store.fail.remote(uuid, error.detail)
        except Exception as error:
            logger.exception("invocation %s failed", uuid)
            await self._store.fail.remote(uuid, describe(error))
        return "error"


def describe(error: Exception) -> str:
    """A short message for the user: the original error, not Ray's wrapper and its traceback."""
    cause = getattr(error, "cause", None)
    original = cause if isinstance(cause, Exception) else error
    return f"{type(original).__name__}: {original}"[:500]
