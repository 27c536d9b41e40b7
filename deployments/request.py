"""What an invocation asks for once the ingress has resolved it: the input of ``make_plan``.

Pure data (no Ray, no torch), free of HTTP: the ingress builds it from a validated body, and
anything else (a batch job, a test) can build it directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from serve_app.datauri import open_image


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint the ingress resolved: its name relative to the checkpoint folder, and size."""

    name: str
    size: int


@dataclass(frozen=True)
class InputImage:
    """An image a request brought, kept encoded (smaller on the wire than its pixels)."""

    data: bytes = field(repr=False)
    width: int
    height: int
    # Some pixel is not fully opaque: it is painted (outpainting).
    transparent: bool = False

    def open(self) -> Image.Image:
        return open_image(self.data)

    def summary(self) -> dict[str, int]:
        return {"width": self.width, "height": self.height}


@dataclass(frozen=True)
class Adapter:
    """A LoRA or LyCORIS file (relative to its folder) and the weight it is applied with."""

    kind: str  # "lora" | "lycoris"
    name: str
    weight: float


@dataclass(frozen=True)
class ControlNet:
    """A ControlNet: its kind, its file (relative to the controlnet folder), its control image
    (None: the request's ``image``) and how that image is used."""

    kind: str
    model: str
    image: InputImage | None = None
    scale: float = 1.0
    process: bool = True
    invert: bool = False


@dataclass(frozen=True)
class Node:
    """A box of the canvas painted on its own: its place and size, and the parameters it sets
    (None: the invocation's)."""

    x: int
    y: int
    width: int
    height: int
    prompt: str | None = None
    negative_prompt: str | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    strength: float | None = None
    image: InputImage | None = None
    mask: InputImage | None = None
    invert_mask: bool = False
    fit: str | None = None
    anchor: str | None = None
    remove_background: bool = False
    fill_background: bool = False

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


@dataclass(frozen=True)
class Upscaling:
    """Upscaling passes over every output: ``outscale`` at once, or in 2x passes (``iterative``).

    Per pass: the method, and with ``diffusion`` an image-to-image pass over each upscaled
    image; a tuple shorter than the passes repeats its last value (empty prompts: the request's)."""

    outscale: int
    iterative: bool = False
    methods: tuple[str, ...] = ("esrgan",)
    diffusion: bool = False
    steps: tuple[int, ...] = (100,)
    guidance_scale: tuple[float, ...] = (12.0,)
    strength: tuple[float, ...] = (0.2,)
    prompts: tuple[str, ...] = ()
    negative_prompts: tuple[str, ...] = ()
    # Each pass's ControlNet as (kind, file in the controlnet folder); its control image is made
    # from the pass's input.
    controlnets: tuple[tuple[str, str], ...] = ()
    # Chunking of the re-diffusion (None: the invocation's), doubled every pass when scaled.
    chunking_size: int | None = None
    chunking_blur: int | None = None
    scale_chunking_size: bool = True
    scale_chunking_blur: bool = True


@dataclass(frozen=True)
class GenerationRequest:
    """One invocation: the checkpoint and every parameter, defaults already applied."""

    checkpoint: Checkpoint
    prompt: str = ""
    negative_prompt: str = ""
    # None: the input image's size, else the checkpoint's.
    width: int | None = None
    height: int | None = None
    # None: the Planner draws one and records it in the plan.
    seed: int | None = None
    samples: int = 1
    num_inference_steps: int = 40
    guidance_scale: float = 7.5
    scheduler: str | None = None
    # The model's size (None: the checkpoint's): a canvas larger than it is denoised in windows of
    # it, moved by chunking_size px (None: size / 8; 0: the canvas at once), their borders
    # feathered over chunking_blur px, with multi_scheduler (None: scheduler).
    size: int | None = None
    chunking_size: int | None = None
    chunking_blur: int | None = None
    multi_scheduler: str | None = None
    image: InputImage | None = None
    # None: 0.8 for image-to-image, the whole schedule for inpainting.
    strength: float | None = None
    # Inpainting: the mask (white repaints; black with ``invert_mask``), and the inpainter's
    # checkpoint (None: the base checkpoint inpaints).
    mask: InputImage | None = None
    invert_mask: bool = False
    inpainter: Checkpoint | None = None
    # How ``image`` and ``mask`` go on the canvas (deployments/canvas.py).
    fit: str | None = None
    anchor: str | None = None
    scale_to_model_size: bool = False
    # Remove the background of ``image`` (``fill_background``: then inpaint it), or without an
    # image, of the outputs.
    remove_background: bool = False
    fill_background: bool = False
    upscale: Upscaling | None = None
    # Boxes painted in order, later over earlier; what none covers is outpainted with the
    # invocation's prompt (none: the whole canvas is one node).
    nodes: tuple[Node, ...] = ()
    # A VAE file (relative to the vae folder) in place of the checkpoint's own.
    vae: str | None = None
    # Applied for this request only: LoRA and LyCORIS with weights, textual inversions.
    adapters: tuple[Adapter, ...] = ()
    inversions: tuple[str, ...] = ()
    controlnet: ControlNet | None = None
    # The refiner's checkpoint (None: no refining) and its pass over every output.
    refiner: Checkpoint | None = None
    refiner_strength: float = 0.3
    refiner_guidance_scale: float = 5.0
    refiner_aesthetic_score: float = 6.0
    refiner_negative_aesthetic_score: float = 2.5
    # The precision setting (None: the device's best) and the safe setting (check outputs).
    precision: str | None = None
    safe: bool = False
    # Decode and show the image every this many steps while it runs (None: never; costs a VAE pass).
    intermediate_steps: int | None = None
    # The preconfigured model's parts whose features come later (refiner, LoRA, ...): recorded.
    model: dict[str, Any] | None = None
