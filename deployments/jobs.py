"""An admitted invocation's work, kept where every node reaches it: its plan, input images included,
and its place in line (deployments/turns.py).

Written by the ingress before the POST answers, read by whichever Planner runs the invocation
again after its first one was lost (died, or stopped with the server), removed by the Store when
the invocation ends. Pickled: the plan is the project's own frozen dataclasses, and the file is
in the server's own storage, trusted as its model files are (checkpoints are pickles too).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass

from deployments.plan import Plan
from deployments.turns import Turn
from storage.model_folders import missing
from storage.shared import JOBS, SharedStorage


@dataclass(frozen=True)
class Job:
    plan: Plan
    turn: Turn


def save_job(storage: SharedStorage, uuid: str, job: Job) -> None:
    storage.write(JOBS, uuid, pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))


def load_job(storage: SharedStorage, uuid: str) -> Job | None:
    """The job stored for ``uuid``; None when there is none (admitted before jobs were kept)."""
    try:
        data = storage.read(JOBS, uuid)
    except OSError as error:
        if missing(error):
            return None
        raise
    job = pickle.loads(data)  # noqa: S301 - the server's own file, see above
    return job if isinstance(job, Job) else None
