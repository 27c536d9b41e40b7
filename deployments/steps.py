"""The kinds of plan step: what each one asks of its role, and where its input images come from.

Pure data (no Ray, no torch). A step names the role that runs it (``role``), the model that role
keeps loaded for it (``model_id``), the images it reads (``sources``: the request's, or earlier
steps' outputs) and how they are made ready for the role (``prepare``, run by the Planner).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from PIL import Image

from deployments.canvas import fit_image, flatten, repaint_mask
from deployments.control import ANNOTATOR_FILES, control_image
from deployments.request import Adapter, InputImage

# Pixels per latent in every SD 1.x/2.x/XL VAE: the sides a pipeline runs at are multiples of it.
LATENT_SCALE = 8
# Schedulers whose loop runs two model evaluations per step, each reported as a step.
SECOND_ORDER_SCHEDULERS = frozenset({"heun", "dpmd", "adpmd", "dpmsde"})


@dataclass(frozen=True)
class ModelKey:
    """What a role keeps loaded for a step: the checkpoint and the weights loaded with it.

    Encoded as the multiplexing model id: replicas cache and route by it, so two requests that
    differ only in their VAE never share a loaded pipeline."""

    checkpoint: str
    vae: str | None = None
    controlnet: str | None = None
    # "full" | "half" | None (the device's best): the dtype the weights are loaded in.
    precision: str | None = None
    # The ControlNet kind whose annotator makes the control image on the role (deployments/annotators.py).
    annotator: str | None = None

    # "//" is never in a file name find_model accepts (normalised relative POSIX paths).
    PARTS: ClassVar[tuple[str, ...]] = ("vae", "controlnet", "precision", "annotator")

    def encode(self) -> str:
        parts = [f"//{name}={getattr(self, name)}" for name in self.PARTS if getattr(self, name) is not None]
        return self.checkpoint + "".join(parts)

    @classmethod
    def decode(cls, model_id: str) -> ModelKey:
        checkpoint, *parts = model_id.split("//")
        named = dict(part.split("=", 1) for part in parts)
        return cls(checkpoint, **{name: named.get(name) for name in cls.PARTS})


@dataclass(frozen=True)
class StepOutputs:
    """An image an earlier step of the same plan produced (by the step's index and the image's)."""

    step: int
    index: int = 0


@dataclass(frozen=True)
class EachOutput:
    """Every output of an earlier step, one per seed of the step that reads them (sample i
    from output i): a pass over each sample, such as re-diffusing upscaled images."""

    step: int


# Where a step's input images come from.
ImageSource = InputImage | StepOutputs


@dataclass(frozen=True)
class Origin:
    """Where a step's values come from in the request, so that a check can name the field the
    caller sets: ``where`` the part of the request ("upscaling pass 2 of 2"), ``fields`` a step
    attribute's request field where the names differ (``strength`` -> ``nodes[0].strength``)."""

    where: str = ""
    fields: tuple[tuple[str, str], ...] = ()

    def field(self, name: str) -> str:
        return dict(self.fields).get(name, name)


def source_summary(source: ImageSource | EachOutput | None) -> dict[str, Any] | None:
    if source is None:
        return None
    if isinstance(source, StepOutputs):
        return {"step": source.step, "index": source.index}
    if isinstance(source, EachOutput):
        return {"step": source.step, "each": True}
    return source.summary()


@dataclass(frozen=True)
class _Denoise:
    """What every denoising step has: the checkpoint, the prompts, the canvas and the schedule."""

    checkpoint: str
    prompt: str
    negative_prompt: str
    width: int
    height: int
    num_inference_steps: int
    guidance_scale: float
    scheduler: str | None
    seeds: tuple[int, ...]
    source: ImageSource | EachOutput | None = None
    # Of the schedule, the part that runs (img2img); None: all of it.
    strength: float | None = None
    intermediate_steps: int | None = None
    # How an input image goes on the canvas (deployments/canvas.py).
    fit: str | None = None
    anchor: str | None = None
    # Weights that stay loaded with the checkpoint (part of the model id): a VAE in place of its own.
    vae: str | None = None
    # Applied to the loaded model for this step only, then removed.
    adapters: tuple[Adapter, ...] = ()
    inversions: tuple[str, ...] = ()
    # ControlNet: its kind and file (loaded with the checkpoint), its image, and how it is used.
    controlnet: str | None = None
    controlnet_model: str | None = None
    # The control image; ``EachOutput`` (the same as ``source``): each source image is its own.
    control: ImageSource | EachOutput | None = None
    conditioning_scale: float = 1.0
    process_control_image: bool = True
    invert_control_image: bool = False
    # scale_to_model_size: a canvas whose smaller side is under this size is diffused scaled up
    # to it, and the outputs scaled back down to the canvas.
    model_size: int | None = None
    # Chunked denoising (deployments/multidiffusion.py) of a canvas larger than ``window`` (the
    # model's size): windows moved by chunking_size px (0: the canvas at once), their borders
    # feathered over chunking_blur px, stepped by multi_scheduler (None: scheduler).
    window: int | None = None
    chunking_size: int = 0
    chunking_blur: int = 0
    multi_scheduler: str | None = None
    precision: str | None = None
    # The safety checker looks at this step's outputs (the plan's last step, with the safe setting).
    safe: bool = False
    # For messages only: not part of the work, not recorded with the plan.
    origin: Origin = Origin()

    kind: ClassVar[str]
    role: str = "base"

    @property
    def model_id(self) -> str:
        """Which loaded model serves this step (the multiplexing key replicas cache by)."""
        return ModelKey(self.checkpoint, self.vae, self.controlnet_model, self.precision, self.annotator).encode()

    @property
    def annotator(self) -> str | None:
        """The kind whose annotator the role runs on the control image (None: it arrives ready)."""
        annotated = self.controlnet in ANNOTATOR_FILES and self.process_control_image
        return self.controlnet if annotated else None

    @property
    def expected_steps(self) -> int:
        """Denoising-loop iterations, as the pipeline will report them."""
        steps = self.num_inference_steps
        if self.strength is not None:
            steps = min(int(steps * self.strength), steps)
        if self.scheduler in SECOND_ORDER_SCHEDULERS:
            steps = 2 * steps - 1
        return steps

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def chunked(self) -> bool:
        """Denoised in windows: the canvas is larger than the model's size and chunking is on."""
        if self.window is None or not self.chunking_size:
            return False
        return max(self.diffusion_size) > self.window

    @property
    def diffusion_size(self) -> tuple[int, int]:
        """The size the pipeline runs at: the canvas, or the canvas scaled up to the model's size."""
        smaller = min(self.width, self.height)
        if self.model_size is None or smaller >= self.model_size:
            return self.size
        scale = self.model_size / smaller
        return _multiple_of_8(self.width * scale), _multiple_of_8(self.height * scale)

    def _scaled(self, image: Image.Image, resample: Image.Resampling = Image.Resampling.LANCZOS) -> Image.Image:
        """An image on the canvas, at the size the pipeline runs at."""
        size = self.diffusion_size
        return image if image.size == size else image.resize(size, resample)

    @property
    def sources(self) -> tuple[ImageSource, ...]:
        """The images the step reads, in the order ``prepare`` takes them (the control image last)."""
        if isinstance(self.source, EachOutput):
            each = tuple(StepOutputs(self.source.step, index) for index in range(len(self.seeds)))
            own_control = self.control is not None and not isinstance(self.control, EachOutput)
            return each + ((self.control,) if own_control else ())  # type: ignore[return-value]
        return tuple(source for source in (self.source, self.control) if source is not None)  # type: ignore[misc]

    @property
    def control_count(self) -> int:
        """How many control images end the role's inputs: one per source image when each is its
        own, else one (or none)."""
        if isinstance(self.control, EachOutput):
            return len(self.seeds)
        return 0 if self.control is None else 1

    @property
    def per_image(self) -> bool:
        """One source image per seed (else one source, or none, for every seed)."""
        return isinstance(self.source, EachOutput)

    def _control(self, image: Image.Image) -> Image.Image:
        """The control image on the canvas; the role gets it after the step's other inputs."""
        fitted = self._scaled(flatten(fit_image(image, self.size, self.fit, self.anchor)))
        return control_image(str(self.controlnet), fitted, self.process_control_image, self.invert_control_image)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind}
        data.update({name: getattr(self, name) for name in self.__dataclass_fields__ if name != "origin"})
        data["seeds"] = list(self.seeds)
        data["adapters"] = [asdict(adapter) for adapter in self.adapters]
        data["inversions"] = list(self.inversions)
        for name in data:
            if isinstance(data[name], (InputImage, StepOutputs, EachOutput)):
                data[name] = source_summary(data[name])
        return data


@dataclass(frozen=True)
class Diffuse(_Denoise):
    """Text-to-image, or image-to-image from ``source`` with ``strength``: one batch of ``seeds``.

    The role gets ``[]``, or ``[the source fitted onto the canvas]``, then the control image if any."""

    kind: ClassVar[str] = "diffuse"

    def prepare(self, images: list[Image.Image]) -> list[Image.Image]:
        # The control images: each source image itself (EachOutput), or its own, read last.
        each = isinstance(self.control, EachOutput)
        own = self.control is not None and not each
        sources = images[:-1] if own else images
        controls = images if each else images[-1:] if own else []
        fitted = [self._scaled(flatten(fit_image(image, self.size, self.fit, self.anchor))) for image in sources]
        return fitted + [self._control(image) for image in controls]


@dataclass(frozen=True)
class Inpaint(_Denoise):
    """Repaint the masked part of ``source`` (and what it leaves uncovered on the canvas); the rest
    of it comes back unchanged. Runs on the inpainter's checkpoint (role "inpainter") when one is
    configured, else on the base checkpoint.

    The role gets ``[the source fitted onto the canvas, the repaint mask (white: repaint)]``, then
    the control image if any; with one source per seed (``EachOutput``: outpainting a composed
    canvas), every source, then every repaint mask (their transparent pixels)."""

    kind: ClassVar[str] = "inpaint"

    mask: ImageSource | None = None
    invert_mask: bool = False

    @property
    def sources(self) -> tuple[ImageSource, ...]:
        if self.per_image:
            return super().sources
        return tuple(source for source in (self.source, self.mask, self.control) if source is not None)

    def prepare(self, images: list[Image.Image]) -> list[Image.Image]:
        if self.per_image:
            fitted = [fit_image(image, self.size, self.fit, self.anchor) for image in images]
            repaints = [repaint_mask(image, None, self.invert_mask) for image in fitted]
            return [self._scaled(flatten(image)) for image in fitted] + [
                self._scaled(repaint, Image.Resampling.NEAREST) for repaint in repaints
            ]
        control = [self._control(images.pop())] if self.control is not None else []
        fitted = fit_image(images[0], self.size, self.fit, self.anchor)
        mask = fit_image(images[1], self.size, self.fit, self.anchor) if len(images) > 1 else None
        repaint = self._scaled(repaint_mask(fitted, mask, self.invert_mask), Image.Resampling.NEAREST)
        return [self._scaled(flatten(fitted)), repaint, *control]


@dataclass(frozen=True)
class Refine(_Denoise):
    """The refiner's image-to-image pass over each output of step ``after`` (sample i with seed i),
    with SDXL's aesthetic scores. Its own checkpoint, without the base's VAE or adapters.

    The role gets the images to refine, one per seed."""

    kind: ClassVar[str] = "refine"
    role: str = "refiner"

    after: int = 0
    aesthetic_score: float = 6.0
    negative_aesthetic_score: float = 2.5

    @property
    def sources(self) -> tuple[ImageSource, ...]:
        return tuple(StepOutputs(self.after, index) for index in range(len(self.seeds)))

    def prepare(self, images: list[Image.Image]) -> list[Image.Image]:
        return [flatten(image.convert("RGBA")) for image in images]  # a composed canvas may be transparent


# The denoising kinds of step (the image kinds are in deployments/image_steps.py).
Denoise = Diffuse | Inpaint | Refine


def _multiple_of_8(value: float) -> int:
    return max(LATENT_SCALE, round(value / LATENT_SCALE) * LATENT_SCALE)
