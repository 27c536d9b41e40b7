"""Bodies of POST and PATCH /api/models: a preconfigured model and its default configuration."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator
from pydantic_core import PydanticCustomError

from serve_app.field_types import Dimension, GuidanceScale, Prompt, Samples, Scheduler, Score, Steps, Strength
from serve_app.schemas import Files, WeightedFiles

# No path separators or dots: the name appears in URLs (/api/models/{name}) and never as a file.
ModelName = Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[^/\\.]+$")]
Size = Annotated[int, Field(ge=0, le=4096)]


# The invocation defaults a model can carry (Enfugue's DiffusionModelDefaultConfiguration keys).
DEFAULT_CONFIG_KEYS = (
    "width", "height", "num_inference_steps", "guidance_scale", "strength", "samples",
    "chunking_size", "chunking_blur", "refiner_strength", "refiner_guidance_scale",
    "refiner_aesthetic_score", "refiner_negative_aesthetic_score",
)  # fmt: skip
PARTS = ("refiner", "refiner_size", "inpainter", "inpainter_size", "scheduler", "vae", "lora", "lycoris", "inversion")


class ModelFields(BaseModel):
    """Every field of a model; all optional here, POST requires name and checkpoint below."""

    model_config = ConfigDict(extra="forbid")

    name: ModelName | None = None
    checkpoint: StrictStr | None = None
    size: Dimension | None = None
    prompt: Prompt | None = None
    negative_prompt: Prompt | None = None
    refiner: StrictStr | None = None
    refiner_size: Dimension | None = None
    inpainter: StrictStr | None = None
    inpainter_size: Dimension | None = None
    scheduler: Scheduler | None = None
    vae: StrictStr | None = None
    lora: WeightedFiles | None = None
    lycoris: WeightedFiles | None = None
    inversion: Files | None = None
    # default configuration
    width: Dimension | None = None
    height: Dimension | None = None
    num_inference_steps: Steps | None = None
    guidance_scale: GuidanceScale | None = None
    strength: Strength | None = None
    samples: Samples | None = None
    chunking_size: Size | None = None
    chunking_blur: Size | None = None
    refiner_strength: Strength | None = None
    refiner_guidance_scale: GuidanceScale | None = None
    refiner_aesthetic_score: Score | None = None
    refiner_negative_aesthetic_score: Score | None = None

    @model_validator(mode="after")
    def _sizes_need_their_model(self) -> ModelFields:
        for part in ("refiner", "inpainter"):
            if getattr(self, f"{part}_size") is not None and getattr(self, part) is None:
                raise PydanticCustomError("part", "{part}_size: given without {part}", {"part": part})
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and value % 8:
                raise PydanticCustomError("multiple_of_8", "{name}: must be a multiple of 8", {"name": name})
        return self

    def config(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in DEFAULT_CONFIG_KEYS if getattr(self, key) is not None}


class ModelCreate(ModelFields):
    @model_validator(mode="after")
    def _required(self) -> ModelCreate:
        for name in ("name", "checkpoint"):
            if getattr(self, name) is None:
                raise PydanticCustomError("missing", "{name}: required", {"name": name})
        return self
