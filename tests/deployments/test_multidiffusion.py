"""Chunked (MultiDiffusion) denoising on tiny real pipelines: a 64 px model on 128x64 canvases."""

from __future__ import annotations

from typing import Any

import diffusers
import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline, StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
from PIL import Image

from deployments.multidiffusion import chunked_denoise
from deployments.pipelines import generators, make_scheduler
from tests.images import gradient
from tests.tiny_models import tiny_sd15_pipeline, tiny_sdxl_pipeline

MODEL = 64  # the tiny UNets' sample size (8 latents) in pixels
CANVAS = {"width": 2 * MODEL, "height": MODEL}


@pytest.fixture(scope="module")
def sd15() -> StableDiffusionPipeline:
    pipeline = tiny_sd15_pipeline()
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def chunked(pipeline: DiffusionPipeline, seeds: tuple[int, ...] = (1,), **options: Any) -> list[Image.Image]:
    arguments = {
        "prompt": "a lighthouse", "negative_prompt": "", **CANVAS, "window": MODEL, "stride": MODEL // 2,
        "blur": 16, "num_inference_steps": 4, "guidance_scale": 7.5, "generator": generators(seeds), **options,
    }  # fmt: skip
    return chunked_denoise(pipeline, **arguments)


def ddim(pipeline: DiffusionPipeline) -> Any:
    """A scheduler with one timestep per step (PNDM, the tiny pipelines' own, adds one)."""
    return make_scheduler(pipeline.scheduler.config, "ddim", 1)


def pixels(images: list[Image.Image]) -> list[np.ndarray]:
    return [np.asarray(image, dtype=np.int16) for image in images]


def test_one_image_per_generator_at_the_canvas_size(sd15: StableDiffusionPipeline) -> None:
    images = chunked(sd15, seeds=(1, 2))
    assert [image.size for image in images] == [(128, 64)] * 2
    first, second = pixels(images)
    assert np.abs(first - second).mean() > 1  # each its own noise


def test_the_same_seed_gives_the_same_pixels(sd15: StableDiffusionPipeline) -> None:
    (first,), (again,) = pixels(chunked(sd15)), pixels(chunked(sd15))
    assert np.array_equal(first, again)
    # And the image of a seed does not depend on the other seeds in the run (but for rounding:
    # the UNet sees other batches).
    assert np.abs(first - pixels(chunked(sd15, seeds=(1, 2)))[0]).max() <= 1


def test_the_batch_size_does_not_change_the_image(sd15: StableDiffusionPipeline) -> None:
    # 2 images x 3 windows: batches of 1, of 4 (4 + 2) and all 6 at once.
    one = pixels(chunked(sd15, seeds=(1, 2), batch_size=1))
    for size in (4, 6):
        for image, alone in zip(pixels(chunked(sd15, seeds=(1, 2), batch_size=size)), one, strict=True):
            assert np.abs(image - alone).max() <= 1


@pytest.mark.parametrize("build", [tiny_sd15_pipeline, tiny_sdxl_pipeline])
@pytest.mark.parametrize("scheduler", [None, "ddim", "eads", "dpmsm"])
def test_a_canvas_of_one_window_is_what_the_pipeline_makes(build: Any, scheduler: str | None) -> None:
    """One window and one blended step per step: exactly diffusers' own denoising loop."""
    pipeline = build()
    pipeline.set_progress_bar_config(disable=True)
    fresh = (lambda: make_scheduler(pipeline.scheduler.config, scheduler, 1)) if scheduler else lambda: None
    ours = chunked(pipeline, seeds=(1, 2), width=MODEL, scheduler=fresh())
    pipeline.scheduler = fresh() or pipeline.scheduler
    theirs = pipeline(
        "a lighthouse", negative_prompt="", width=MODEL, height=MODEL, num_inference_steps=4, guidance_scale=7.5,
        generator=generators((1, 2)), num_images_per_prompt=2,
    ).images  # fmt: skip
    for mine, expected in zip(pixels(ours), pixels(theirs), strict=True):
        assert np.abs(mine - expected).max() <= 1


def test_image_to_image_of_one_window_is_what_the_img2img_pipeline_makes(sd15: StableDiffusionPipeline) -> None:
    source = gradient(MODEL, MODEL)
    (ours,) = chunked(sd15, width=MODEL, image=source, strength=0.5)
    img2img = StableDiffusionImg2ImgPipeline.from_pipe(sd15)
    (theirs,) = img2img(
        "a lighthouse", negative_prompt="", image=source, strength=0.5, num_inference_steps=4, guidance_scale=7.5,
        generator=generators((1,)),
    ).images  # fmt: skip
    assert np.abs(pixels([ours])[0] - pixels([theirs])[0]).max() <= 1


def test_image_to_image_runs_the_strength_share_of_the_steps(sd15: StableDiffusionPipeline) -> None:
    source = gradient(*CANVAS.values())
    steps: list[tuple[int, int]] = []

    def run(image: Image.Image, strength: float) -> Image.Image:
        def on_step(index: int, total: int, _: torch.Tensor) -> bool:
            steps.append((index, total))
            return False

        options = {"num_inference_steps": 8, "scheduler": ddim(sd15), "on_step": on_step}
        return chunked(sd15, image=image, strength=strength, **options)[0]

    low, high = run(source, 0.25), run(source, 0.75)
    assert steps == [(index, 2) for index in range(2)] + [(index, 6) for index in range(6)]
    assert low.size == high.size == source.size
    # The tiny random VAE does not reconstruct images, so "close to the source" cannot be seen in
    # the pixels (the single-window test above pins the img2img maths); the source is used though.
    other = run(source.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 0.25)
    assert np.abs(pixels([low])[0] - pixels([other])[0]).mean() > 1


def test_on_step_returning_true_stops_before_the_next_step(sd15: StableDiffusionPipeline) -> None:
    seen: list[tuple[int, int, tuple[int, ...]]] = []

    def on_step(index: int, total: int, latents: torch.Tensor) -> bool:
        seen.append((index, total, tuple(latents.shape)))
        return index == 1

    assert chunked(sd15, seeds=(1, 2), num_inference_steps=5, scheduler=ddim(sd15), on_step=on_step) == []
    assert seen == [(0, 5, (2, 4, 8, 16)), (1, 5, (2, 4, 8, 16))]


@pytest.mark.parametrize("scheduler", ["ddim", "pndm", "heun", "eads", "dpmsm", "dpmsde", "unipc", "lmsd"])
def test_every_kind_of_scheduler_denoises_a_chunked_canvas(sd15: StableDiffusionPipeline, scheduler: str) -> None:
    (image,) = chunked(sd15, scheduler=make_scheduler(sd15.scheduler.config, scheduler, 1))
    assert image.size == (128, 64)
    assert pixels([image])[0].std() > 1  # not a blank


def test_an_sdxl_canvas_is_chunked_too() -> None:
    pipeline = tiny_sdxl_pipeline()
    pipeline.set_progress_bar_config(disable=True)
    first, second = chunked(pipeline, seeds=(1, 2), batch_size=2)
    assert first.size == second.size == (128, 64)
    assert np.abs(pixels([first])[0] - pixels([second])[0]).mean() > 1


def test_without_blur_it_is_diffusers_panorama_pipeline(sd15: StableDiffusionPipeline) -> None:
    """With DDIM (a step affine in the noise prediction), blending the windows' predictions and
    stepping once is the same as diffusers' MultiDiffusion: a step per window, latents averaged."""
    panorama_class = getattr(diffusers, "StableDiffusionPanoramaPipeline", None)
    if panorama_class is None:
        pytest.skip("this diffusers has no StableDiffusionPanoramaPipeline")
    panorama = panorama_class(**sd15.components)
    panorama.set_progress_bar_config(disable=True)
    panorama.scheduler = ddim(sd15)
    views = panorama.get_views
    # Its views are 64-latent windows every 8; ours here are 8 every 4 (64 and 32 px).
    panorama.get_views = lambda height, width, **_: views(height, width, window_size=8, stride=4)
    assert len(panorama.get_views(64, 128)) == 3
    (theirs,) = panorama("a lighthouse", **CANVAS, num_inference_steps=4, generator=generators((1,))).images
    (ours,) = chunked(sd15, blur=0, scheduler=ddim(sd15))
    assert np.abs(pixels([ours])[0] - pixels([theirs])[0]).max() <= 1


def seam_figures(image: np.ndarray, seams: list[int]) -> tuple[float, float]:
    """Mean absolute difference between neighbouring columns: across the seams, and elsewhere."""
    jumps = np.abs(np.diff(image.astype(float), axis=1)).mean(axis=(0, 2))  # jumps[x - 1]: column x - 1 to x
    at = [x - 1 for x in seams]
    return float(jumps[at].mean()), float(np.delete(jumps, at).mean())


def test_blur_smooths_the_window_seams(sd15: StableDiffusionPipeline) -> None:
    """The tiny random model's output is a texture whose column-to-column jumps (~15 levels) hide
    the seams, so the chunking's own error is measured: the chunked image minus the same seed
    denoised in one canvas-size window. That error jumps at the window borders when they are
    cut hard (blur 0) and less when they are feathered."""
    (whole,) = pixels(chunked(sd15, window=2 * MODEL))
    seams = [32, 64, 96]  # the borders of the windows at 0, 32 and 64 px
    figures = {}
    for blur in (0, 32):
        (image,) = pixels(chunked(sd15, blur=blur))
        figures[blur] = seam_figures(image - whole, seams)
        print(f"blur {blur:2}: error jump across seams {figures[blur][0]:.3f}, elsewhere {figures[blur][1]:.3f}")  # noqa: T201 - the figures, asked for with -s
    assert figures[32][0] < figures[0][0]
    # And without blur the seams stand out from the rest: the measure sees them.
    assert figures[0][0] > figures[0][1]
    assert figures[32][0] - figures[32][1] < figures[0][0] - figures[0][1]


def test_bad_arguments_are_refused_naming_them(sd15: StableDiffusionPipeline) -> None:
    with pytest.raises(ValueError, match=r"`image` must be the canvas size 128x64, got 64x64"):
        chunked(sd15, image=gradient(MODEL, MODEL), strength=0.5)
    with pytest.raises(ValueError, match="`image` and `strength` go together"):
        chunked(sd15, strength=0.5)
    with pytest.raises(ValueError, match=r"`strength` must be in \(0, 1\] and leave at least one of 4 steps"):
        chunked(sd15, image=gradient(*CANVAS.values()), strength=0.1)
    with pytest.raises(ValueError, match="`batch_size` must be 1 or more, got 0"):
        chunked(sd15, batch_size=0)
