"""Face restoration with GFPGAN (the ``gfpgan`` upscale): find the faces, align each to GFPGAN's
512 px template by its five landmarks, restore it, and paste it back inside its box with a
feathered edge; the whole image is then upscaled by Real-ESRGAN, as Enfugue's GFPGAN upscale
upscaled what is not a face.

Faces are found by OpenCV's own detector (``cv2.FaceDetectorYN``, a YuNet ONNX file in the
upscaler folder): nothing downloads at run time and no second OpenCV is needed. GFPGAN itself
runs through spandrel, which knows its architecture.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from PIL import Image
from spandrel import ImageModelDescriptor, ModelLoader

logger = logging.getLogger(__name__)

# GFPGAN's aligned face: 512 px, the five landmarks (eyes, nose tip, mouth corners; the image's
# left first) where facexlib's FFHQ template puts them.
FACE_SIZE = 512
TEMPLATE = np.array(
    [[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935], [201.26117, 371.41043],
     [313.08905, 371.15118]], dtype=np.float32,
)  # fmt: skip
SCORE_THRESHOLD, NMS_THRESHOLD, MAX_FACES = 0.9, 0.3, 50


class FaceError(ValueError):
    """A file that is not the model it should be."""


class Face(NamedTuple):
    box: tuple[int, int, int, int]  # x, y, width, height, in pixels, inside the image
    landmarks: np.ndarray  # 5 x 2


class FaceRestorer:
    """GFPGAN and the face detector, on ``device``."""

    def __init__(self, gfpgan: Path, detector: Path, device: torch.device) -> None:
        try:
            descriptor = ModelLoader().load_from_file(gfpgan)
        except Exception as error:  # torch's and spandrel's own types for a file that is no model
            raise FaceError(f"{gfpgan.name} is not a model spandrel can load ({error})") from error
        if not isinstance(descriptor, ImageModelDescriptor) or descriptor.architecture.id != "GFPGAN":
            raise FaceError(f"{gfpgan.name} is a {descriptor.architecture.id} model, not GFPGAN")
        self._gfpgan = descriptor.to(device=device, dtype=torch.float32).eval()
        logger.info("loaded %s and %s on %s", gfpgan.name, detector.name, device)
        self._device = device
        try:
            self._detector = cv2.FaceDetectorYN.create(
                str(detector), "", (320, 320), SCORE_THRESHOLD, NMS_THRESHOLD, MAX_FACES
            )
        except cv2.error as error:
            raise FaceError(f"{detector.name} is not a face detector OpenCV can load ({error})") from error

    def faces(self, image: Image.Image) -> list[Face]:
        """The faces in an RGB ``image``."""
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        self._detector.setInputSize((image.width, image.height))
        _, found = self._detector.detect(bgr)
        faces = []
        for row in found if found is not None else []:
            x, y, width, height = (int(round(value)) for value in row[:4])
            left, top = max(0, x), max(0, y)
            right, bottom = min(image.width, x + width), min(image.height, y + height)
            if right > left and bottom > top:
                faces.append(Face((left, top, right - left, bottom - top), row[4:14].reshape(5, 2)))
        return faces

    def restore(self, image: Image.Image) -> Image.Image:
        """``image`` with every face restored; pixels outside the faces' boxes unchanged."""
        rgb = np.asarray(image.convert("RGB")).astype(np.float32)
        result = rgb.copy()
        for face in self.faces(image):
            matrix, _ = cv2.estimateAffinePartial2D(face.landmarks, TEMPLATE, method=cv2.LMEDS)
            if matrix is None:  # landmarks that fit no similarity transform: leave that face
                continue
            crop = cv2.warpAffine(rgb, matrix, (FACE_SIZE, FACE_SIZE), borderMode=cv2.BORDER_REFLECT)
            restored = self._restore_crop(crop)
            inverse = cv2.invertAffineTransform(matrix)
            size = (image.width, image.height)
            back = cv2.warpAffine(restored, inverse, size, flags=cv2.INTER_LINEAR)
            covered = cv2.warpAffine(np.ones((FACE_SIZE, FACE_SIZE), np.float32), inverse, size)
            mask = (_feathered_box(face.box, size) * np.clip(covered, 0, 1))[:, :, None]
            result = back * mask + result * (1 - mask)
        return Image.fromarray(np.clip(np.rint(result), 0, 255).astype(np.uint8))

    def _restore_crop(self, crop: np.ndarray) -> np.ndarray:
        """GFPGAN on one aligned 512 px face (RGB, 0-255), as GFPGAN runs it: in [-1, 1], without
        random noise (the same face restores the same way every time)."""
        tensor = torch.from_numpy(crop / 127.5 - 1).permute(2, 0, 1)[None].to(self._device, torch.float32)
        with torch.inference_mode():
            output = self._gfpgan.model(tensor, return_rgb=False, randomize_noise=False)[0]
        return ((output[0].clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).float().cpu().numpy()


def _feathered_box(box: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    """1 inside ``box``, falling to 0 at its edges over an eighth of its smaller side; 0 outside."""
    x, y, width, height = box
    feather = max(1, min(width, height) // 8)
    mask = np.zeros((size[1], size[0]), np.float32)
    inner = mask[y : y + height, x : x + width]
    ys = np.minimum(np.arange(height), np.arange(height)[::-1])[:, None]
    xs = np.minimum(np.arange(width), np.arange(width)[::-1])[None, :]
    inner[:] = np.clip((np.minimum(ys, xs) + 1) / feather, 0, 1)
    return mask
