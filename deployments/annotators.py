"""Annotators: the models that turn an ordinary photo into a ControlNet's control image (lines,
edges, depth, normals, a pose skeleton, line art), run by a model role on its device.

The implementations are controlnet_aux's (the ControlNet authors' annotators, packaged), loaded
only from the annotators folder under the file names of ``lllyasviel/Annotators`` (never from a
hub: each loader gets the files' paths). A role keeps an annotator loaded with the checkpoint and
ControlNet it serves (the model id names it), so it is cached and released with them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from deployments.control import ANNOTATOR_FILES

# The resolution the annotators were trained at: the image's shorter side is scaled to it.
DETECT_RESOLUTION = 512


def _mlsd(files: list[Path]) -> Any:
    from controlnet_aux.mlsd import MLSDdetector

    return MLSDdetector.from_pretrained(str(files[0].parent), filename=str(files[0]))


def _hed(files: list[Path]) -> Any:
    from controlnet_aux.hed import HEDdetector

    return HEDdetector.from_pretrained(str(files[0].parent), filename=str(files[0]))


def _pidi(files: list[Path]) -> Any:
    from controlnet_aux.pidi import PidiNetDetector

    return PidiNetDetector.from_pretrained(str(files[0].parent), filename=str(files[0]))


def _depth(files: list[Path]) -> Any:
    from controlnet_aux.midas import MidasDetector  # DPT-Hybrid MiDaS, as Enfugue used

    return MidasDetector.from_pretrained(str(files[0].parent), model_type="dpt_hybrid", filename=str(files[0]))


def _normal(files: list[Path]) -> Any:
    from controlnet_aux.normalbae import NormalBaeDetector

    return NormalBaeDetector.from_pretrained(str(files[0].parent), filename=str(files[0]))


def _pose(files: list[Path]) -> Any:
    from controlnet_aux.open_pose import OpenposeDetector

    body, hand, face = (str(file) for file in files)
    return OpenposeDetector.from_pretrained(str(files[0].parent), filename=body, hand_filename=hand, face_filename=face)


def _line(files: list[Path]) -> Any:
    from controlnet_aux.lineart import LineartDetector

    fine, coarse = (str(file) for file in files)
    return LineartDetector.from_pretrained(str(files[0].parent), filename=fine, coarse_filename=coarse)


def _anime(files: list[Path]) -> Any:
    from controlnet_aux.lineart_anime import LineartAnimeDetector

    return LineartAnimeDetector.from_pretrained(str(files[0].parent), filename=str(files[0]))


# kind -> (loader from the files of ANNOTATOR_FILES[kind], in order; arguments of each call)
_ANNOTATORS: dict[str, tuple[Callable[[list[Path]], Any], dict[str, Any]]] = {
    "mlsd": (_mlsd, {}),
    "hed": (_hed, {}),
    "pidi": (_pidi, {}),
    "depth": (_depth, {}),
    "normal": (_normal, {}),
    # Body, hands and face, as Enfugue drew them.
    "pose": (_pose, {"include_body": True, "include_hand": True, "include_face": True}),
    "line": (_line, {"coarse": False}),
    "anime": (_anime, {}),
}
assert set(_ANNOTATORS) == set(ANNOTATOR_FILES)


class Annotator:
    """One kind's annotator, loaded on ``device``: ``annotator(image)`` is the control image."""

    def __init__(self, kind: str, files: list[Path], device: torch.device) -> None:
        load, self._arguments = _ANNOTATORS[kind]
        self.kind = kind
        self._detector = load(files).to(device)

    def __call__(self, image: Image.Image) -> Image.Image:
        """The control image of an RGB ``image``, the same size (annotators work at 512 px)."""
        with torch.inference_mode():
            made = self._detector(
                image.convert("RGB"), detect_resolution=DETECT_RESOLUTION, image_resolution=min(image.size),
                output_type="pil", **self._arguments,
            )  # fmt: skip
        made = made.convert("RGB")
        return made if made.size == image.size else made.resize(image.size, Image.Resampling.BILINEAR)
