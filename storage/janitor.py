"""Files nobody will ask for again, and records that point at files that are gone.

Swept every few minutes by the Store: intermediate images older than a configurable age (the
Planner removes its own when a job ends; these are a dead Planner's), output images that no
invocation record names (a job whose record was deleted or never completed), half-written
files left by a crash, and completed records whose image files were removed by hand (their
names are dropped, so the status never lists a file that answers 404).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from storage.images import FLAGGED, IMAGE_NAME
from storage.metadata import Metadata
from storage.shared import IMAGES, INTERMEDIATES, SharedStorage

logger = logging.getLogger(__name__)

# A file younger than this may belong to a job writing it right now.
GRACE_S = 600.0


@dataclass
class Swept:
    intermediates: int = 0
    orphans: int = 0
    partial: int = 0
    records: int = 0


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
    if swept != Swept():
        logger.info("swept %s", swept)
    return swept
