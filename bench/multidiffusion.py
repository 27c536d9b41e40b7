"""Chunked denoising: our batched windows against diffusers' panorama pipeline, window by window.

One chunked job, a 2:1 canvas in square windows moved by an eighth of a window (diffusers'
panorama geometry: 1024x512 in 512 px windows every 64 px, nine windows), run N interleaved
times by (a) ``deployments.multidiffusion.chunked_denoise`` with ``--batch-size`` windows per
UNet call and (b) ``StableDiffusionPanoramaPipeline`` with ``view_batch_size=1`` (its default:
one window per UNet call, one scheduler state per window), built from the same components, with
its views set to the same windows. Both use DDIM, for which the two are the same computation
with blur 0 (a DDIM step is affine in the noise prediction): the bench checks the images agree.
The model is the demo checkpoint's (tiny, random, built in code); on this CPU machine the
canvas is scaled down (``--window``, default 256: 512x256 canvas, 32 px stride).

Target: chunked at least 1.5x faster than the panorama pipeline (median times).

Run: .venv/bin/python bench/multidiffusion.py [--runs 5] [--steps 10] [--window 256] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers import StableDiffusionPanoramaPipeline  # noqa: E402
from diffusers.utils import logging as diffusers_logging  # noqa: E402

from bench.common import median_ms  # noqa: E402
from deployments.demo import tiny_sd15_pipeline  # noqa: E402
from deployments.multidiffusion import chunked_denoise  # noqa: E402
from deployments.pipelines import generators, make_scheduler  # noqa: E402

TARGET_RATIO = 1.5
PROMPT = "a lighthouse on a cliff at dawn"
GUIDANCE = 7.5


class Panorama(StableDiffusionPanoramaPipeline):
    """diffusers' panorama pipeline with its views' window and stride (fixed at 64 and 8 latents
    there) set, so it denoises the windows ours does."""

    window_latents = 64
    stride_latents = 8

    def get_views(self, panorama_height, panorama_width, window_size=64, stride=8, circular_padding=False):  # noqa: ANN001, ANN201
        return super().get_views(
            panorama_height, panorama_width, self.window_latents, self.stride_latents, circular_padding
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--window", type=int, default=256, help="window px; the canvas is 2x1 windows")
    parser.add_argument("--batch-size", type=int, default=4, help="windows per UNet call in ours")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    diffusers_logging.set_verbosity_error()  # the panorama pipeline's deprecation notice

    window, stride = args.window, args.window // 8
    width, height = 2 * window, window
    base = tiny_sd15_pipeline()
    base.set_progress_bar_config(disable=True)
    config = {**base.scheduler.config, "_class_name": type(base.scheduler).__name__}
    panorama = Panorama(**base.components)
    panorama.window_latents, panorama.stride_latents = window // 8, stride // 8
    panorama.set_progress_bar_config(disable=True)
    views = len(panorama.get_views(height, width))

    def ours(batch_size: int) -> tuple[float, np.ndarray]:
        started = time.perf_counter()
        (image,) = chunked_denoise(
            base, prompt=PROMPT, negative_prompt=None, width=width, height=height, window=window, stride=stride,
            blur=0, num_inference_steps=args.steps, guidance_scale=GUIDANCE, generator=generators((1,)),
            scheduler=make_scheduler(config, "ddim", 1), batch_size=batch_size,
        )  # fmt: skip
        return time.perf_counter() - started, np.asarray(image, dtype=np.int16)

    def theirs() -> tuple[float, np.ndarray]:
        started = time.perf_counter()
        panorama.scheduler = make_scheduler(config, "ddim", 1)
        (image,) = panorama(
            PROMPT, width=width, height=height, num_inference_steps=args.steps, guidance_scale=GUIDANCE,
            generator=generators((1,)), view_batch_size=1,
        ).images  # fmt: skip
        return time.perf_counter() - started, np.asarray(image, dtype=np.int16)

    jobs = {
        f"ours, {args.batch_size} windows a batch": lambda: ours(args.batch_size),
        f"ours, all {views} windows a batch": lambda: ours(views),
        "ours, 1 window a batch": lambda: ours(1),
        "panorama, view_batch_size=1": theirs,
    }
    images = {name: job()[1] for name, job in jobs.items()}  # warm-up, and the images to compare
    reference = images["panorama, view_batch_size=1"]
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for run in range(args.runs):
        # Each run in another order, so that none gains from where it stands (the machine's speed drifts).
        names = list(jobs)[run % len(jobs) :] + list(jobs)[: run % len(jobs)]
        for name in names:
            times[name].append(jobs[name]()[0])

    started = time.perf_counter()
    with torch.inference_mode():
        base.vae.decode(torch.zeros(1, 4, height // 8, width // 8))
    decode_ms = (time.perf_counter() - started) * 1000

    print(
        f"{width}x{height} canvas, {window} px windows every {stride} px ({views} windows), {args.steps} DDIM steps, "
        f"guidance {GUIDANCE}, demo model, {args.threads} torch threads; medians of {args.runs} interleaved runs"
    )
    panorama_ms = median_ms(times["panorama, view_batch_size=1"])
    for name, samples in times.items():
        difference = int(np.abs(images[name] - reference).max())
        print(
            f"  {name:<34}{median_ms(samples):9.0f} ms  x{panorama_ms / median_ms(samples):.2f} vs panorama"
            f"  (image: max pixel difference {difference} from panorama's)"
        )
    print(f"  of each: one VAE decode of the canvas, the same in all, ~{decode_ms:.0f} ms")
    ratio = panorama_ms / median_ms(times[f"ours, {args.batch_size} windows a batch"])
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"
    print(
        f"  batch {args.batch_size}: x{ratio:.2f} faster than panorama, target >= {TARGET_RATIO}: {verdict} the target"
    )


if __name__ == "__main__":
    main()
