"""Annotator files with random weights: each annotator's real architecture (controlnet_aux's),
saved as the file ``lllyasviel/Annotators`` names, in the layout its loader reads.

Full size (the architectures are fixed), so about 1.6 GB in all; saved in half precision (the
loaders copy them into float32 parameters) to halve that. Built once per test session.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: tensor.half() if tensor.is_floating_point() else tensor for name, tensor in module.state_dict().items()
    }


def _prefixed(module: nn.Module) -> dict[str, torch.Tensor]:
    """OpenPose's files name each weight without the model's first attribute (its loader's ``transfer``)."""
    return {name.split(".", 1)[1]: tensor for name, tensor in _state(module).items()}


def _mlsd() -> dict[str, Any]:
    from controlnet_aux.mlsd.models.mbv2_mlsd_large import MobileV2_MLSD_Large

    return {"mlsd_large_512_fp32.pth": _state(MobileV2_MLSD_Large())}


def _hed() -> dict[str, Any]:
    from controlnet_aux.hed import ControlNetHED_Apache2

    return {"ControlNetHED.pth": _state(ControlNetHED_Apache2())}


def _pidi() -> dict[str, Any]:
    from controlnet_aux.pidi.model import pidinet

    return {"table5_pidinet.pth": {"state_dict": _state(pidinet())}}


def _depth() -> dict[str, Any]:
    from controlnet_aux.midas.midas.dpt_depth import DPTDepthModel

    return {
        "dpt_hybrid-midas-501f0c75.pt": _state(DPTDepthModel(path=None, backbone="vitb_rn50_384", non_negative=True))
    }


def _normal() -> dict[str, Any]:
    from controlnet_aux.normalbae.nets.NNET import NNET

    options = types.SimpleNamespace(mode="client", architecture="BN", pretrained="scannet", sampling_ratio=0.4,
                                    importance_ratio=0.7)  # fmt: skip
    return {"scannet.pt": {"model": _state(NNET(options))}}


def _pose() -> dict[str, Any]:
    from controlnet_aux.open_pose.face import FaceNet
    from controlnet_aux.open_pose.model import bodypose_model, handpose_model

    return {
        "body_pose_model.pth": _prefixed(bodypose_model()),
        "hand_pose_model.pth": _prefixed(handpose_model()),
        "facenet.pth": _state(FaceNet()),
    }


def _line() -> dict[str, Any]:
    from controlnet_aux.lineart import Generator

    return {"sk_model.pth": _state(Generator(3, 1, 3)), "sk_model2.pth": _state(Generator(3, 1, 3))}


def _anime() -> dict[str, Any]:
    from controlnet_aux.lineart_anime import UnetGenerator

    norm_layer = functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    return {"netG.pth": _state(UnetGenerator(3, 1, 8, 64, norm_layer=norm_layer, use_dropout=False))}


BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "mlsd": _mlsd, "hed": _hed, "pidi": _pidi, "depth": _depth,
    "normal": _normal, "pose": _pose, "line": _line, "anime": _anime,
}  # fmt: skip


def write_annotators(folder: Path, kinds: tuple[str, ...] = tuple(BUILDERS)) -> Path:
    """Random-weight files of ``kinds`` in ``folder`` (made if needed); the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for kind in kinds:
        for name, state in BUILDERS[kind]().items():
            torch.save(state, folder / name)
    return folder
