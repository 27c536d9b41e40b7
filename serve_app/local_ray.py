"""Starting a local Ray cluster, once more when its first start times out.

Ray gives a new node's raylet 30 s to register with the GCS (a constant in ray/_private/node.py,
not a setting) and raises "The current node timed out during startup" past it, leaving the
processes it started running. That happened once, in a CI run on a 2-core machine
(2026-12-06: every integration test errored at the session cluster's start). A second start,
in a fresh temporary folder, after the first one's processes are stopped, is what a person would
do; the first one's own logs are printed so that the cause is not lost with it.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil

logger = logging.getLogger(__name__)

TIMED_OUT = "timed out during startup"
# The end of each log that tells why a node did not come up.
LOG_NAMES = ("raylet.err", "raylet.out", "gcs_server.err", "gcs_server.out")
LOG_TAIL_CHARS = 2000


def start_local_ray(temp_dir: Path | None = None, **init: Any) -> None:
    """``ray.init(**init)`` starting a local cluster whose files go under ``temp_dir`` (a new
    temporary folder when None); a start that times out is reported, cleaned up and tried once more."""
    import ray

    for attempt in (1, 2):
        folder = Path(tempfile.mkdtemp(prefix="ray-", dir=temp_dir))
        try:
            ray.init(_temp_dir=str(folder), **init)
            return
        except Exception as error:
            if TIMED_OUT not in str(error) or attempt == 2:
                raise
            sys.stderr.write(f"The local Ray cluster did not start ({error}); its logs:\n{node_logs(folder)}\n")
            stopped = stop_processes_under(folder)
            sys.stderr.write(f"Stopped its {stopped} processes; starting it once more.\n")


def node_logs(folder: Path) -> str:
    """The end of each raylet and GCS log of the sessions under ``folder``."""
    parts = []
    for path in sorted(folder.glob("session_*/logs/*")):
        if path.name in LOG_NAMES:
            text = path.read_text(errors="replace")
            parts.append(f"--- {path.name} ---\n{text[-LOG_TAIL_CHARS:]}")
    return "\n".join(parts) or "(none written)"


def stop_processes_under(folder: Path) -> int:
    """Kill the processes whose command line names ``folder`` (a failed start's GCS, raylet and
    agents); how many there were."""
    mark = str(folder)
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(mark in part for part in process.info["cmdline"] or ()):
            found.append(process)
    for process in found:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(found, timeout=10)
    return len(found)
