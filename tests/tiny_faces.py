"""A face detector with YuNet's interface, and a GFPGAN file with random weights.

OpenCV's ``cv2.FaceDetectorYN`` runs YuNet ONNX files: an image in, for each stride (8, 16, 32)
per cell a class and an objectness score, a box (centre offset, log size) and five landmarks.
The file here keeps that interface and finds one kind of "face": red pixels (``FACE_COLOUR``),
scored per 32 px cell by how much of the cell they fill, boxed as that cell, with landmarks at
the places of eyes, nose and mouth corners. A red square aligned to the 32 px grid is therefore
one face, exactly there, and an image without red has none: what a test of face restoration
needs to know where the faces are. The GFPGAN file is the real architecture (spandrel's) with
random weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FACE_COLOUR = (255, 0, 0)
STRIDES = (8, 16, 32)
# Within its cell, in cell units: right eye, left eye, nose tip, right and left mouth corners.
LANDMARKS = ((0.3, 0.35), (0.7, 0.35), (0.5, 0.55), (0.35, 0.75), (0.65, 0.75))


def write_face_detector(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    def constant(name: str, values: object, dtype: int = TensorProto.FLOAT) -> onnx.NodeProto:
        array = np.asarray(values, dtype=np.int64 if dtype == TensorProto.INT64 else np.float32)
        return helper.make_node(
            "Constant", [], [name], value=helper.make_tensor(name, dtype, array.shape, array.flatten().tolist())
        )

    nodes = [
        constant("c0", [0], TensorProto.INT64), constant("c1", [1], TensorProto.INT64),
        constant("c2", [2], TensorProto.INT64), constant("c3", [3], TensorProto.INT64),
        constant("full", 255.0), constant("square", 255.0 * 255.0), constant("zero", 0.0),
        constant("shape", [1, -1, 1], TensorProto.INT64),
        constant("box", [[[0.5, 0.5, 0.0, 0.0]]]), constant("points", [[list(np.ravel(LANDMARKS))]]),
        # The input is BGR (blobFromImage): red is channel 2, green channel 1.
        helper.make_node("Slice", ["input", "c2", "c3", "c1"], ["red"]),
        helper.make_node("Slice", ["input", "c1", "c2", "c1"], ["green"]),
        helper.make_node("Sub", ["full", "green"], ["not_green"]),
        helper.make_node("Mul", ["red", "not_green"], ["product"]),
        helper.make_node("Div", ["product", "square"], ["redness"]),
    ]  # fmt: skip
    for stride in STRIDES:
        pooled, cells = f"pooled_{stride}", f"cells_{stride}"
        window = {"kernel_shape": [stride, stride], "strides": [stride, stride]}
        nodes.append(helper.make_node("AveragePool", ["redness"], [pooled], **window))
        nodes.append(helper.make_node("Reshape", [pooled, "shape"], [cells]))
        score = cells
        if stride != 32:  # faces are found at one stride only: one detection per face
            score = f"none_{stride}"
            nodes.append(helper.make_node("Mul", [cells, "zero"], [score]))
        nodes.append(helper.make_node("Identity", [score], [f"cls_{stride}"]))
        nodes.append(helper.make_node("Identity", [score], [f"obj_{stride}"]))
        nodes.append(helper.make_node("Mul", [cells, "zero"], [f"flat_{stride}"]))
        nodes.append(helper.make_node("Add", [f"flat_{stride}", "box"], [f"bbox_{stride}"]))
        nodes.append(helper.make_node("Add", [f"flat_{stride}", "points"], [f"kps_{stride}"]))
    outputs = [
        helper.make_tensor_value_info(f"{name}_{stride}", TensorProto.FLOAT, [1, None, width])
        for name, width in (("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10))
        for stride in STRIDES
    ]
    graph = helper.make_graph(
        nodes, "red-faces", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, None, None])], outputs
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_gfpgan(path: Path, seed: int = 0) -> Path:
    """GFPGAN v1 clean (spandrel's architecture, as GFPGANv1.4.pth) with random weights."""
    import torch
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(seed)
    model = GFPGAN(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None, fix_decoder=False,
                   num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True)  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    # Half precision halves the file; the loader copies it into float32 parameters.
    torch.save({"params_ema": {name: tensor.half() for name, tensor in model.state_dict().items()}}, path)
    return path
