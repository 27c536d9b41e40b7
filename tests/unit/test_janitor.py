"""Old intermediates, images without a record, half-written files and records of missing files are swept."""

from __future__ import annotations

import os
import time
from pathlib import Path

from storage.files import DataPaths
from storage.images import FLAGGED
from storage.invocations import Invocations
from storage.janitor import GRACE_S, sweep
from storage.metadata import Metadata
from storage.shared import SharedStorage


def aged(path: Path, seconds: float) -> Path:
    path.write_bytes(b"png")
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_a_sweep_removes_what_nobody_will_ask_for(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path).ensure()
    db = Metadata.open(paths.database)
    storage = SharedStorage.from_url(tmp_path)
    invocations = Invocations(db, storage)
    kept = invocations.admit(1, {}, limit=9)["uuid"]
    gone = invocations.admit(1, {}, limit=9)["uuid"]
    kept_image = aged(paths.images / f"{kept}_0.png", GRACE_S * 2)
    # A withheld output has no file, and stays listed.
    invocations.complete(kept, [kept_image.name, FLAGGED], 1)
    invocations.complete(gone, [f"{gone}_0.png"], 1)  # its file was removed by hand
    orphan = aged(paths.images / f"{'a' * 32}_0.png", GRACE_S * 2)
    fresh_orphan = aged(paths.images / f"{'b' * 32}_0.png", 5)  # may be a job writing it now
    partial = aged(paths.images / f"{'c' * 32}_0.partial", GRACE_S * 2)
    old_step = aged(paths.intermediates / f"{'d' * 32}_5_0.png", 7200)
    new_step = aged(paths.intermediates / f"{'d' * 32}_10_0.png", 60)

    swept = sweep(storage, db, intermediate_age_s=3600)

    assert (swept.intermediates, swept.orphans, swept.partial, swept.records) == (1, 1, 1, 1)
    assert kept_image.exists() and fresh_orphan.exists() and new_step.exists()
    assert not orphan.exists() and not partial.exists() and not old_step.exists()
    assert db.invocation(gone)["images"] == [] and db.invocation(gone)["outputs"] == 0
    assert db.invocation(kept)["images"] == [kept_image.name, FLAGGED]
    db.close()
