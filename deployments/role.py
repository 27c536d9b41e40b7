"""The one shape every model role shares: a small protocol, the stream, and the deployment shell.

A role (Base, Inpainter, Refiner, Upscaler) is a plain class that loads a model by id and runs
one plan step on it, blocking, reporting progress through a ``Reporter``. It knows nothing of Ray,
the Store or the rest of the plan. ``stream`` runs it in a thread and turns it into an async
generator of events: ``Started``, ``Progress`` (latest wins), then ``Outputs`` or the domain error
as a value. Closing the generator (a cancelled stream) stops the role at its next step and waits
for it, so a replica never runs two jobs on one pipeline; so does the death of the caller (a
Planner that died, or was stopped with the app), as nobody could receive the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from PIL import Image
from ray import serve
from ray.exceptions import ActorDiedError

from deployments.turns import Turn, TurnGate
from serve_app.errors import APIError, BadRequestError
from serve_app.metrics import model_loaded
from storage.model_folders import UnsafePathError
from storage.shared import SharedStorage

logger = logging.getLogger(__name__)

# Loaded models a replica keeps (least recently used goes first); requests are routed to
# replicas that already hold their model.
MODELS_PER_REPLICA = 2
# Jobs a replica takes: the one it runs. The next waits in the caller's router, where jobs are taken
# fairly (deployments/turns.py) and a new replica can take it; a job sent ahead to wait inside a
# busy replica would be committed to it before a job of another user admitted later.
JOBS_PER_REPLICA = 1
PROGRESS_INTERVAL_S = 0.1
# How often a running job asks whether its caller is still alive: a dead caller's job stops at its
# next step after that (Serve does not cancel a stream whose caller died).
CALLER_CHECK_S = 1.0
# Internal deployments log what an operator needs (loads, failures), not one line per call.
QUIET = {"enable_access_log": False}
# A job waiting for a busy replica asks again at most this often: Serve's default backoff grows to
# 0.5 s, which a queue of GPU jobs pays on every hand-over (bench/scheduling.py measures it).
MAX_ROUTING_BACKOFF_S = 0.05
# Jobs wait for the replicas that hold their model (while those are not overloaded).
AFFINITY_ROUTER = "deployments.affinity_router:ModelAffinityRouter"


@dataclass(frozen=True)
class Started:
    """The role took the job (its model may still be loading)."""


@dataclass(frozen=True)
class Progress:
    """``step`` of ``total`` of this role's own step are done."""

    step: int
    total: int


@dataclass(frozen=True)
class Intermediate:
    """The image as it stands at ``step`` (decoded every ``intermediate_steps``)."""

    step: int
    images: list[Image.Image]


@dataclass(frozen=True)
class Outputs:
    """The step's images; None in place of one the safety checker withheld."""

    images: list[Image.Image | None]


Event = Started | Progress | Intermediate | Outputs | APIError


class Stopped(Exception):
    """Raised inside a role's run when its stream was closed; never leaves ``stream``."""


class Reporter:
    """What a running role reports to, from its worker thread.

    Progress goes out at most every ``PROGRESS_INTERVAL_S`` (and always the last step): each
    event is a Ray message, and nobody reads progress faster than the Planner writes it."""

    def __init__(self, publish: Callable[[Progress | Intermediate], None]) -> None:
        self._publish = publish
        self._stop = threading.Event()
        self._published = -float("inf")

    def progress(self, step: int, total: int) -> None:
        now = time.monotonic()
        if step >= total or now - self._published >= PROGRESS_INTERVAL_S:
            self._published = now
            self._publish(Progress(step, total))

    def intermediate(self, step: int, images: list[Image.Image]) -> None:
        self._publish(Intermediate(step, images))

    @property
    def stopped(self) -> bool:
        """True once the stream was closed: stop at the next step and raise ``Stopped``."""
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()


def model_file(storage: SharedStorage, kind: str, name: str, field: str) -> Path:
    """The model ``name`` of the ``kind`` folder as a local path (a cached copy when the storage is
    not local), or 400 naming ``field`` (a role's load)."""
    try:
        found = storage.find_model(kind, name)
    except UnsafePathError as error:
        raise BadRequestError(f"{field}: {error}") from error
    if found is None:
        raise BadRequestError(f"{field}: no {kind} named {name!r}")
    return storage.local_copy(kind, found)


class Role(Protocol):
    def load(self, model_id: str) -> Any:
        """The model ``model_id`` names, ready to run (blocking)."""

    def run(self, model: Any, step: Any, inputs: list[Image.Image], reporter: Reporter) -> list[Image.Image]:
        """One plan step on ``model`` (blocking); ``inputs`` are the step's source images, if any."""

    def check_health(self) -> None:
        """Raise when the replica can no longer run jobs (a lost device)."""


_DONE = object()


async def stream(
    role: Role,
    model: Callable[[], Awaitable[Any]],
    step: Any,
    inputs: list[Image.Image],
    abandoned: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[Event]:
    """Get the model (loading it counts as started), run ``role`` on ``step`` in a thread, and
    yield its events as they come. When ``abandoned()`` returns (nobody can receive the result any
    more), the role stops at its next step and the stream ends without outputs."""
    yield Started()
    try:
        loaded = await model()
    except APIError as error:  # a model that cannot load is the request's problem
        yield error
        return
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[Any] = asyncio.Queue()
    reporter = Reporter(lambda event: loop.call_soon_threadsafe(events.put_nowait, event))
    work = loop.run_in_executor(None, role.run, loaded, step, inputs, reporter)
    work.add_done_callback(lambda _: events.put_nowait(_DONE))
    watch = asyncio.ensure_future(abandoned()) if abandoned is not None else None
    if watch is not None:
        watch.add_done_callback(lambda done: done.cancelled() or reporter.stop())
    try:
        finished = False
        while not finished:
            batch = [await events.get()]
            while not events.empty():
                batch.append(events.get_nowait())
            finished = batch[-1] is _DONE
            for event in batch:
                if isinstance(event, Intermediate):
                    yield event
            progress = [event for event in batch if isinstance(event, Progress)]
            if progress:
                yield progress[-1]  # the latest wins; the consumer wants where the role is now
        try:
            images = work.result()
        except APIError as error:
            yield error
            return
        except Stopped:  # abandoned: there is no one to tell
            logger.warning("stopped a job whose caller is gone")
            return
        yield Outputs(images)
    finally:
        reporter.stop()
        if watch is not None:
            watch.cancel()
        await _outlive_cancellation(work)


async def _outlive_cancellation(work: asyncio.Future[Any]) -> None:
    """Wait until the role's thread is done, even while this task is being cancelled."""
    while not work.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({work})
    if not work.cancelled() and isinstance(work.exception(), Stopped):
        logger.info("stopped: the stream was closed")


class RoleDeployment:
    """The deployment shell of every model role: models by multiplexing, a stream per job, one
    job at a time (a diffusers pipeline is not thread-safe, and a device runs one job well)."""

    role_class: ClassVar[Callable[..., Role]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._role = self.role_class(*args, **kwargs)
        # Serve sends one job at a time; callers without Serve (in-process) may send more at once.
        self._gate = TurnGate()

    @serve.multiplexed(max_num_models_per_replica=MODELS_PER_REPLICA)
    async def model(self, model_id: str) -> Any:
        began = time.monotonic()
        loaded = await asyncio.to_thread(self._role.load, model_id)
        seconds = time.monotonic() - began
        model_loaded(type(self).__name__.lower(), seconds)
        logger.info("loaded %s in %.1f s", model_id, seconds)
        return loaded

    async def generate(
        self, step: Any, inputs: list[Image.Image], caller: Any = None, turn: Turn | None = None
    ) -> AsyncIterator[Event]:
        """Consumed with ``handle.options(stream=True)``; with ``multiplexed_model_id=step.model_id``
        too, Serve routes it to a replica that holds the step's model (model affinity). A job
        waiting its turn has not started: ``Started`` comes with its turn, its model load too.
        ``caller``: the calling actor's handle; should it die, the job stops at its next step
        (checked every ``CALLER_CHECK_S`` while it runs, not before: no call on a job's way in).
        ``turn``: the invocation's place in line, where jobs wait for this role (deployments/turns.py)."""
        async with self._gate.turn(turn):
            abandoned = (lambda: caller_gone(caller)) if caller is not None else None
            async for event in stream(self._role, lambda: self.model(step.model_id), step, inputs, abandoned):
                yield event

    async def check_health(self) -> None:
        await asyncio.to_thread(self._role.check_health)


async def caller_gone(actor: Any) -> None:
    """Return once ``actor`` is dead (it died, or was stopped with its app)."""
    while True:
        await asyncio.sleep(CALLER_CHECK_S)
        try:
            await actor.__ray_ready__.remote()
        except ActorDiedError:
            return


def role_deployment(role_class: Callable[..., Role], name: str) -> Any:
    """The Serve deployment of one role: one job at a time per replica; the rest wait in the caller."""
    shell = type(name, (RoleDeployment,), {"role_class": role_class, "__module__": role_class.__module__})
    return serve.deployment(
        name=name,
        max_ongoing_requests=JOBS_PER_REPLICA,
        health_check_period_s=30,
        graceful_shutdown_timeout_s=60,
        logging_config=QUIET,
        request_router_config={"request_router_class": AFFINITY_ROUTER, "max_backoff_s": MAX_ROUTING_BACKOFF_S},
    )(shell)
