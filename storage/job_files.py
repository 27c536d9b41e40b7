"""The layout of a stored job file (deployments/jobs.py writes and reads it): one line naming the
input files it uses (in ``inputs/``), then its pickled job. The Store's janitor reads the line
alone, to keep every input a job still names, without unpickling (or importing) what a job is."""

from __future__ import annotations

import json

MAGIC = b"enfugue-job 1 "


def pack(inputs: set[str], job: bytes) -> bytes:
    return MAGIC + json.dumps(sorted(inputs)).encode() + b"\n" + job


def unpack(data: bytes) -> tuple[set[str], bytes]:
    """The inputs a job file names and its pickled job (a file from before inputs were kept apart
    is a bare pickle: it names none)."""
    if not data.startswith(MAGIC):
        return set(), data
    line, _, job = data.partition(b"\n")
    return set(json.loads(line[len(MAGIC) :])), job
