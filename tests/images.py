"""Small helpers to make request images."""

from __future__ import annotations

import base64
import io

from PIL import Image


def data_uri(image: Image.Image, image_format: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return f"data:image/{image_format.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


def gradient(width: int, height: int) -> Image.Image:
    image = Image.new("RGB", (width, height))
    image.putdata([(x * 255 // width, y * 255 // height, 128) for y in range(height) for x in range(width)])
    return image


def png_bytes(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    gradient(width, height).save(buffer, format="PNG")
    return buffer.getvalue()


def decoded_size(uri: str) -> tuple[int, int]:
    """The size of the image a data URI holds."""
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).size
