"""The models of the GPU tests, written into a data folder: on CUDA the full-size SD 1.5, SDXL base and
refiner topologies with random weights in half precision (built as bench/gpu.py builds them, nothing
downloaded), a ControlNet of SD 1.5's size and RealESRGAN_x4plus's size; on the CPU the tiny ones
the other tests use, at small sizes and few steps, so that everything but CUDA is proven there."""

from __future__ import annotations

from dataclasses import dataclass

from storage.files import DataPaths

CANNY = "control_v11p_sd15_canny.safetensors"


@dataclass(frozen=True)
class Sizes:
    """Image sides (SD 1.5's, SDXL's) and denoising steps of the tests on one device."""

    sd15: int
    sdxl: int
    steps: int


SIZES = {"cuda": Sizes(sd15=512, sdxl=1024, steps=20), "cpu": Sizes(sd15=64, sdxl=64, steps=3)}


def write_models(device: str, paths: DataPaths) -> None:
    """Checkpoints ``sd15``, ``sd15-copy``, ``sdxl`` and ``sdxl-refiner`` (diffusers folders), the
    SD 1.5 canny ControlNet and the ESRGAN upscaler, each where the app finds it."""
    from tests.tiny_models import write_diffusers_folder, write_tiny_controlnet
    from tests.tiny_upscalers import write_tiny_esrgan

    checkpoints = paths.models("checkpoint")
    if device == "cuda":
        from diffusers import ControlNetModel

        from bench.gpu import random_pipeline

        sd15 = random_pipeline("v1", paths.configs)
        pipelines = {"sdxl": random_pipeline("xl_base", paths.configs)}
        pipelines["sdxl-refiner"] = random_pipeline("xl_refiner", paths.configs)
        controlnet = ControlNetModel.from_unet(sd15.unet).to("cpu")
        esrgan = {"features": 64, "blocks": 23}
    else:
        from tests.tiny_models import tiny_sd15_pipeline, tiny_sdxl_pipeline, tiny_sdxl_refiner_pipeline

        sd15 = tiny_sd15_pipeline()
        pipelines = {"sdxl": tiny_sdxl_pipeline(), "sdxl-refiner": tiny_sdxl_refiner_pipeline()}
        controlnet, esrgan = None, {}
    for name, pipeline in {"sd15": sd15, "sd15-copy": sd15, **pipelines}.items():
        write_diffusers_folder(pipeline, checkpoints / name)
    write_tiny_controlnet(paths.models("controlnet") / CANNY, controlnet)
    write_tiny_esrgan(paths.models("upscaler"), **esrgan)
