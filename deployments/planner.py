"""The Planner deployment: runs an invocation's plan (made by the ingress) through the model roles.

It owns everything about a job that is not one step's work: the step accounting over the whole
plan, progress (coalesced to the Store), cancellation (the Store says when an invocation stopped
being active; the running role's stream is then closed), and the output files (PNGs with the plan
in their text chunks, written here; the Store records their names). It holds its jobs under
leases from the Store, and adopts the jobs of a Planner that was lost, from their stored plans.
A Planner asked to stop (a redeploy, a scale-down) lets the jobs already on a role finish and
hands the others back to the queue, where another Planner adopts them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

import ray
from PIL import Image
from ray import serve
from ray.exceptions import RayActorError

from deployments.image_steps import Composite, RemoveBackground, Upscale
from deployments.jobs import load_job
from deployments.plan import DENOISE, Plan, Step
from deployments.progress import ProgressWriter
from deployments.role import QUIET, Intermediate, Outputs, Progress, Started
from deployments.steps import StepOutputs
from deployments.turns import Turn
from serve_app.errors import APIError
from serve_app.metrics import denoising_steps
from serve_app.remote import Remote
from storage.images import FLAGGED, image_name, intermediate_name, write_png
from storage.shared import IMAGES, INTERMEDIATES, shared_storage

logger = logging.getLogger(__name__)

# Well inside the Store's lease (storage/leases.py: 30 s).
RENEW_INTERVAL_S = 5.0
# How often a Planner asks the Store for invocations whose Planner was lost, and how many it takes
# at once (each runs as one of its own; the roles' queues order them).
ADOPT_INTERVAL_S = 2.0
ADOPT_BATCH = 16
# Serve's force-kill deadline for a stopping Planner (its graceful_shutdown_timeout_s, unless the
# app's options set another), and the part of it kept to hand the unfinished jobs back.
GRACEFUL_SHUTDOWN_S = 60.0
HAND_BACK_MARGIN_S = 10.0
# How long one watch for a cancel waits in the Store before it is asked again.
WATCH_S = 5.0
# A stopping Planner waits this long for each call to the Store as it hands its jobs back, and
# asks again for this long in all (a Store replaced with it comes back in seconds).
STORE_CALL_S = 3.0
STORE_PATIENCE_S = 20.0


@dataclass
class _Job:
    """One invocation as the Planner runs it."""

    uuid: str
    turn: Turn
    writer: ProgressWriter
    # Intermediate images on disk: the ones shown, and the ones before (a client may have just
    # read their names in a status and be fetching them).
    shown: list[str] = field(default_factory=list)
    before: list[str] = field(default_factory=list)


@serve.deployment(
    max_ongoing_requests=1000,
    # Serve notices a dead replica by its health check (or sooner): a lone Planner that died is
    # replaced within about this long, and until then no new job starts.
    health_check_period_s=10,
    graceful_shutdown_timeout_s=GRACEFUL_SHUTDOWN_S,
    logging_config=QUIET,
)
class Planner:
    def __init__(
        self,
        store: Any,
        roles: dict[str, Any],
        data_dir: str,
        version: str,
        model_affinity: bool = True,
        storage_url: str | None = None,
        finish_within_s: float = GRACEFUL_SHUTDOWN_S - HAND_BACK_MARGIN_S,
    ) -> None:
        """``roles``: a handle per role name (``Step.role``). ``model_affinity``: route each step to a
        replica of its role that holds its model, while one is free soon enough (Serve's multiplexed
        routing); off, any free replica takes it. Images go to ``storage_url`` (else ``data_dir``).
        ``finish_within_s``: how long a stopping replica lets its jobs already on a role run on."""
        self._store = Remote(store)
        self._roles = roles
        self._storage = shared_storage(data_dir, storage_url).ensure()
        self._version = version
        self._affinity = model_affinity
        self._finish_within_s = finish_within_s
        # The jobs held here, waiting for a role or running: their leases are renewed.
        self._jobs: dict[str, asyncio.Task[str]] = {}
        self._started: set[str] = set()  # those whose first step a role has begun
        self._renewing: asyncio.Task[None] | None = None
        # Sent with every step: a role whose caller died stops (deployments/role.py).
        self._me = _own_actor()
        self._stopping = asyncio.Event()
        self._adopting: asyncio.Task[None] | None = None
        with contextlib.suppress(RuntimeError):  # in a replica; in-process tests call adopt()
            self._adopting = asyncio.get_running_loop().create_task(self._adopt_forever())

    async def run(self, uuid: str, plan: Plan, turn: Turn) -> None:
        """Take the invocation: its plan (made by the ingress, which checked its cost) runs here
        after this returns, to its end; the outcome goes to the Store. ``turn``: its place in line
        where its steps wait for a role (deployments/turns.py).

        Returning at once is what lets a stopping replica hand its jobs back: Serve calls
        ``__del__`` only once no request to the replica is ongoing."""
        await self._take(uuid, plan, turn)

    async def _take(self, uuid: str, plan: Plan, turn: Turn) -> None:
        if uuid in self._jobs:  # adopted here while its first hand-over was late (a Planner's restart)
            return
        if self._stopping.is_set():  # reached this replica as it began to stop
            await self._give_back([uuid], STORE_PATIENCE_S)
            return
        task = self._jobs[uuid] = asyncio.get_running_loop().create_task(self._run(uuid, plan, turn))
        task.add_done_callback(lambda _: self._forget(uuid))
        if self._renewing is None or self._renewing.done():
            self._renewing = asyncio.get_running_loop().create_task(self._renew_leases())

    def _forget(self, uuid: str) -> None:
        del self._jobs[uuid]
        self._started.discard(uuid)

    def __del__(self) -> Coroutine[Any, Any, None] | None:
        """Serve calls this when the replica stops, and awaits what it returns: the hand-back.
        (Not a coroutine function: the garbage collector calls it too, on an in-process Planner,
        and nothing would await it.)"""
        return self._stop() if getattr(self, "_me", None) is not None else None

    async def _stop(self) -> None:
        logger.warning(
            "stopping: handing back %s jobs waiting for a role; %s begun may finish for up to %.0f s",
            len(self._jobs) - len(self._started), len(self._started), self._finish_within_s,
        )  # fmt: skip
        await self.hand_back(self._finish_within_s, _app_deleted())

    async def hand_back(self, finish_within_s: float, deleted: Coroutine[Any, Any, None] | None = None) -> None:
        """Take no more jobs; give those still waiting for a role back to the queue at once (another
        Planner adopts them within seconds, in their turn); let the ones a role has begun finish for
        up to ``finish_within_s``, or until ``deleted`` returns (the whole application is being
        deleted: its roles stop too, no job can finish; they run again after the next start); give
        back what is left then (it runs again from its first step)."""
        self._stopping.set()
        if self._adopting is not None:  # its call to the Store may not return: the Store may be stopping too
            await _within(self._adopting, STORE_CALL_S)
        waiting = asyncio.ensure_future(
            self._give_back([uuid for uuid in self._jobs if uuid not in self._started], STORE_PATIENCE_S)
        )
        watch = asyncio.ensure_future(deleted) if deleted is not None else None
        if self._jobs and finish_within_s > 0:
            finished = asyncio.ensure_future(asyncio.wait(set(self._jobs.values())))
            await asyncio.wait({finished} | ({watch} if watch else set()), timeout=finish_within_s,
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            finished.cancel()
        app_deleted = watch is not None and watch.done() and not watch.cancelled()
        if watch is not None:
            watch.cancel()
        await self._give_back(list(self._jobs), 0.0 if app_deleted else STORE_PATIENCE_S)
        await waiting

    async def _give_back(self, uuids: list[str], patience_s: float) -> None:
        """Stop these jobs here (their roles stop at their next step) and queue them again; the
        Store is asked again for up to ``patience_s`` (it may be being replaced too)."""
        if not uuids:
            return
        tasks = [self._jobs[uuid] for uuid in uuids if uuid in self._jobs]
        for task in tasks:
            task.cancel()
        if tasks:  # their last progress writes end before the Store queues them again
            await asyncio.wait(tasks, timeout=STORE_CALL_S)
        deadline = time.monotonic() + patience_s
        while True:
            try:
                await asyncio.wait_for(self._store.hand_back(uuids), STORE_CALL_S)
                return
            except Exception:
                if time.monotonic() >= deadline:  # they run again when their leases run out
                    logger.warning("could not hand back %s invocations", len(uuids), exc_info=True)
                    return
            await asyncio.sleep(1.0)

    async def _adopt_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.adopt()
            except Exception:  # the Store restarting: the next round may reach it
                logger.warning("could not adopt invocations", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), ADOPT_INTERVAL_S)

    async def adopt(self) -> int:
        """Run again the invocations whose Planner was lost (it died, or the server stopped), from
        their stored plans; how many were taken."""
        uuids = await self._store.adopt(ADOPT_BATCH)
        for uuid in uuids:
            job = await asyncio.to_thread(load_job, self._storage, uuid)
            if job is None:
                await self._store.fail(uuid, UNSTORED)
                continue
            logger.info("invocation %s runs again: its planner was lost", uuid)
            await self._take(uuid, job.plan, job.turn)
        return len(uuids)

    async def _renew_leases(self) -> None:
        """Tell the Store every few seconds which jobs this replica still holds: should it die,
        theirs run out and the Store queues them again. The first round is at once: with it a round later,
        Base's autoscaling grew about 8 s later under bench/scheduling.py's load (not understood)."""
        while self._jobs:
            try:
                await self._store.renew(sorted(self._jobs))
            except Exception:  # the next round may reach it
                logger.warning("could not renew the leases of %s jobs", len(self._jobs), exc_info=True)
            await asyncio.sleep(RENEW_INTERVAL_S)

    async def _run(self, uuid: str, plan: Plan, turn: Turn) -> str:
        job = asyncio.ensure_future(self._execute(uuid, plan, turn))
        stopped = None
        try:
            # The first step is sent before the watch for a cancel: the job is waited for, the watch not.
            await asyncio.sleep(0)
            stopped = asyncio.ensure_future(self._stopped(uuid))
            await asyncio.wait({job, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not job.done():
                job.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await job
                logger.info("invocation %s stopped: it was cancelled or deleted", uuid)
                return "cancelled"
            return job.result()
        except APIError as error:
            await self._store.fail(uuid, error.detail, plan.to_dict())
        except StepFailed as failure:
            logger.error("invocation %s failed in %s", uuid, failure.where, exc_info=failure.__cause__)
            await self._store.fail(uuid, str(failure), plan.to_dict())
        except Exception:
            logger.exception("invocation %s failed", uuid)
            await self._store.fail(uuid, UNEXPECTED, plan.to_dict())
        finally:
            if stopped is not None:
                stopped.cancel()
            if not job.done():  # handed back (this task was cancelled): the job stops with it
                job.cancel()
                await asyncio.wait({job})
        return "error"

    async def _stopped(self, uuid: str) -> None:
        """Return once the invocation was cancelled or deleted (or ended), watched through restarts
        of the Store."""
        while True:
            try:
                if await self._store.stopped(uuid, WATCH_S):
                    return
            except Exception as error:  # the Store is being replaced: watch its successor
                logger.warning("invocation %s: cannot watch for a cancel (%s); trying again", uuid, error)
                await asyncio.sleep(1.0)

    async def _execute(self, uuid: str, plan: Plan, turn: Turn) -> str:
        unrecorded = [plan.to_dict()]  # goes with the first progress write (and with the last word)

        async def write(step: int, total: int, intermediates: list[str] | None) -> None:
            await self._store.progress(uuid, step, total, unrecorded[0] if unrecorded else None, intermediates)
            unrecorded.clear()

        job = _Job(uuid, turn, ProgressWriter(write))
        outputs: list[list[Image.Image | None]] = []
        done, remaining = 0, plan.expected_steps
        try:
            for index, step in enumerate(plan.steps):
                remaining -= step.expected_steps
                try:
                    images, steps = await self._run_step(step, await self._inputs(step, outputs), done, remaining, job)
                except (APIError, asyncio.CancelledError):
                    raise
                except Exception as error:
                    raise StepFailed(index, plan, error) from error
                outputs.append(images)
                done += steps
        finally:
            await job.writer.close()
            if job.shown or job.before:
                await asyncio.to_thread(self._remove, job.shown + job.before)
        names = await asyncio.to_thread(self._save, uuid, plan, outputs[-1])
        if await self._store.complete(uuid, names, done, plan.to_dict()):
            logger.info("invocation %s completed: %s images, %s steps", uuid, len(names), done)
            return "completed"
        for name in names:  # cancelled or deleted while the files were written
            if name != FLAGGED:
                await asyncio.to_thread(self._storage.remove, IMAGES, name)
        return "cancelled"

    async def _run_step(
        self, step: Step, inputs: list[Image.Image | None], done: int, remaining: int, job: _Job
    ) -> tuple[list[Image.Image | None], int]:
        """Stream one step through its role; returns its images and how many steps it took. A
        replica that dies under the step gets it once more on another (or its replacement)."""
        if isinstance(step, Composite):  # an image operation: here, no role, no model
            return await asyncio.to_thread(step.run, inputs), 0
        if any(image is None for image in inputs):
            # Outputs the safety checker withheld: an image step (upscale, background) after
            # the last denoising one passes them on withheld and runs on the rest.
            assert isinstance(step, Upscale | RemoveBackground), step
            kept = [index for index, image in enumerate(inputs) if image is not None]
            results: list[Image.Image | None] = [None] * len(inputs)
            if not kept:
                return results, step.expected_steps
            images, steps = await self._run_step(
                replace(step, inputs=tuple(step.inputs[index] for index in kept)),
                [inputs[index] for index in kept], done, remaining, job,
            )  # fmt: skip
            for index, image in zip(kept, images, strict=True):
                results[index] = image
            return results, steps
        try:
            return await self._stream_step(step, inputs, done, remaining, job)
        except RayActorError:
            logger.warning("the %s replica running a step died; running the step once more", step.role)
            return await self._stream_step(step, inputs, done, remaining, job)

    async def _stream_step(
        self, step: Step, inputs: list[Image.Image], done: int, remaining: int, job: _Job
    ) -> tuple[list[Image.Image], int]:
        writer = job.writer
        routing = {"multiplexed_model_id": step.model_id} if self._affinity else {}
        role = self._roles[step.role].options(stream=True, **routing)
        events = role.generate.remote(step, inputs, self._me, turn=job.turn)
        total = step.expected_steps
        rate = _Rate()
        ended = False  # the role's stream ends by itself after its outputs or its error
        try:
            async for event in events:
                if isinstance(event, Started):
                    self._started.add(job.uuid)
                    writer.update(done, done + total + remaining)
                elif isinstance(event, Progress):
                    total = event.total
                    rate.observe(event.step)
                    writer.update(done + event.step, done + total + remaining)
                elif isinstance(event, Intermediate):
                    names = await asyncio.to_thread(self._show, job, done + event.step, event.images)
                    writer.update(done + event.step, done + total + remaining, names)
                elif isinstance(event, Outputs):
                    if isinstance(step, DENOISE):  # an upscale's progress counts tiles
                        rate.record(step.role)
                    ended = True
                    return event.images, total
                elif isinstance(event, APIError):
                    ended = True
                    raise event
        finally:
            if not ended:  # a cancel (the role stops at its next step) or a broken stream
                events.cancel()
        raise RuntimeError(f"the {step.role} role ended its stream without outputs")

    @staticmethod
    async def _inputs(step: Step, outputs: list[list[Image.Image | None]]) -> list[Image.Image | None]:
        """The step's source images, prepared for its role (fitted on the canvas, masks made)."""

        def prepare() -> list[Image.Image]:
            images = [
                outputs[source.step][source.index] if isinstance(source, StepOutputs) else source.open()
                for source in step.sources
            ]
            return step.prepare(images)

        if not step.sources:  # text to image: nothing to decode, no thread hop on the way
            return []
        return await asyncio.to_thread(prepare)

    def _show(self, job: _Job, step: int, images: list[Image.Image]) -> list[str]:
        """Write the intermediate images of ``step`` in place of the ones shown before."""
        names = [intermediate_name(job.uuid, step, index) for index in range(len(images))]
        for name, image in zip(names, images, strict=True):
            write_png(self._storage, INTERMEDIATES, name, image, {"enfugue-serve": self._version})
        self._remove(job.before)
        job.before, job.shown = job.shown, names
        return names

    def _remove(self, intermediates: list[str]) -> None:
        for name in intermediates:
            self._storage.remove(INTERMEDIATES, name)

    def _save(self, uuid: str, plan: Plan, images: list[Image.Image | None]) -> list[str]:
        """Write the outputs; one the safety checker withheld (None) is listed, not written."""
        text = {"enfugue-serve": self._version, "plan": plan.to_dict()}
        names = []
        for index, image in enumerate(images):
            if image is None:
                names.append(FLAGGED)
                continue
            names.append(image_name(uuid, index))
            write_png(self._storage, IMAGES, names[-1], image, text)
        return names


async def _within(task: asyncio.Task[Any], seconds: float) -> None:
    """Wait for ``task`` up to ``seconds``, then cancel it."""
    await asyncio.wait({task}, timeout=seconds)
    task.cancel()


async def _app_deleted() -> None:
    """Return once this replica's whole application is being deleted; never while it is being
    replaced or scaled down (its status, read every second, is then DEPLOYING or RUNNING)."""
    app = serve.get_replica_context().app_name

    def deleting() -> bool:
        status = serve.status().applications.get(app)
        return status is None or status.status == "DELETING"

    while True:
        try:
            if await asyncio.to_thread(deleting):
                logger.warning("the application is being deleted: every job goes back to the queue")
                return
        except Exception:  # the controller is busy; the next read may answer
            logger.debug("could not read the application's status", exc_info=True)
        await asyncio.sleep(1.0)


def _own_actor() -> Any:
    """This replica's actor handle; None outside an actor (in-process tests)."""
    if not ray.is_initialized():
        return None
    context = ray.get_runtime_context()
    return context.current_actor if context.get_actor_id() is not None else None


class _Rate:
    """Steps per second of one step's run, from its progress events: the time from the first to the
    last (a model load before the first is not denoising)."""

    def __init__(self) -> None:
        self._first: tuple[int, float] | None = None
        self._last: tuple[int, float] | None = None

    def observe(self, step: int) -> None:
        self._last = (step, time.monotonic())
        self._first = self._first or self._last

    def record(self, role: str) -> None:
        if self._first is None or self._last is None:
            return
        (first, began), (last, ended) = self._first, self._last
        # The steps before the first event ran at the same pace (or it is the only one: unknown).
        seconds = (ended - began) * last / (last - first) if last > first else 0.0
        denoising_steps(role, last, seconds)


# What a user is told of a failure that is not their request's fault; the log has the details.
REPLICA_LOST = "the model server running it stopped before it finished; try again"
UNEXPECTED = "The invocation failed unexpectedly; the server's log has the details."
UNSTORED = "This invocation was interrupted, and its request was not stored to run it again; invoke it again."


class StepFailed(Exception):
    """A plan step failed for a reason that is not a domain error: the message says which step
    (its kind, role and the part of the request it comes from) in words a user can act on,
    without actor ids, addresses or tracebacks (those go to the log)."""

    def __init__(self, index: int, plan: Plan, error: Exception) -> None:
        step = plan.steps[index]
        origin = getattr(step, "origin", None)
        self.where = f"step {index + 1} of {len(plan.steps)} ({step.kind} on the {step.role} role" + (
            f", {origin.where})" if origin is not None and origin.where else ")"
        )
        if isinstance(error, RayActorError):
            reason = REPLICA_LOST
        elif isinstance(error, ValueError):  # a check of the step's values (the roles' last line)
            reason = f"its values were refused: {str(error)[:300]}"
        else:
            reason = "it failed unexpectedly; the server's log has the details"
        super().__init__(f"The invocation failed at {self.where}: {reason}.")
