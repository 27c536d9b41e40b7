"""The value types request bodies share: sizes, steps, scales, prompts, schedulers, with their limits."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field, StrictStr

Scheduler = Literal[
    "ddim", "ddpm", "deis", "dpmsm", "dpmss", "heun", "dpmd",
    "adpmd", "dpmsde", "unipc", "lmsd", "pndm", "eds", "eads",
]  # fmt: skip
SCHEDULERS: tuple[str, ...] = get_args(Scheduler)

# How an input image goes on the canvas (deployments/canvas.py).
Fit = Literal["actual", "stretch", "cover", "contain"]
Anchor = Literal[
    "top-left", "top-center", "top-right", "center-left", "center-center", "center-right",
    "bottom-left", "bottom-center", "bottom-right",
]  # fmt: skip

MIN_SIZE, MAX_SIZE = 64, 4096
# Steps stop below 1000: the schedulers' "leading" spacing with an offset of one reaches
# timestep 1000 at 1000 steps, past the end of the 1000-step training schedule.
MAX_STEPS = 999
MAX_SAMPLES = 16
# No prompt is stored longer than this, whatever the max_prompt_length setting says.
MAX_PROMPT_LENGTH = 10_000

Dimension = Annotated[int, Field(ge=MIN_SIZE, le=MAX_SIZE)]
# Chunked denoising: how far windows move, and how wide their feathered borders are (px).
Chunking = Annotated[int, Field(ge=0, le=MAX_SIZE)]
Steps = Annotated[int, Field(ge=1, le=MAX_STEPS)]
GuidanceScale = Annotated[float, Field(ge=0, le=100)]
Strength = Annotated[float, Field(ge=0, le=1)]
Samples = Annotated[int, Field(ge=1, le=MAX_SAMPLES)]
Prompt = Annotated[StrictStr, Field(max_length=MAX_PROMPT_LENGTH)]
Score = Annotated[float, Field(ge=0, le=10)]

# The ControlNet kinds (deployments/control.py makes their control images).
ControlNetKind = Literal[
    "canny", "mlsd", "hed", "scribble", "tile", "inpaint", "depth", "normal", "pose", "pidi", "line", "anime",
]  # fmt: skip
CONTROLNETS: tuple[str, ...] = get_args(ControlNetKind)
