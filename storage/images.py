"""PNG files of invocation outputs, with the generation metadata in text chunks."""

from __future__ import annotations

import io
import json
import re
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from storage.shared import SharedStorage

IMAGE_NAME = re.compile(r"^(?P<uuid>[0-9a-f]{32})_(?P<index>\d{1,4})\.png\Z")
INTERMEDIATE_NAME = re.compile(r"^(?P<uuid>[0-9a-f]{32})_(?P<step>\d{1,6})_(?P<index>\d{1,4})\.png\Z")


# In an invocation's images, an output the safety checker withheld (as Enfugue lists it).
FLAGGED = "nsfw"


def image_name(uuid: str, index: int) -> str:
    return f"{uuid}_{index}.png"


def intermediate_name(uuid: str, step: int, index: int) -> str:
    return f"{uuid}_{step}_{index}.png"


def encode_png(image: Image.Image, text: dict[str, Any]) -> bytes:
    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value if isinstance(value, str) else json.dumps(value))
    buffer = io.BytesIO()
    # Level 1: a few percent larger than the default 6, and faster to write (it is on the way
    # from the last denoising step to "completed").
    image.save(buffer, format="PNG", pnginfo=info, compress_level=1)
    return buffer.getvalue()


def write_png(storage: SharedStorage, folder: str, name: str, image: Image.Image, text: dict[str, Any]) -> None:
    """Write atomically, so a reader never sees half a file."""
    storage.write(folder, name, encode_png(image, text))
