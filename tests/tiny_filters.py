"""Tiny stand-ins for the filter models users bring: a background segmenter and a safety checker.

Each has the real model's interface and file layout, so the loading code under test is the
production code; only the weights are made up.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from onnx import TensorProto, helper
from transformers import CLIPConfig, CLIPImageProcessor

from deployments.demo import seeded

# Both read images at this size (the segmenter when its size is static).
TINY_SIZE = 32


def write_tiny_segmenter(path: Path, size: int | None = TINY_SIZE, logits: bool = False) -> Path:
    """An ONNX file shaped like U2-Net's (1x3xHxW in, 1x1xHxW first out) whose foreground is red:
    a 1x1 convolution weighs red against blue. ``size`` None leaves height and width symbolic;
    ``logits`` leaves out the final sigmoid, as BiRefNet files do."""
    height, width = (size, size) if size else ("height", "width")
    image = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, height, width])
    mask = helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, height, width])
    # Red minus blue: a red subject scores high on a blue background.
    weight = helper.make_tensor("weight", TensorProto.FLOAT, [1, 3, 1, 1], [1.0, 0.0, -1.0])
    nodes = [helper.make_node("Conv", ["input", "weight"], ["score"])]
    if logits:
        nodes.append(helper.make_node("Identity", ["score"], ["mask"]))
    else:
        nodes.append(helper.make_node("Sigmoid", ["score"], ["mask"]))
    graph = helper.make_graph(nodes, "tiny_segmenter", [image], [mask], initializer=[weight])
    # An old IR and opset that every onnxruntime release reads.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_tiny_safety_checker(folder: Path, flag_everything: bool, seed: int = 0) -> Path:
    """``safety_checker/`` and ``feature_extractor/`` in ``folder``, as a pipeline ships them.

    A concept is flagged when the cosine between image and concept embeddings exceeds its
    weight; a cosine lies in [-1, 1], so weights of -2 flag every image and 2 none."""
    config = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2},
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": TINY_SIZE,
            "patch_size": 8,
        },
        projection_dim=8,
    )
    checker = seeded(seed, lambda: StableDiffusionSafetyChecker(config))
    threshold = -2.0 if flag_everything else 2.0
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(threshold)
        # Never "special care": its only effect is a small adjustment of the concept scores.
        checker.special_care_embeds_weights.fill_(2.0)
    checker.save_pretrained(str(folder / "safety_checker"))
    CLIPImageProcessor(
        size={"shortest_edge": TINY_SIZE}, crop_size={"height": TINY_SIZE, "width": TINY_SIZE}
    ).save_pretrained(str(folder / "feature_extractor"))
    return folder
