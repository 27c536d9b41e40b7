"""Request bodies, validated up front. Messages name the field and what is allowed."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictStr,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from serve_app.datauri import ImageInputError, data_uri_payload, open_image
from serve_app.field_types import (
    CONTROLNETS,
    MAX_PROMPT_LENGTH,
    MAX_SAMPLES,
    MAX_SIZE,
    MAX_STEPS,
    MIN_SIZE,
    Anchor,
    Chunking,
    ControlNetKind,
    Dimension,
    Fit,
    GuidanceScale,
    Prompt,
    Samples,
    Scheduler,
    Score,
    Steps,
    Strength,
)
from serve_app.node_schemas import Nodes
from serve_app.upscale_schemas import UpscaleFields

# The settings naming each kind's ControlNet file (None: Enfugue's file name, deployments/control.py);
# the SDXL ones exist for the kinds Enfugue had SDXL ControlNets for.
CONTROLNET_SETTINGS: tuple[str, ...] = (*CONTROLNETS, "canny_xl", "depth_xl", "pidi_xl", "pose_xl")

MIN_PIXELS, MAX_PIXELS = MIN_SIZE * MIN_SIZE, MAX_SIZE * MAX_SIZE
MAX_SEED = 2**32 - 1

# Enfugue 0.3 renamed much of the payload; we implement the seed's (0.2) names.
ENFUGUE_03_ONLY = frozenset({"layers", "prompts", "tiling_size", "tiling_stride", "tiling_mask_type"})

# Validation context key: {field: (payload, size)} of the image fields already decoded.
DECODED_IMAGES = "decoded_images"
IMAGE_FIELDS = ("image", "mask", "control_image")

Weight = Annotated[float, Field(ge=-10, le=10)]


class WeightedFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: StrictStr
    weight: Weight = 1.0


class File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: StrictStr


# LoRA and LyCORIS: "file", {"model", "weight"} or a list of these; inversions without weights.
WeightedFiles = StrictStr | WeightedFile | list[StrictStr | WeightedFile]
Files = StrictStr | File | list[StrictStr | File]


def weighted(files: WeightedFiles | Files | None) -> list[dict[str, Any]]:
    """ "file", {"model", "weight"} or a list of these, as a list of {"model", "weight"}."""
    if files is None:
        return []
    items = files if isinstance(files, list) else [files]
    return [
        {"model": item, "weight": 1.0} if isinstance(item, str) else {"weight": 1.0, **item.model_dump()}
        for item in items
    ]


class InvokeRequest(UpscaleFields):
    """The body of ``POST /api/invoke`` (the seed's pipeline, invocation and upscaling parameters)."""

    model_config = ConfigDict(extra="forbid")

    model: StrictStr | None = None
    # A checkpoint file and a preconfigured model may share a name; this says which is meant.
    model_type: Literal["checkpoint", "model"] | None = None
    prompt: Prompt = ""
    negative_prompt: Prompt = ""
    width: Dimension | None = None
    height: Dimension | None = None
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] | None = None
    samples: Samples = 1
    num_inference_steps: Steps = 40
    guidance_scale: GuidanceScale = 7.5
    scheduler: Scheduler | None = None
    # The model's size (its windows when chunked; None: the checkpoint's), and chunked denoising
    # of a canvas larger than it: windows moved by chunking_size px (0: the canvas at once),
    # their borders feathered over chunking_blur px (None: size / 8), with multi_scheduler.
    size: Dimension | None = None
    chunking_size: Chunking | None = None
    chunking_blur: Chunking | None = None
    multi_scheduler: Scheduler | None = None
    image: StrictStr | None = None
    # None: 0.8 for image-to-image, 1 (the whole schedule) for inpainting.
    strength: Strength | None = None
    mask: StrictStr | None = None
    invert_mask: StrictBool = False
    fit: Fit | None = None
    anchor: Anchor | None = None
    # A canvas smaller than the model's size is diffused scaled up (its smaller side at the
    # model's size), then scaled back down: slower, often better.
    scale_to_model_size: StrictBool = False
    # Boxes of the canvas with their own prompts and images (serve_app/node_schemas.py).
    nodes: Nodes | None = None
    # Remove the background of `image` (with `fill_background`, then paint it anew), or, without
    # an image, of the outputs (they come back with transparency).
    remove_background: StrictBool = False
    fill_background: StrictBool = False
    inpainter: StrictStr | None = None
    inpainter_size: Dimension | None = None
    # A file in the vae folder, or ema|mse|xl|xl16 (Enfugue's names for the files it downloaded).
    vae: StrictStr | None = None
    lora: WeightedFiles | None = None
    lycoris: WeightedFiles | None = None
    inversion: Files | None = None
    # The SDXL refiner: an image-to-image pass over each output in its own deployment. None:
    # the preconfigured model's, else Enfugue's defaults (0.3, 5, 6, 2.5).
    refiner: StrictStr | None = None
    refiner_size: Dimension | None = None
    refiner_strength: Strength | None = None
    refiner_guidance_scale: GuidanceScale | None = None
    refiner_aesthetic_score: Score | None = None
    refiner_negative_aesthetic_score: Score | None = None
    # ControlNet: the kind, its control image (else `image`), its weight, and whether the image is
    # made into the kind's control image here (else it is one already; `invert_control_image`
    # turns black lines on white into white on black).
    controlnet: ControlNetKind | None = None
    control_image: StrictStr | None = None
    conditioning_scale: Annotated[float, Field(ge=0, le=2)] = 1.0
    process_control_image: StrictBool = True
    invert_control_image: StrictBool = False

    # The decoded image fields: their encoded files and sizes (decoded once, here).
    _decoded: dict[str, tuple[bytes, tuple[int, int]]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _refuse_unbuilt(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise PydanticCustomError("body", "the body must be a JSON object")
        for key in data:
            if key in ENFUGUE_03_ONLY:
                raise PydanticCustomError(
                    "not_supported", "{field}: not supported (an Enfugue 0.3 parameter)", {"field": key}
                )
        return data

    @field_validator("chunking_size", "chunking_blur")
    @classmethod
    def _chunking_multiple_of_8(cls, value: int | None) -> int | None:
        if value is not None and value % 8:
            raise PydanticCustomError(
                "multiple_of_8", "must be a multiple of 8 (chunking_size 0 diffuses the canvas at once), got {value}",
                {"value": value},
            )  # fmt: skip
        return value

    @field_validator("width", "height", "size", "inpainter_size", "refiner_size")
    @classmethod
    def _multiple_of_8(cls, value: int | None) -> int | None:
        if value is not None and value % 8:
            raise PydanticCustomError(
                "multiple_of_8", "must be a multiple of 8 between {low} and {high}, got {value}",
                {"low": MIN_SIZE, "high": MAX_SIZE, "value": value},
            )  # fmt: skip
        return value

    @model_validator(mode="after")
    def _images_consistent(self, info: ValidationInfo) -> InvokeRequest:
        # Validating again (defaults merged in) passes the images decoded the first time.
        decoded = dict((info.context or {}).get(DECODED_IMAGES, {}))
        for name in IMAGE_FIELDS:
            value = getattr(self, name)
            if value is not None and name not in decoded:
                try:
                    payload = data_uri_payload(value)
                    decoded[name] = payload, open_image(payload).size
                except ImageInputError as error:
                    raise PydanticCustomError(
                        "image", "{field}: {reason}", {"field": name, "reason": str(error)}
                    ) from error
        self._decoded = {name: decoded[name] for name in IMAGE_FIELDS if getattr(self, name) is not None}
        if self.nodes is not None:
            given = [name for name in (*IMAGE_FIELDS, "controlnet") if getattr(self, name) is not None]
            if given or self.remove_background:
                raise PydanticCustomError(
                    "nodes", "{field}: with nodes, give it to the nodes (a node's own image, mask, remove_background)",
                    {"field": given[0] if given else "remove_background"},
                )  # fmt: skip
        if self.mask is not None and self.image is None:
            raise PydanticCustomError("mask", "mask: needs an `image` to inpaint")
        if self.fill_background and not (self.remove_background and self.image is not None):
            raise PydanticCustomError(
                "fill_background",
                "fill_background: needs remove_background true and an `image` whose background it fills",
            )
        self._check_controlnet()
        if "image" not in self._decoded:
            return self
        width, height = self._decoded["image"][1]
        if "mask" in self._decoded and self._decoded["mask"][1] != (width, height):
            raise PydanticCustomError(
                "mask", "mask: is {mask} but image is {image}; they must be the same size",
                {"mask": "x".join(map(str, self._decoded["mask"][1])), "image": f"{width}x{height}"},
            )  # fmt: skip
        for name, given, actual in (("width", self.width, width), ("height", self.height, height)):
            if given is None and actual % 8:
                raise PydanticCustomError(
                    "image_size", "image: its {name} {actual} is not a multiple of 8; resize it or pass {name}",
                    {"name": name, "actual": actual},
                )  # fmt: skip
        strength = self.strength if self.strength is not None else (1.0 if self.mask is not None else 0.8)
        if int(self.num_inference_steps * strength) < 1:
            raise PydanticCustomError(
                "strength", "strength: {strength} x num_inference_steps {steps} leaves no step to run; raise either",
                {"strength": strength, "steps": self.num_inference_steps},
            )  # fmt: skip
        return self

    def _check_controlnet(self) -> None:
        if self.controlnet is None:
            if self.control_image is not None:
                raise PydanticCustomError(
                    "controlnet", "control_image: needs `controlnet` ({kinds})", {"kinds": "|".join(CONTROLNETS)}
                )
            return
        if self.control_image is None and self.image is None:
            raise PydanticCustomError("controlnet", "controlnet: needs a `control_image` (or an `image`)")
        if self.controlnet == "inpaint" and self.mask is None:
            raise PydanticCustomError("controlnet", "controlnet: inpaint needs a `mask`")

    def summary(self) -> dict[str, Any]:
        """The body as stored with its invocation: given fields only, images replaced by their sizes."""
        data = self.model_dump(exclude_unset=True)
        for name, (_, (width, height)) in self._decoded.items():
            data[name] = {"width": width, "height": height}
        return data

    def image_file(self, name: str = "image") -> tuple[bytes, tuple[int, int]] | None:
        """An image field decoded: its encoded file and its size."""
        return self._decoded.get(name)

    def decoded_images(self) -> dict[str, Any]:
        """The validation context that spares decoding the images again."""
        return {DECODED_IMAGES: self._decoded}


# Settings whose null means "off / automatic"; for the others null is not a value.
NULLABLE_SETTINGS = frozenset(
    {"switch_mode", "cache_mode", "precision", "intermediate_steps", "default_checkpoint", *CONTROLNET_SETTINGS}
)


class _Settings(BaseModel):
    """The body of ``POST /api/settings``: only the keys given change."""

    model_config = ConfigDict(extra="forbid")

    safe: StrictBool | None = None
    auth: StrictBool | None = None
    max_queued_invocations: Annotated[int, Field(ge=1, le=10_000)] | None = None
    max_queued_downloads: Annotated[int, Field(ge=1, le=10_000)] | None = None
    max_concurrent_downloads: Annotated[int, Field(ge=1, le=64)] | None = None
    switch_mode: Literal["offload", "unload"] | None = None
    cache_mode: Literal["xl", "always"] | None = None
    precision: Literal["full", "half"] | None = None
    intermediate_steps: Annotated[int, Field(ge=1, le=1000)] | None = None
    default_checkpoint: StrictStr | None = None
    max_queued_invocations_per_user: Annotated[int, Field(ge=1, le=10_000)] | None = None
    max_invocation_attempts: Annotated[int, Field(ge=1, le=10)] | None = None
    max_prompt_length: Annotated[int, Field(ge=1, le=MAX_PROMPT_LENGTH)] | None = None
    max_pixels_per_step: Annotated[int, Field(ge=MIN_PIXELS, le=MAX_PIXELS * MAX_SAMPLES)] | None = None
    max_pixel_steps: Annotated[int, Field(ge=MIN_PIXELS, le=MAX_PIXELS * MAX_SAMPLES * MAX_STEPS)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_only_where_meaningful(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise PydanticCustomError("body", "the body must be a JSON object")
        for key, value in data.items():
            if value is None and key in cls.model_fields and key not in NULLABLE_SETTINGS:
                raise PydanticCustomError("null", "{field}: may not be null", {"field": key})
        return data

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


# With a ControlNet file name per kind (a file in the controlnet folder; null: Enfugue's name).
SettingsUpdate = create_model(
    "SettingsUpdate",
    __base__=_Settings,
    __doc__=_Settings.__doc__,
    **{key: (StrictStr | None, None) for key in CONTROLNET_SETTINGS},  # type: ignore[call-overload]
)
