"""Stored jobs: the plan in ``jobs/``, each input image once in ``inputs/`` under the hash of its
bytes, swept when no job names it any more."""

from __future__ import annotations

import io
import os
import pickle
import time
from pathlib import Path

from PIL import Image

from deployments.jobs import Job, input_name, load_job, save_job
from deployments.plan import make_plan
from deployments.request import Checkpoint, GenerationRequest, InputImage
from deployments.turns import Turn
from storage.files import DataPaths
from storage.janitor import GRACE_S, sweep
from storage.metadata import Metadata
from storage.shared import INPUTS, JOBS, SharedStorage
from tests.images import png_bytes

DEMO = Checkpoint(name="demo", size=512)


def _job(photo: InputImage, mask: InputImage | None = None, admitted: int = 1) -> Job:
    request = GenerationRequest(DEMO, image=photo, mask=mask, strength=0.5, num_inference_steps=4)
    return Job(make_plan(request, random_seed=7), Turn(owner=1, admitted=admitted))


def _solid(colour: str, width: int, height: int) -> InputImage:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return InputImage(buffer.getvalue(), width, height)


def _aged(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_job_keeps_each_input_once_and_loads_as_it_was_saved(tmp_path: Path) -> None:
    storage = SharedStorage.from_url(tmp_path).ensure()
    photo = InputImage(png_bytes(64, 48), 64, 48)
    mask = _solid("white", 64, 48)
    jobs = {f"{index:032x}": _job(photo, mask, admitted=index) for index in range(3)}
    for uuid, job in jobs.items():
        save_job(storage, uuid, job)

    # Three jobs from one photo and one mask: two input files, named by their bytes' hash.
    assert sorted(entry.name for entry in storage.files(INPUTS)) == sorted({input_name(photo), input_name(mask)})
    for uuid, job in jobs.items():
        assert photo.data not in storage.read(JOBS, uuid)
        loaded = load_job(storage, uuid)
        assert loaded == job and loaded.plan.steps[0].source.open().size == (64, 48)


def test_a_job_whose_input_is_gone_cannot_be_loaded_and_an_old_bare_pickle_still_can(tmp_path: Path) -> None:
    storage = SharedStorage.from_url(tmp_path).ensure()
    photo = InputImage(png_bytes(32, 32), 32, 32)
    save_job(storage, "a" * 32, _job(photo))
    storage.remove(INPUTS, input_name(photo))
    assert load_job(storage, "a" * 32) is None
    # Stored before inputs were kept apart: its images inside the pickle.
    storage.write(JOBS, "b" * 32, pickle.dumps(_job(photo)))
    assert load_job(storage, "b" * 32) == _job(photo)


def test_the_sweep_removes_old_inputs_no_job_names(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path).ensure()
    db = Metadata.open(paths.database)
    storage = SharedStorage.from_url(tmp_path).ensure()
    named, ended, fresh = (_solid(colour, 16, 16) for colour in ("red", "green", "blue"))
    save_job(storage, "a" * 32, _job(named))
    save_job(storage, "b" * 32, _job(ended))
    save_job(storage, "c" * 32, _job(fresh))
    storage.remove(JOBS, "b" * 32)  # its invocation ended
    storage.remove(JOBS, "c" * 32)
    inputs = Path(storage.folder(INPUTS))
    for image in (named, ended):  # saved long ago; the one still named is kept all the same
        _aged(inputs / input_name(image), GRACE_S * 2)

    assert sweep(storage, db, intermediate_age_s=3600).inputs == 1
    # The fresh one may belong to a job being saved right now.
    assert sorted(entry.name for entry in storage.files(INPUTS)) == sorted([input_name(named), input_name(fresh)])
    assert load_job(storage, "a" * 32) == _job(named)
    db.close()
