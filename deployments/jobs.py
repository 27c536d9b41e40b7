"""An admitted invocation's work, kept where every node reaches it: its plan, and its place in line
(deployments/turns.py), in ``jobs/<uuid>``; its input images and masks in ``inputs/``, each stored
once under the SHA-256 of its bytes (a batch of 200 jobs from one photo keeps one copy).

Written by the ingress before the POST answers, read by whichever Planner runs the invocation
again after its first one was lost (died, or stopped with the server), removed by the Store when
the invocation ends; inputs no job names any more are swept by the Store's janitor
(storage/janitor.py). Pickled: the plan is the project's own frozen dataclasses, and the file is
in the server's own storage, trusted as its model files are (checkpoints are pickles too).
"""

from __future__ import annotations

import hashlib
import io
import pickle
from dataclasses import dataclass
from typing import Any

from deployments.plan import Plan
from deployments.request import InputImage
from deployments.turns import Turn
from storage.job_files import pack, unpack
from storage.model_folders import missing
from storage.shared import INPUTS, JOBS, SharedStorage


@dataclass(frozen=True)
class Job:
    plan: Plan
    turn: Turn


def save_job(storage: SharedStorage, uuid: str, job: Job) -> None:
    """Its input images first (each written again, so that its time says it is in use: see
    storage/janitor.py), then the job that names them."""
    buffer = io.BytesIO()
    pickler = _InputsOut(buffer, storage)
    pickler.dump(job)
    storage.write(JOBS, uuid, pack(pickler.names, buffer.getvalue()))


def load_job(storage: SharedStorage, uuid: str) -> Job | None:
    """The job stored for ``uuid``; None when there is none (admitted before jobs were kept, or
    an input it names is gone)."""
    try:
        _, data = unpack(storage.read(JOBS, uuid))
        job = _InputsIn(io.BytesIO(data), storage).load()  # the server's own file, see above
    except OSError as error:
        if missing(error):
            return None
        raise
    return job if isinstance(job, Job) else None


def input_name(image: InputImage) -> str:
    return hashlib.sha256(image.data).hexdigest()


class _InputsOut(pickle.Pickler):
    """Pickles a job with each input image written to ``inputs/`` and named in its place."""

    def __init__(self, file: io.BytesIO, storage: SharedStorage) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._storage = storage
        self.names: set[str] = set()

    def persistent_id(self, obj: Any) -> Any:
        if not isinstance(obj, InputImage):
            return None
        name = input_name(obj)
        if name not in self.names:
            self._storage.write(INPUTS, name, obj.data)
            self.names.add(name)
        return (name, obj.width, obj.height, obj.transparent)


class _InputsIn(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, storage: SharedStorage) -> None:
        super().__init__(file)
        self._storage = storage

    def persistent_load(self, pid: Any) -> InputImage:
        name, width, height, transparent = pid
        return InputImage(self._storage.read(INPUTS, name), width, height, transparent)
