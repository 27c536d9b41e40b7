"""A batch submitted as a Ray job, as the README shows it: its results land where the submitter reads.

Ray runs the job in its own copy of the working directory, on whichever node it picks, and
deletes that copy later; ``--out`` names a place outside it (here a path this machine shares
with the job, on a cluster a shared mount or an fsspec URL).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.integration

LINES = [{"prompt": f"line {n}", "width": 64, "height": 64, "num_inference_steps": 2, "seed": n} for n in (1, 2, 3)]


def test_a_batch_submitted_as_a_ray_job_writes_where_the_submitter_reads(
    deployed: tuple[str, Path], dashboard_port: int, tmp_path: Path
) -> None:
    url, _ = deployed
    work = tmp_path / "work"
    work.mkdir()
    (work / "prompts.jsonl").write_text("".join(json.dumps(line) + "\n" for line in LINES))
    results = tmp_path / "results"
    bin_folder = Path(sys.executable).parent  # where enfugue-serve is installed, as on a cluster's nodes
    runtime_env = {"env_vars": {"PATH": f"{bin_folder}{os.pathsep}{os.environ.get('PATH', '')}"}}
    submitted = subprocess.run(
        [
            str(bin_folder / "ray"), "job", "submit", "--address", f"http://127.0.0.1:{dashboard_port}",
            "--working-dir", str(work), "--runtime-env-json", json.dumps(runtime_env), "--",
            "enfugue-serve", "batch", "prompts.jsonl", "--out", str(results), "--url", url,
        ],
        capture_output=True, text=True, timeout=300, env={**os.environ, "RAY_ADDRESS": ""},
    )  # fmt: skip
    output = submitted.stdout + submitted.stderr
    assert submitted.returncode == 0 and "succeeded" in output, output
    assert "batch: 3 lines, 3 completed" in output

    recorded = (json.loads(line) for line in (results / "results.jsonl").read_text().splitlines())
    records = sorted(recorded, key=lambda record: record["line"])
    assert [(record["line"], record["status"]) for record in records] == [(n, "completed") for n in (1, 2, 3)]
    for record in records:
        (name,) = record["images"]
        with Image.open(results / name) as image:
            assert image.size == (64, 64)
    assert not list(work.glob("*.png")), "nothing is written into the submitted working directory"
