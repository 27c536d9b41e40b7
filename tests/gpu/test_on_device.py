"""Each kind of job through the API with the model roles on the device (``--gpu --gpu-device``): SD 1.5
text to image, image to image and inpainting, SDXL with its refiner, a ControlNet, a chunked canvas
and a 2x upscale with re-diffusion. Each asserts the promised images: their number, their size, and
that they are drawn (a NaN in half precision decodes to black). On CUDA the models are full-size."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import wait_for
from tests.gpu.models import Sizes
from tests.images import data_uri, gradient

pytestmark = pytest.mark.gpu

FINISHED = ("completed", "error", "cancelled")


def run(http: httpx.Client, **body: object) -> tuple[dict, list[Image.Image]]:
    """The job's final status and its images."""
    response = http.post("/api/invoke", json={"prompt": "a photo of a cat", "seed": 5, **body})
    assert response.status_code == 200, response.text
    uuid = response.json()["data"]["uuid"]
    status = wait_for(
        lambda: http.get(f"/api/invocation/{uuid}").json()["data"], lambda s: s["status"] in FINISHED, timeout=600
    )
    assert status["status"] == "completed", status
    images = [Image.open(io.BytesIO(http.get("/api/invocation/" + name).content)) for name in status["images"]]
    return status, images


def assert_drawn(images: list[Image.Image], count: int, size: tuple[int, int]) -> None:
    assert [image.size for image in images] == [size] * count
    for image in images:
        pixels = np.asarray(image.convert("RGB"))
        assert pixels.std() > 1, "a blank image: NaN or overflow in the pipeline"


def plan_of(image: Image.Image) -> list[tuple[str, str]]:
    return [(step["kind"], step["role"]) for step in json.loads(image.text["plan"])["steps"]]


def test_sd15_text_to_image(gpu_http: httpx.Client, sizes: Sizes) -> None:
    side = sizes.sd15
    _, images = run(gpu_http, model="sd15", width=side, height=side, num_inference_steps=sizes.steps, samples=2)
    assert_drawn(images, 2, (side, side))


def test_sd15_image_to_image_and_inpainting(gpu_http: httpx.Client, sizes: Sizes) -> None:
    side = sizes.sd15
    source = gradient(side, side)
    _, images = run(
        gpu_http, model="sd15", image=data_uri(source), strength=0.6, num_inference_steps=sizes.steps
    )  # fmt: skip
    assert_drawn(images, 1, (side, side))

    mask = Image.new("L", (side, side), 0)
    mask.paste(255, (0, 0, side // 2, side))
    body = {"image": data_uri(source), "mask": data_uri(mask), "num_inference_steps": sizes.steps}
    _, (inpainted,) = run(gpu_http, model="sd15", **body)
    assert_drawn([inpainted], 1, (side, side))
    outside = np.asarray(inpainted.convert("RGB"))[:, side // 2 :]
    assert np.array_equal(outside, np.asarray(source)[:, side // 2 :])


def test_sdxl_with_its_refiner(gpu_http: httpx.Client, sizes: Sizes) -> None:
    side = sizes.sdxl
    _, images = run(
        gpu_http, model="sdxl", refiner="sdxl-refiner", refiner_strength=0.5, width=side, height=side,
        num_inference_steps=sizes.steps,
    )  # fmt: skip
    assert_drawn(images, 1, (side, side))
    assert plan_of(images[0]) == [("diffuse", "base"), ("refine", "refiner")]


def test_a_controlnet(gpu_http: httpx.Client, sizes: Sizes) -> None:
    side = sizes.sd15
    _, images = run(
        gpu_http, model="sd15", controlnet="canny", control_image=data_uri(gradient(side, side)),
        width=side, height=side, num_inference_steps=sizes.steps,
    )  # fmt: skip
    assert_drawn(images, 1, (side, side))


def test_a_chunked_canvas_twice_the_models_width(gpu_http: httpx.Client, sizes: Sizes) -> None:
    width, height = 2 * sizes.sd15, sizes.sd15
    _, images = run(gpu_http, model="sd15", width=width, height=height, num_inference_steps=sizes.steps)
    assert_drawn(images, 1, (width, height))
    (step,) = json.loads(images[0].text["plan"])["steps"]
    assert step["chunking_size"] > 0


def test_a_2x_upscale_with_re_diffusion(gpu_http: httpx.Client, sizes: Sizes) -> None:
    side = sizes.sd15
    _, images = run(
        gpu_http, model="sd15", width=side, height=side, num_inference_steps=sizes.steps, outscale=2,
        upscale_diffusion=True, upscale_diffusion_steps=sizes.steps, upscale_diffusion_strength=0.5,
    )  # fmt: skip
    assert_drawn(images, 1, (2 * side, 2 * side))
    assert [role for _, role in plan_of(images[0])] == ["base", "upscaler", "base"]


def test_the_model_roles_ran_on_the_device_and_a_dropped_model_gives_its_memory_back(
    gpu_http: httpx.Client, sizes: Sizes, device: str
) -> None:
    """Run after the others: the Base replica holds two models (the least recently used goes when
    a third loads). On CUDA, dropping SDXL for a copy of SD 1.5 must shrink the GPU's memory in use,
    read by PyTorch here (device-wide; GET /api's view is refreshed every 5 s, too late for this)."""
    side = sizes.sd15
    if device == "cpu":
        # The CPU: nothing on a GPU; the release itself: tests/deployments/test_acceleration.py.
        assert gpu_http.get("/api").json()["data"]["gpus"] == []
        return
    import torch

    # MiB in use on the GPU the models were loaded on, as GET /api shows it.
    wait_for(
        lambda: gpu_http.get("/api").json()["data"]["gpus"], lambda gpus: gpus and gpus[0]["memory"]["used"] > 4000
    )

    def used_mib() -> float:
        free, total = torch.cuda.mem_get_info()
        return (total - free) / 2**20

    run(gpu_http, model="sdxl", width=sizes.sdxl, height=sizes.sdxl, num_inference_steps=2)
    run(gpu_http, model="sd15", width=side, height=side, num_inference_steps=2)
    before = used_mib()
    run(gpu_http, model="sd15-copy", width=side, height=side, num_inference_steps=2)  # SDXL goes
    after = used_mib()
    assert after < before - 2000, (before, after)  # SDXL's weights alone are about 6.5 GiB in fp16
