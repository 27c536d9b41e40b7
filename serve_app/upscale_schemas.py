"""The upscaling fields of ``POST /api/invoke`` (the seed's flat ``upscale_*`` keys).

``outscale`` 2, 4, 8 or 16 upscales every output once by that amount, or, with
``upscale_iterative``, in passes of 2x; ``upscale`` names the method of each pass (a list shorter
than the passes repeats its last value, as do the per-pass ``upscale_diffusion_*`` lists).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictBool, field_validator, model_validator
from pydantic_core import PydanticCustomError

from serve_app.field_types import Chunking, ControlNetKind, GuidanceScale, Prompt, Steps, Strength

UpscaleMethod = Literal["esrgan", "esrganime", "gfpgan", "lanczos", "bilinear", "bicubic", "nearest"]
Outscale = Literal[1, 2, 4, 8, 16]
# At most one value per pass: 16x in 2x passes is four.
MAX_PASSES = 4


def PerPass(kind: Any) -> Any:  # noqa: N802 - reads as a type in the fields below
    """One value for every pass, or a list of them per pass."""
    return kind | Annotated[list[kind], Field(min_length=1, max_length=MAX_PASSES)]


# Values of the re-diffusion of each pass: given without `upscale_diffusion`, they would do nothing.
DIFFUSION_VALUES = (
    "upscale_diffusion_steps", "upscale_diffusion_guidance_scale", "upscale_diffusion_strength",
    "upscale_diffusion_prompt", "upscale_diffusion_negative_prompt", "upscale_diffusion_controlnet",
    "upscale_diffusion_chunking_size", "upscale_diffusion_chunking_blur",
)  # fmt: skip


class UpscaleFields(BaseModel):
    outscale: Outscale = 1
    # None: esrgan, Enfugue's default.
    upscale: PerPass(UpscaleMethod) | None = None
    upscale_iterative: StrictBool = False
    upscale_diffusion: StrictBool = False
    # None: Enfugue's defaults (100 steps, guidance 12, strength 0.2, the request's prompts).
    upscale_diffusion_steps: PerPass(Steps) | None = None
    upscale_diffusion_guidance_scale: PerPass(GuidanceScale) | None = None
    upscale_diffusion_strength: PerPass(Strength) | None = None
    upscale_diffusion_prompt: PerPass(Prompt) | None = None
    upscale_diffusion_negative_prompt: PerPass(Prompt) | None = None
    # Each pass's ControlNet (tile is the common one), its control image made from the pass's input.
    upscale_diffusion_controlnet: PerPass(ControlNetKind) | None = None
    # None: the invocation's chunking; doubled every pass (at most half the model's size) unless
    # the scale flags are false.
    upscale_diffusion_chunking_size: Chunking | None = None
    upscale_diffusion_chunking_blur: Chunking | None = None
    upscale_diffusion_scale_chunking_size: StrictBool = True
    upscale_diffusion_scale_chunking_blur: StrictBool = True

    @field_validator("upscale_diffusion_chunking_size", "upscale_diffusion_chunking_blur")
    @classmethod
    def _multiple_of_8(cls, value: int | None) -> int | None:
        if value is not None and value % 8:
            raise PydanticCustomError("multiple_of_8", "must be a multiple of 8, got {value}", {"value": value})
        return value

    @field_validator("upscale_diffusion_controlnet")
    @classmethod
    def _not_inpaint(cls, value: str | list[str] | None) -> str | list[str] | None:
        """A pass's ControlNet reads the pass's own input: inpaint would need a mask no pass has."""
        if value == "inpaint" or (isinstance(value, list) and "inpaint" in value):
            raise PydanticCustomError(
                "controlnet", "inpaint needs a mask, which an upscaling pass has not; choose another kind"
            )
        return value

    @model_validator(mode="after")
    def _upscale_consistent(self) -> UpscaleFields:
        if self.outscale == 1:
            given = [name for name in ("upscale", "upscale_iterative", "upscale_diffusion") if getattr(self, name)]
            if given:
                raise PydanticCustomError(
                    "upscale", "{field}: applies to upscaling; pass outscale 2, 4, 8 or 16", {"field": given[0]}
                )
        if not self.upscale_diffusion:
            given = [name for name in DIFFUSION_VALUES if getattr(self, name) is not None]
            if given:
                raise PydanticCustomError(
                    "upscale", "{field}: applies to re-diffusing upscaled images; pass upscale_diffusion true",
                    {"field": given[0]},
                )  # fmt: skip
        for name in ("upscale", *DIFFUSION_VALUES[:6]):
            value = getattr(self, name)
            if isinstance(value, list) and len(value) > self.upscale_passes:
                raise PydanticCustomError(
                    "upscale", "{field}: {count} values for {passes} upscaling pass(es); give at most one per pass",
                    {"field": name, "count": len(value), "passes": self.upscale_passes},
                )  # fmt: skip
        return self

    @property
    def upscale_passes(self) -> int:
        """How many upscaling passes ``outscale`` takes (0: none)."""
        if self.outscale == 1:
            return 0
        return self.outscale.bit_length() - 1 if self.upscale_iterative else 1
