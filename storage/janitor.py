"""Files nobody will ask for again, and records that point at files that are gone.

Swept every few minutes by the Store: intermediate images older than a configurable age (the
Planner removes its own when a job ends; these are a dead Planner's), output images that no
invocation record names (a job whose record was deleted or never completed), half-written
files left by a crash, completed records whose image files were removed by hand (their names
are dropped, so the status never lists a file that answers 404), and input images no stored job
names any more (deployments/jobs.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from storage.images import FLAGGED, IMAGE_NAME
from storage.job_files import unpack
from storage.metadata import Metadata
from storage.model_folders import missing
from storage.shared import IMAGES, INPUTS, INTERMEDIATES, JOBS, SharedStorage

logger = logging.getLogger(__name__)

# A file younger than this may belong to a job writing it right now.
GRACE_S = 600.0


@dataclass
class Swept:
    intermediates: int = 0
    orphans: int = 0
    partial: int = 0
    records: int = 0
    inputs: int = 0


def sweep(storage: SharedStorage, db: Metadata, intermediate_age_s: float, now: float | None = None) -> Swept:
    now = time.time() if now is None else now
    swept = Swept()
    for entry in storage.files(INTERMEDIATES):
        if now - entry.mtime > intermediate_age_s:
            storage.remove(INTERMEDIATES, entry.name)
            swept.intermediates += 1
    # The records first, then the listing: a file written before its record completed is listed.
    completed = db.completed_images()
    files = storage.files(IMAGES)
    named = {entry.name: IMAGE_NAME.match(entry.name) for entry in files if now - entry.mtime > GRACE_S}
    known = db.known_invocations({match["uuid"] for match in named.values() if match})
    for name, match in named.items():
        if match is None:
            if name.endswith(".partial"):
                storage.remove(IMAGES, name)
                swept.partial += 1
        elif match["uuid"] not in known:
            storage.remove(IMAGES, name)
            swept.orphans += 1
    listed = {entry.name for entry in files}
    for uuid, names in completed:
        present = [name for name in names if name == FLAGGED or name in listed]
        if present != names:
            db.update_invocation(uuid, images=present, outputs=len(present))
            swept.records += 1
    swept.inputs = _sweep_inputs(storage, now)
    if swept != Swept():
        logger.info("swept %s", swept)
    return swept


def _sweep_inputs(storage: SharedStorage, now: float) -> int:
    """Remove the input images no job names. The jobs are read first, then the inputs listed: a
    job saved meanwhile wrote its inputs again, so they are young, and kept."""
    named: set[str] = set()
    for entry in storage.files(JOBS):
        if entry.name.startswith("."):  # a job being written
            continue
        try:
            named |= unpack(storage.read(JOBS, entry.name))[0]
        except OSError as error:  # it ended meanwhile
            if not missing(error):
                raise
    removed = 0
    for entry in storage.files(INPUTS):
        if entry.name not in named and now - entry.mtime > GRACE_S:
            storage.remove(INPUTS, entry.name)
            removed += 1
    return removed
