"""Request bodies, validated up front. Messages name the field and what is allowed."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from serve_app.datauri import ImageInputError, data_uri_payload, open_image

Scheduler = Literal[
    "ddim", "ddpm", "deis", "dpmsm", "dpmss", "heun", "dpmd",
    "adpmd", "dpmsde", "unipc", "lmsd", "pndm", "eds", "eads",
]  # fmt: skip
SCHEDULERS: tuple[str, ...] = get_args(Scheduler)

MIN_SIZE, MAX_SIZE = 64, 4096
MIN_PIXELS, MAX_PIXELS = MIN_SIZE * MIN_SIZE, MAX_SIZE * MAX_SIZE
MAX_SEED = 2**32 - 1

# Parameters of the seed's /api/invoke that are not built yet: refused by name, never ignored.
NOT_SUPPORTED_YET = frozenset(
    {
        "chunking_size", "chunking_blur", "size", "refiner", "refiner_size",
        "inpainter", "inpainter_size", "lora", "lycoris", "inversion", "vae", "multi_scheduler",
        "mask", "invert_mask", "fit", "anchor", "control_image", "controlnet", "conditioning_scale",
        "process_control_image", "invert_control_image", "remove_background", "fill_background",
        "scale_to_model_size", "refiner_strength", "refiner_aesthetic_score",
        "refiner_negative_aesthetic_score", "refiner_guidance_scale", "outscale", "upscale",
        "upscale_iterative", "upscale_diffusion", "upscale_diffusion_steps",
        "upscale_diffusion_guidance_scale", "upscale_diffusion_strength", "upscale_diffusion_prompt",
        "upscale_diffusion_negative_prompt", "upscale_diffusion_controlnet",
        "upscale_diffusion_chunking_size", "upscale_diffusion_chunking_blur",
        "upscale_diffusion_scale_chunking_size", "upscale_diffusion_scale_chunking_blur", "nodes",
    }
)  # fmt: skip
# Enfugue 0.3 renamed much of the payload; we implement the seed's (0.2) names.
ENFUGUE_03_ONLY = frozenset({"layers", "prompts", "tiling_size", "tiling_stride", "tiling_mask_type"})

# Validation context key: the (payload, size) of an image field already decoded.
DECODED_IMAGE = "decoded_image"

# Steps stop below 1000: the schedulers' "leading" spacing with an offset of one reaches
# timestep 1000 at 1000 steps, past the end of the 1000-step training schedule.
MAX_STEPS = 999
MAX_SAMPLES = 16
# No prompt is stored longer than this, whatever the max_prompt_length setting says.
MAX_PROMPT_LENGTH = 10_000

Dimension = Annotated[int, Field(ge=MIN_SIZE, le=MAX_SIZE)]
Steps = Annotated[int, Field(ge=1, le=MAX_STEPS)]
GuidanceScale = Annotated[float, Field(ge=0, le=100)]
Strength = Annotated[float, Field(ge=0, le=1)]
Samples = Annotated[int, Field(ge=1, le=MAX_SAMPLES)]
Prompt = Annotated[StrictStr, Field(max_length=MAX_PROMPT_LENGTH)]


class InvokeRequest(BaseModel):
    """The body of ``POST /api/invoke`` (the seed's pipeline and invocation parameters)."""

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
    image: StrictStr | None = None
    strength: Strength = 0.8

    # The decoded ``image`` field: its encoded file and its size (decoded once, here).
    _image_payload: bytes | None = PrivateAttr(default=None)
    _image_size: tuple[int, int] | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _refuse_unbuilt(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise PydanticCustomError("body", "the body must be a JSON object")
        for key, value in data.items():
            # null or false asks for nothing; anything else would be silently ignored.
            if key in NOT_SUPPORTED_YET and value is not None and value is not False:
                raise PydanticCustomError("not_supported", "{field}: not supported yet", {"field": key})
            if key in ENFUGUE_03_ONLY:
                raise PydanticCustomError(
                    "not_supported", "{field}: not supported (an Enfugue 0.3 parameter)", {"field": key}
                )
        return {key: value for key, value in data.items() if key not in NOT_SUPPORTED_YET}

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, value: int | None) -> int | None:
        if value is not None and value % 8:
            raise PydanticCustomError(
                "multiple_of_8", "must be a multiple of 8 between {low} and {high}, got {value}",
                {"low": MIN_SIZE, "high": MAX_SIZE, "value": value},
            )  # fmt: skip
        return value

    @model_validator(mode="after")
    def _img2img_consistent(self, info: ValidationInfo) -> InvokeRequest:
        if self.image is None:
            return self
        # Validating again (defaults merged in) passes the image decoded the first time.
        decoded = (info.context or {}).get(DECODED_IMAGE)
        if decoded is None:
            try:
                payload = data_uri_payload(self.image)
                decoded = payload, open_image(payload).size
            except ImageInputError as error:
                raise PydanticCustomError("image", "image: {reason}", {"reason": str(error)}) from error
        self._image_payload, self._image_size = decoded
        width, height = self._image_size
        for name, given, actual in (("width", self.width, width), ("height", self.height, height)):
            if given is None and actual % 8:
                raise PydanticCustomError(
                    "image_size", "image: its {name} {actual} is not a multiple of 8; resize it or pass {name}",
                    {"name": name, "actual": actual},
                )  # fmt: skip
            if given is not None and given != actual:
                raise PydanticCustomError(
                    "image_size", "image: is {width}x{height} but {name} is {given}; `fit` is not supported yet",
                    {"width": width, "height": height, "name": name, "given": given},
                )  # fmt: skip
        if int(self.num_inference_steps * self.strength) < 1:
            raise PydanticCustomError(
                "strength", "strength: {strength} x num_inference_steps {steps} leaves no step to run; raise either",
                {"strength": self.strength, "steps": self.num_inference_steps},
            )  # fmt: skip
        return self

    def summary(self) -> dict[str, Any]:
        """The body as stored with its invocation: given fields only, the image replaced by its size."""
        data = self.model_dump(exclude_unset=True)
        if self._image_size is not None:
            data["image"] = {"width": self._image_size[0], "height": self._image_size[1]}
        return data

    def image_file(self) -> tuple[bytes, tuple[int, int]] | None:
        """The ``image`` field decoded: its encoded file and its size."""
        if self._image_payload is None or self._image_size is None:
            return None
        return self._image_payload, self._image_size

    def decoded_image(self) -> dict[str, Any]:
        """The validation context that spares decoding ``image`` again."""
        decoded = self.image_file()
        return {DECODED_IMAGE: decoded} if decoded is not None else {}


# Settings whose null means "off / automatic"; for the others null is not a value.
NULLABLE_SETTINGS = frozenset({"switch_mode", "cache_mode", "precision", "intermediate_steps", "default_checkpoint"})


class SettingsUpdate(BaseModel):
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
