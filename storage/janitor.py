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
from pathlib import Path

from storage.files import DataPaths
from storage.images import FLAGGED, IMAGE_NAME
from storage.metadata import Metadata

logger = logging.getLogger(__name__)

# A file younger than this may belong to a job writing it right now.
GRACE_S = 600.0


@dataclass
class Swept:
    intermediates: int = 0
    orphans: int = 0
    partial: int = 0
    records: int = 0


def sweep(paths: DataPaths, db: Metadata, intermediate_age_s: float, now: float | None = None) -> Swept:
    now = time.time() if now is None else now
    swept = Swept()
    for path in _files(paths.intermediates):
        if now - path.stat().st_mtime > intermediate_age_s:
            path.unlink(missing_ok=True)
            swept.intermediates += 1
    images = [path for path in _files(paths.images) if now - path.stat().st_mtime > GRACE_S]
    named = {path: IMAGE_NAME.match(path.name) for path in images}
    known = db.known_invocations({match["uuid"] for match in named.values() if match})
    for path, match in named.items():
        if match is None:
            if path.suffix == ".partial":
                path.unlink(missing_ok=True)
                swept.partial += 1
        elif match["uuid"] not in known:
            path.unlink(missing_ok=True)
            swept.orphans += 1
    for uuid, names in db.completed_images():
        present = [name for name in names if name == FLAGGED or (paths.images / name).is_file()]
        if present != names:
            db.update_invocation(uuid, images=present, outputs=len(present))
            swept.records += 1
    if swept != Swept():
        logger.info("swept %s", swept)
    return swept


def _files(folder: Path) -> list[Path]:
    return [path for path in folder.iterdir() if path.is_file()] if folder.is_dir() else []
