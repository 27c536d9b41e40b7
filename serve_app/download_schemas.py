"""Bodies of the download routes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

Url = Annotated[StrictStr, Field(min_length=1, max_length=4096)]


class DownloadRequest(BaseModel):
    """POST /api/download: fetch ``url`` into the ``type`` folder as ``filename``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal[
        "checkpoint", "lora", "lycoris", "inversion", "vae", "controlnet", "upscaler", "background", "annotators"
    ]
    url: Url
    filename: Annotated[StrictStr, Field(min_length=1, max_length=255)]
    overwrite: StrictBool = False


class DownloadCancel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url
