"""The Upscaler role: image models that are not diffusion, on one device.

``Upscale`` steps run Real-ESRGAN files from the upscaler folder (through spandrel, tiled),
GFPGAN with a face detector before Real-ESRGAN (deployments/faces.py), or Pillow's filters;
``RemoveBackground`` steps run a segmentation model from the background
folder (through onnxruntime). Same shape as every role (deployments/role.py): models load by
id through multiplexing, a step streams its progress (one per tile), and a closed stream stops
it before its next tile.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import torch
from PIL import Image

from deployments.acceleration import device_and_dtype
from deployments.background import SegmenterError, load_segmenter, remove_background
from deployments.faces import FaceError, FaceRestorer
from deployments.image_steps import FACE_DETECTOR_FILE, PILLOW_MODEL, UPSCALE_FILES, RemoveBackground, Upscale
from deployments.role import Reporter, Stopped, model_file, role_deployment
from deployments.upscaling import UpscalerError, load_upscaler, resize, upscale
from serve_app.acceleration_schemas import Acceleration
from serve_app.errors import BadRequestError
from storage.shared import shared_storage

logger = logging.getLogger(__name__)

# Folders a model id may name (``<folder>/<file>``).
_FOLDERS = {"upscaler": "upscale", "background": "remove_background"}


class FacesThenUpscale(NamedTuple):
    """gfpgan: faces restored, then the whole image upscaled."""

    restorer: FaceRestorer
    upscaler: Any


class UpscalerRole:
    def __init__(self, data_dir: str, storage_url: str | None = None, acceleration: Acceleration | None = None) -> None:
        """Models come from ``storage_url`` (else ``data_dir``); ``acceleration``: of its options, the
        half precision applies (the upscalers are not diffusers models)."""
        self._storage = shared_storage(data_dir, storage_url)
        self.device, self.dtype = device_and_dtype(None, acceleration or Acceleration())

    def load(self, model_id: str) -> Any:
        """``pillow`` (nothing to load), ``upscaler/<file>`` or ``background/<file>``."""
        if model_id == PILLOW_MODEL:
            return None
        folder, _, name = model_id.partition("/")
        if folder not in _FOLDERS:
            raise BadRequestError(f"model: {model_id!r:.80} is not an upscaler or background model")
        field = _FOLDERS[folder]
        path = model_file(self._storage, folder, name, field)
        try:
            if folder == "background":
                return load_segmenter(path)
            if name == UPSCALE_FILES["gfpgan"]:
                detector = model_file(self._storage, folder, FACE_DETECTOR_FILE, field)
                upscaler = model_file(self._storage, folder, UPSCALE_FILES["esrgan"], field)
                restorer = FaceRestorer(path, detector, self.device)
                return FacesThenUpscale(restorer, load_upscaler(upscaler, self.device, self.dtype))
            return load_upscaler(path, self.device, self.dtype)
        except (UpscalerError, SegmenterError, FaceError) as error:
            raise BadRequestError(f"{field}: {error}") from error

    def run(
        self, model: Any, step: Upscale | RemoveBackground, inputs: list[Image.Image], reporter: Reporter
    ) -> list[Image.Image]:
        outputs = []
        for index, image in enumerate(inputs):
            if reporter.stopped:
                raise Stopped
            if isinstance(step, RemoveBackground):
                outputs.append(remove_background(model, image))
            elif model is None:
                outputs.append(resize(image, step.method, step.scale))
            else:
                upscaler = model
                if isinstance(model, FacesThenUpscale):
                    image, upscaler = model.restorer.restore(image), model.upscaler
                with torch.inference_mode():
                    outputs.append(upscale(upscaler, image, step.scale, should_stop=lambda: reporter.stopped))
            reporter.progress(index + 1, len(inputs))
        return outputs

    def check_health(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.mem_get_info(self.device)  # raises when the device is lost


Upscaler = role_deployment(UpscalerRole, name="Upscaler")
