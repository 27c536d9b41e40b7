"""ControlNet: the kinds, the files they need, and control images made from input images.

No torch: the Planner prepares control images (Pillow, numpy, OpenCV) as it prepares every input.
Canny, tile, scribble and inpaint need no annotator model and are made here; the other kinds'
annotators (depth, pose, ...) are models, run by the role on its device before it denoises
(deployments/annotators.py): for those the Planner sends the image as it is on the canvas. With
``process_control_image`` false a control image is used as given (already a depth map, ...).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

# The annotator-free kinds, processed here.
PROCESSED = frozenset({"canny", "tile", "scribble", "inpaint"})
# The other kinds' annotator files (lllyasviel/Annotators' names) in the annotators folder.
ANNOTATOR_FILES = {
    "mlsd": ("mlsd_large_512_fp32.pth",),
    "hed": ("ControlNetHED.pth",),
    "pidi": ("table5_pidinet.pth",),
    "depth": ("dpt_hybrid-midas-501f0c75.pt",),
    "normal": ("scannet.pt",),
    "pose": ("body_pose_model.pth", "hand_pose_model.pth", "facenet.pth"),
    "line": ("sk_model.pth", "sk_model2.pth"),
    "anime": ("netG.pth",),
}
# Each kind's ControlNet file in the controlnet folder unless a setting of the kind's name (and
# `<kind>_xl` for SDXL checkpoints) names another: the files Enfugue downloaded for them.
DEFAULT_FILES = {
    "canny": "control_v11p_sd15_canny.safetensors",
    "mlsd": "control_v11p_sd15_mlsd.safetensors",
    "hed": "sd-controlnet-hed.safetensors",
    "scribble": "control_v11p_sd15_scribble.safetensors",
    "tile": "control_v11f1e_sd15_tile.bin",
    "inpaint": "control_v11p_sd15_inpaint.safetensors",
    "depth": "control_v11f1p_sd15_depth.safetensors",
    "normal": "control_v11p_sd15_normalbae.safetensors",
    "pose": "control_v11p_sd15_openpose.safetensors",
    "pidi": "control_v11p_sd15_softedge.safetensors",
    "line": "control_v11p_sd15_lineart.safetensors",
    "anime": "control_v11p_sd15s2_lineart_anime.safetensors",
    "canny_xl": "controlnet-canny-sdxl-1.0.safetensors",
    "depth_xl": "controlnet-depth-sdxl-1.0.safetensors",
    "pidi_xl": "controlnet-sd-xl-1.0-softedge-dexined.safetensors",
    "pose_xl": "OpenPoseXL2.safetensors",
}
CANNY_THRESHOLDS = (100, 200)  # the ControlNet authors' annotator defaults


def control_image(kind: str, image: Image.Image, process: bool, invert: bool) -> Image.Image:
    """The control image for ``kind`` from an RGB ``image`` on the canvas. ``invert`` turns a
    black-on-white drawing into the white-on-black one ControlNets were trained on."""
    if invert:
        image = ImageOps.invert(image.convert("RGB"))
    if not process or kind in ANNOTATOR_FILES:  # as given, or for the role's annotator
        return image.convert("RGB")
    if kind == "canny":
        import cv2  # OpenCV is large; only the Planner that makes canny images loads it

        edges = cv2.Canny(np.asarray(image.convert("L")), *CANNY_THRESHOLDS)
        return Image.fromarray(edges).convert("RGB")
    if kind == "scribble":
        # Lines on a plain background as white lines on black.
        grey = np.asarray(image.convert("L"))
        lines = grey < 128 if grey.mean() > 127 else grey >= 128
        return Image.fromarray((lines * 255).astype(np.uint8)).convert("RGB")
    # tile: the image itself; inpaint: the image, its masked pixels marked by the role.
    return image.convert("RGB")


def inpaint_condition(image: Image.Image, repaint: Image.Image) -> np.ndarray:
    """The inpaint ControlNet's condition: the image in [0, 1] with repainted pixels at -1
    (NHWC float32; the role makes it a tensor)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    pixels[np.asarray(repaint.convert("L")) >= 128] = -1.0
    return pixels[None]
