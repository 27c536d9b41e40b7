"""A base + refiner (SDXL) job through the API against the same two diffusers calls made directly.

The server runs the base step on the Base deployment and the refiner's image-to-image pass on
the Refiner deployment (each its own replica, one torch thread each); the direct run calls the
same two pipelines one after the other in this process with one torch thread. Tiny SDXL-shaped
models built in code (no weights to download) at 256x256, 20 steps, refiner_strength 0.3: about
1.5 s of work on this machine, the length of a real SDXL job on a GPU. N interleaved runs;
prints the medians and the ratio.

Target (issue 9): report the ratio; the serving overhead target is issue 6's (<= 1.05).

Run: .venv/bin/python bench/refiner.py --runs 8
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import httpx  # noqa: E402

from bench.common import median_ms, running_server  # noqa: E402
from bench.overhead import follow  # noqa: E402

SIZE, STEPS, STRENGTH, SEED = 256, 20, 0.3, 1
PROMPT = "a lighthouse at dusk"
TARGET_RATIO = 1.05


def write_models(data: Path):  # noqa: ANN201 - torch types stay out of the signature
    """The tiny SDXL base and refiner, in the checkpoint folder and in this process."""
    from storage.files import DataPaths
    from tests.tiny_models import tiny_sdxl_pipeline, tiny_sdxl_refiner_pipeline, write_diffusers_folder

    folder = DataPaths(data).ensure().models("checkpoint")
    base, refiner = tiny_sdxl_pipeline(), tiny_sdxl_refiner_pipeline()
    write_diffusers_folder(base, folder / "xl-base")
    write_diffusers_folder(refiner, folder / "xl-refiner")
    for pipe in (base, refiner):
        pipe.set_progress_bar_config(disable=True)
    return base, refiner


def direct_seconds(base, refiner) -> float:  # noqa: ANN001
    import torch

    started = time.perf_counter()
    with torch.inference_mode():
        images = base(
            PROMPT, width=SIZE, height=SIZE, num_inference_steps=STEPS, guidance_scale=7.5,
            generator=torch.Generator("cpu").manual_seed(SEED),
        ).images  # fmt: skip
        refiner(
            PROMPT, image=images, strength=STRENGTH, num_inference_steps=STEPS, guidance_scale=5.0,
            aesthetic_score=6.0, negative_aesthetic_score=2.5, generator=torch.Generator("cpu").manual_seed(SEED),
        )  # fmt: skip
    return time.perf_counter() - started


def served_seconds(client: httpx.Client) -> float:
    job = {
        "model": "xl-base", "refiner": "xl-refiner", "prompt": PROMPT, "width": SIZE, "height": SIZE,
        "num_inference_steps": STEPS, "refiner_strength": STRENGTH, "seed": SEED,
        "chunking_size": 0,  # the tiny models are 64 px: the canvas at once, as the direct calls take it
    }  # fmt: skip
    started = time.perf_counter()
    uuid = client.post("/api/invoke", json=job).json()["data"]["uuid"]
    status = follow(client, uuid)
    elapsed = time.perf_counter() - started
    if status["status"] != "completed":
        raise RuntimeError(f"job ended {status['status']}: {status.get('message')}")
    client.delete(f"/api/invocation/{uuid}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    direct, served = [], []
    with tempfile.TemporaryDirectory() as data:
        base, refiner = write_models(Path(data))
        with running_server(Path(data)) as url, httpx.Client(base_url=url, timeout=300) as client:
            direct_seconds(base, refiner), served_seconds(client)  # warm-up: loads, first calls
            for run in range(args.runs):
                if run % 2:  # which goes first alternates, so neither gains from the order
                    direct.append(direct_seconds(base, refiner))
                served.append(served_seconds(client))
                if not run % 2:
                    direct.append(direct_seconds(base, refiner))
    overhead = median_ms([s - d for s, d in zip(served, direct, strict=True)])
    ratio = (median_ms(direct) + overhead) / median_ms(direct)
    print(f"base + refiner, SDXL-shaped tiny models, {SIZE}x{SIZE}/{STEPS} steps, refiner_strength {STRENGTH}")
    print(f"  direct (two diffusers calls): {median_ms(direct):8.1f} ms")
    print(f"  served (Base + Refiner):      {median_ms(served):8.1f} ms   overhead {overhead:.1f} ms")
    verdict = "meets" if ratio <= TARGET_RATIO else "misses"
    print(f"  ratio {ratio:.3f}; target <= {TARGET_RATIO} (issue 6's serving overhead): {verdict} it")


if __name__ == "__main__":
    main()
