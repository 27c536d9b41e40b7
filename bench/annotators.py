"""Each ControlNet annotator on this machine at 512x512: its load and one run, on random weights
in the real architectures (tests/tiny_annotators.py; the files are full size, so a run costs what
a run with the real files costs: the same layers, the same arithmetic).

The annotator runs on the role before denoising, once per step that asks for it: this is what a
depth (or pose, ...) ControlNet adds to a job. Device: CUDA when there is one, else the CPU.

Target (issue 21): report each figure (no target was set).

Run: .venv/bin/python -m bench.annotators --runs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from deployments.annotators import Annotator  # noqa: E402
from deployments.control import ANNOTATOR_FILES  # noqa: E402
from tests.tiny_annotators import write_annotators  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each annotator (the median is printed)")
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    image = Image.fromarray((np.random.default_rng(0).random((args.size, args.size, 3)) * 255).astype(np.uint8))
    with tempfile.TemporaryDirectory() as scratch:
        folder = write_annotators(Path(scratch))
        print(f"annotators at {args.size}x{args.size} on {device}, median of {args.runs} runs (ms):")
        for kind, names in ANNOTATOR_FILES.items():
            began = time.perf_counter()
            annotator = Annotator(kind, [folder / name for name in names], device)
            load_ms = (time.perf_counter() - began) * 1000
            annotator(image)  # a first run warms up (allocations, kernels)
            times = []
            for _ in range(args.runs):
                began = time.perf_counter()
                annotator(image)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times.append((time.perf_counter() - began) * 1000)
            print(f"  {kind:<7} load {load_ms:8.0f}   run {statistics.median(times):8.0f}")
    print("target: none set; reported (issue 21)")


if __name__ == "__main__":
    main()
