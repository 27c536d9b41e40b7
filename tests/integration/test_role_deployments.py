"""Each model role runs in its own deployment, on a real local Ray cluster: inpainting with a
configured inpainter in the Inpainter, an SDXL base + refiner run in Base then Refiner, an ESRGAN
upscale in the Upscaler."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.images import data_uri, gradient
from tests.integration.test_serve_http import _finished, _invoke

pytestmark = pytest.mark.integration


def test_an_inpainting_checkpoint_inpaints_in_its_own_deployment(
    http: httpx.Client, deployed: tuple[str, Path]
) -> None:
    from ray import serve

    from storage.files import DataPaths
    from tests.tiny_models import tiny_sd15_inpaint_pipeline, write_ldm_checkpoint

    write_ldm_checkpoint(
        tiny_sd15_inpaint_pipeline(), DataPaths(deployed[1]).models("checkpoint"), "inpainting.safetensors"
    )
    source, mask = gradient(64, 64), Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    body = {
        "model": "tiny-random-demo-noise-only", "inpainter": "inpainting.safetensors", "prompt": "a cat",
        "image": data_uri(source), "mask": data_uri(mask), "num_inference_steps": 3, "seed": 2,
    }  # fmt: skip
    status = _finished(http, _invoke(http, **body)["uuid"])
    assert status["status"] == "completed", status
    image = Image.open(io.BytesIO(http.get("/api/invocation/" + status["images"][0]).content))
    step = json.loads(image.text["plan"])["steps"][0]
    assert (step["kind"], step["role"], step["checkpoint"]) == ("inpaint", "inpainter", "inpainting.safetensors")
    pixels = np.asarray(image.convert("RGB"))
    assert np.array_equal(pixels[:, 32:], np.asarray(source)[:, 32:])
    assert np.abs(pixels[:, :32].astype(int) - np.asarray(source)[:, :32]).mean() > 10

    deployments = serve.status().applications["enfugue"].deployments
    assert deployments["Inpainter"].status == "HEALTHY" and deployments["Base"].status == "HEALTHY"


def test_an_sdxl_base_and_refiner_run_in_their_own_deployments(http: httpx.Client, deployed: tuple[str, Path]) -> None:
    from ray import serve

    from storage.files import DataPaths
    from tests.tiny_models import (
        tiny_sdxl_pipeline,
        tiny_sdxl_refiner_pipeline,
        write_diffusers_folder,
        write_ldm_checkpoint,
    )

    folder = DataPaths(deployed[1]).models("checkpoint")
    write_diffusers_folder(tiny_sdxl_pipeline(), folder / "tiny-xl")
    write_ldm_checkpoint(tiny_sdxl_refiner_pipeline(), folder, "tiny-refiner.safetensors")
    body = {
        "model": "tiny-xl", "refiner": "tiny-refiner.safetensors", "prompt": "a cat", "samples": 2,
        "num_inference_steps": 4, "refiner_strength": 0.5, "seed": 9,
    }  # fmt: skip
    status = _finished(http, _invoke(http, **body)["uuid"])
    assert status["status"] == "completed" and status["total"] == 4 + 2, status
    images = [Image.open(io.BytesIO(http.get("/api/invocation/" + name).content)) for name in status["images"]]
    assert [image.size for image in images] == [(64, 64), (64, 64)]
    steps = json.loads(images[0].text["plan"])["steps"]
    assert [(step["kind"], step["role"]) for step in steps] == [("diffuse", "base"), ("refine", "refiner")]
    assert serve.status().applications["enfugue"].deployments["Refiner"].status == "HEALTHY"


def test_an_esrgan_upscale_runs_in_the_upscaler_deployment(http: httpx.Client, deployed: tuple[str, Path]) -> None:
    from ray import serve

    from storage.files import DataPaths
    from tests.tiny_upscalers import write_tiny_esrgan

    write_tiny_esrgan(DataPaths(deployed[1]).models("upscaler"), "RealESRGAN_x4plus.pth")
    body = {"model": "tiny-random-demo-noise-only", "prompt": "a cat", "num_inference_steps": 2, "outscale": 2}
    status = _finished(http, _invoke(http, **body)["uuid"])
    assert status["status"] == "completed", status
    image = Image.open(io.BytesIO(http.get("/api/invocation/" + status["images"][0]).content))
    assert image.size == (128, 128)
    steps = json.loads(image.text["plan"])["steps"]
    assert [(step["kind"], step["role"]) for step in steps] == [("diffuse", "base"), ("upscale", "upscaler")]
    assert serve.status().applications["enfugue"].deployments["Upscaler"].status == "HEALTHY"
