"""Canvas nodes of ``POST /api/invoke`` (the seed's "Addendum: Nodes").

A node is a box on the canvas (``x``, ``y``, ``w``, ``h`` in pixels) with its own prompt and
image parameters; what a node leaves out, the invocation's own values give. Nodes are painted in
the order given, later ones over earlier ones.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StrictBool, StrictStr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from serve_app.datauri import ImageInputError, data_uri_payload, open_image
from serve_app.field_types import MAX_SIZE, Anchor, Dimension, Fit, GuidanceScale, Prompt, Steps, Strength

MAX_NODES = 16
Position = Annotated[int, Field(ge=0, le=MAX_SIZE)]


class Node(BaseModel):
    model_config = ConfigDict(extra="forbid")

    x: Position
    y: Position
    w: Dimension
    h: Dimension
    # None: the invocation's value.
    prompt: Prompt | None = None
    negative_prompt: Prompt | None = None
    num_inference_steps: Steps | None = None
    guidance_scale: GuidanceScale | None = None
    strength: Strength | None = None
    image: StrictStr | None = None
    mask: StrictStr | None = None
    invert_mask: StrictBool = False
    fit: Fit | None = None
    anchor: Anchor | None = None
    remove_background: StrictBool = False
    fill_background: StrictBool = False

    # The decoded image fields: their encoded files and sizes.
    _decoded: dict[str, tuple[bytes, tuple[int, int]]] = PrivateAttr(default_factory=dict)

    @field_validator("x", "y", "w", "h")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise PydanticCustomError("multiple_of_8", "must be a multiple of 8, got {value}", {"value": value})
        return value

    @model_validator(mode="after")
    def _images(self) -> Node:
        for name in ("image", "mask"):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                payload = data_uri_payload(value)
                self._decoded[name] = payload, open_image(payload).size
            except ImageInputError as error:
                raise PydanticCustomError(
                    "image", "{field}: {reason}", {"field": name, "reason": str(error)}
                ) from error
        if self.mask is not None and self.image is None:
            raise PydanticCustomError("mask", "mask: needs an `image` to inpaint")
        if "mask" in self._decoded and self._decoded["mask"][1] != self._decoded["image"][1]:
            raise PydanticCustomError("mask", "mask: must be the size of the node's image")
        if self.fill_background and not (self.remove_background and self.image is not None):
            raise PydanticCustomError(
                "fill_background",
                "fill_background: needs remove_background true and an `image` whose background it fills",
            )
        return self

    def image_file(self, name: str) -> tuple[bytes, tuple[int, int]] | None:
        return self._decoded.get(name)


Nodes = Annotated[list[Node], Field(min_length=1, max_length=MAX_NODES)]
