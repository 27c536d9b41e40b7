"""Random, coherent ``POST /api/invoke`` bodies over the seed's parameters, and what each promises.

Coherent: every field a generated body sets is one a user could mean (an image with its mask of
the same size, nodes inside the canvas, re-diffusion values only with ``upscale_diffusion``), but
the values are free, so that some bodies ask for what cannot run (a strength that leaves no step,
windows wider than the model): those must be refused at admission, naming a field. Seeded: the
same seed gives the same body, so a failure reproduces from its number.
"""

from __future__ import annotations

import random
from typing import Any

from deployments.control import DEFAULT_FILES
from serve_app.field_types import SCHEDULERS
from tests.images import data_uri, decoded_size, gradient

# The demo checkpoint's size: the canvas when a body gives no width, height or image.
MODEL_SIZE = 64
# The ControlNet kinds whose control image the server makes without an annotator model.
CONTROLNET_KINDS = ("canny", "tile", "scribble", "inpaint")
# Files a run needs in the model folders (written by the test as tiny models).
CONTROLNET_FILES = tuple(DEFAULT_FILES[kind] for kind in CONTROLNET_KINDS)
FITS = ("actual", "stretch", "cover", "contain")
ANCHORS = ("top-left", "center-center", "bottom-right", "top-center", "center-left")
UPSCALE_METHODS = ("esrgan", "esrganime", "lanczos", "bilinear", "bicubic", "nearest")


def _side(rng: random.Random) -> int:
    return rng.choice((64, 64, 72, 96, 128))


def _image(rng: random.Random, width: int, height: int, transparent: bool = False) -> str:
    image = gradient(width, height).rotate(rng.choice((0, 90, 180)))
    if transparent:
        image = image.convert("RGBA")
        image.paste((0, 0, 0, 0), (width // 4, height // 4, width // 2, height // 2))
    return data_uri(image)


def _mask(width: int, height: int, rng: random.Random) -> str:
    from PIL import Image, ImageDraw

    mask = Image.new("L", (width, height), 0)
    left, top = rng.randrange(0, width // 2), rng.randrange(0, height // 2)
    ImageDraw.Draw(mask).rectangle((left, top, left + width // 2, top + height // 2), fill=255)
    return data_uri(mask)


def _per_pass(rng: random.Random, passes: int, value: Any) -> Any:
    """One value, or a list of one to ``passes`` of them."""
    if rng.random() < 0.5:
        return value()
    return [value() for _ in range(rng.randint(1, passes))]


def payload(seed: int) -> dict[str, Any]:
    """The body number ``seed``."""
    rng = random.Random(seed)
    body: dict[str, Any] = {"prompt": rng.choice(("a cat", "a red house by the sea", "")), "seed": rng.randrange(1000)}
    body["num_inference_steps"] = rng.randint(1, 4)
    if rng.random() < 0.3:
        body["negative_prompt"] = "blurry"
    if rng.random() < 0.3:
        body["guidance_scale"] = rng.choice((0.0, 1.0, 5.0, 7.5))
    if rng.random() < 0.4:
        body["scheduler"] = rng.choice(SCHEDULERS)
    if rng.random() < 0.3:
        body["samples"] = 2
    kind = rng.choice(("text", "text", "image", "inpaint", "nodes"))
    if kind == "nodes":
        _nodes(rng, body)
    else:
        if rng.random() < 0.6:
            body["width"], body["height"] = _side(rng), _side(rng)
        if kind in ("image", "inpaint"):
            _image_fields(rng, body, inpaint=kind == "inpaint")
    if rng.random() < 0.3:
        body["chunking_size"] = rng.choice((0, 16, 32, 64, 128))
        if rng.random() < 0.5:
            body["chunking_blur"] = rng.choice((0, 8, 16))
        if rng.random() < 0.3:
            body["multi_scheduler"] = rng.choice(SCHEDULERS)
    if kind != "nodes" and rng.random() < 0.2:
        _controlnet(rng, body)
    if rng.random() < 0.35:
        _upscale(rng, body)
    return body


def _image_fields(rng: random.Random, body: dict[str, Any], inpaint: bool) -> None:
    width, height = rng.choice((64, 80, 96, 128)), rng.choice((64, 80, 96, 128))
    body["image"] = _image(rng, width, height, transparent=inpaint and rng.random() < 0.3)
    if inpaint and rng.random() < 0.8:
        body["mask"] = _mask(width, height, rng)
        body["invert_mask"] = rng.random() < 0.3
    if rng.random() < 0.6:
        body["strength"] = rng.choice((0.05, 0.2, 0.5, 0.8, 1.0))
    if rng.random() < 0.4:
        body["fit"] = rng.choice(FITS)
    if rng.random() < 0.3:
        body["anchor"] = rng.choice(ANCHORS)
    if rng.random() < 0.15:
        body["remove_background"] = True
        body["fill_background"] = rng.random() < 0.5


def _nodes(rng: random.Random, body: dict[str, Any]) -> None:
    width, height = rng.choice((64, 128)), rng.choice((64, 128))
    body["width"], body["height"] = width, height
    nodes = []
    for _ in range(rng.randint(1, 3)):
        w, h = rng.choice((64, 64, 128)), rng.choice((64, 64, 128))
        w, h = min(w, width), min(h, height)
        node: dict[str, Any] = {"x": rng.randrange(0, width - w + 1, 8), "y": rng.randrange(0, height - h + 1, 8)}
        node |= {"w": w, "h": h}
        if rng.random() < 0.6:
            node["prompt"] = rng.choice(("a dog", "a tree"))
        if rng.random() < 0.3:
            node["num_inference_steps"] = rng.randint(1, 4)
        if rng.random() < 0.4:
            node["image"] = _image(rng, w, h, transparent=rng.random() < 0.3)
            if rng.random() < 0.4:
                node["mask"] = _mask(w, h, rng)
            if rng.random() < 0.5:
                node["strength"] = rng.choice((0.1, 0.5, 0.9))
            if rng.random() < 0.3:
                node["fit"] = rng.choice(FITS)
        if rng.random() < 0.1:
            node["remove_background"] = True
        nodes.append(node)
    body["nodes"] = nodes


def _controlnet(rng: random.Random, body: dict[str, Any]) -> None:
    kind = rng.choice(CONTROLNET_KINDS)
    body["controlnet"] = kind
    if kind == "inpaint" and "mask" not in body:
        body.pop("controlnet")
        return
    if "image" not in body or rng.random() < 0.5:
        body["control_image"] = _image(rng, body.get("width", MODEL_SIZE), body.get("height", MODEL_SIZE))
    if rng.random() < 0.3:
        body["conditioning_scale"] = rng.choice((0.0, 0.5, 1.5))
    if rng.random() < 0.2:
        body["invert_control_image"] = True


def _upscale(rng: random.Random, body: dict[str, Any]) -> None:
    # 4x only from the smallest canvases: re-diffused in windows, larger ones take minutes on a CPU.
    outscale = rng.choice((2, 2, 4)) if max(promised(body)[1]) <= MODEL_SIZE else 2
    body["outscale"] = outscale
    iterative = outscale > 2 and rng.random() < 0.5
    passes = 2 if iterative else 1
    if iterative:
        body["upscale_iterative"] = True
    if rng.random() < 0.7:
        body["upscale"] = _per_pass(rng, passes, lambda: rng.choice(UPSCALE_METHODS))
    if rng.random() < 0.5:
        body["upscale_diffusion"] = True
        body["upscale_diffusion_steps"] = _per_pass(rng, passes, lambda: rng.randint(1, 4))
        if rng.random() < 0.7:
            body["upscale_diffusion_strength"] = _per_pass(rng, passes, lambda: rng.choice((0.1, 0.2, 0.5, 0.9)))
        if rng.random() < 0.3:
            body["upscale_diffusion_guidance_scale"] = _per_pass(rng, passes, lambda: rng.choice((1.0, 7.0)))
        if rng.random() < 0.3:
            body["upscale_diffusion_prompt"] = _per_pass(rng, passes, lambda: "sharp")
        # Always given: the default (an eighth of the model's size, 8 px here) re-diffuses an upscaled
        # 256 px canvas in 625 windows, minutes on a CPU.
        body["upscale_diffusion_chunking_size"] = rng.choice((0, 32, 64, 128))
        if rng.random() < 0.3:
            body["upscale_diffusion_chunking_blur"] = rng.choice((0, 8, 16))
        if rng.random() < 0.2:
            body["upscale_diffusion_scale_chunking_size"] = False


def promised(body: dict[str, Any]) -> tuple[int, tuple[int, int]]:
    """How many images a completed body has, and their size."""
    width, height = body.get("width"), body.get("height")
    if "image" in body:
        image_width, image_height = decoded_size(body["image"])
        width, height = width or image_width, height or image_height
    width, height = width or MODEL_SIZE, height or MODEL_SIZE
    scale = body.get("outscale", 1)
    return body.get("samples", 1), (width * scale, height * scale)


# Left in a smaller body: without them the defaults (40 or 100 steps, 8 px windows) make a run minutes long.
KEPT = ("prompt", "num_inference_steps", "upscale_diffusion_steps", "upscale_diffusion_chunking_size")


def smaller(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Bodies one change smaller than ``body``: a field left out, a list or the nodes shortened;
    the ones that still fail the same way lead to the smallest failing body."""
    candidates = []
    for key in body:
        if key not in KEPT:
            candidates.append({name: value for name, value in body.items() if name != key})
        value = body[key]
        if isinstance(value, list) and len(value) > 1:
            candidates += [{**body, key: value[:-1]}, {**body, key: value[1:]}]
    return candidates
