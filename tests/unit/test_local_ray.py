"""A local Ray start that times out is reported with its node's logs, its processes are stopped,
and it is started once more; any other failure is raised as it is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from serve_app import local_ray

TIMED_OUT = "The current node timed out during startup. This could happen because some of the raylet failed"


def test_a_start_that_times_out_is_explained_cleaned_up_and_tried_once_more(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import ray

    starts: list[str] = []
    left: list[subprocess.Popen[bytes]] = []

    def init(_temp_dir: str, **kwargs: Any) -> None:
        starts.append(_temp_dir)
        assert kwargs == {"num_cpus": 3}
        if len(starts) == 1:  # as Ray leaves it: a log written, a process still running
            logs = Path(_temp_dir) / "session_2026-12-06_00-00-00_000000_1" / "logs"
            logs.mkdir(parents=True)
            (logs / "raylet.out").write_text("a line that says why the raylet was slow")
            (logs / "python-core-worker.log").write_text("not a node log")
            left.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", _temp_dir]))
            raise Exception(TIMED_OUT)

    monkeypatch.setattr(ray, "init", init)
    local_ray.start_local_ray(tmp_path, num_cpus=3)

    assert len(starts) == 2 and starts[0] != starts[1]
    assert all(Path(start).parent == tmp_path for start in starts)
    assert left[0].poll() is not None, "the first start's process is still running"
    printed = capsys.readouterr().err
    assert "a line that says why the raylet was slow" in printed
    assert "not a node log" not in printed
    assert "Stopped its 1 processes; starting it once more." in printed


def test_a_second_timeout_and_any_other_failure_are_raised(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import ray

    starts: list[str] = []

    def timing_out(_temp_dir: str, **_: Any) -> None:
        starts.append(_temp_dir)
        raise Exception(TIMED_OUT)

    monkeypatch.setattr(ray, "init", timing_out)
    with pytest.raises(Exception, match="timed out during startup"):
        local_ray.start_local_ray(tmp_path)
    assert len(starts) == 2

    def refusing(_temp_dir: str, **_: Any) -> None:
        starts.append(_temp_dir)
        raise ValueError("System config parameters can only be set on the head node.")

    monkeypatch.setattr(ray, "init", refusing)
    with pytest.raises(ValueError, match="head node"):
        local_ray.start_local_ray(tmp_path)
    assert len(starts) == 3
