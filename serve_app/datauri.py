"""Image inputs: data URIs decoded and checked. Pillow only; a leaf module every layer may use."""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings

from PIL import Image

# Larger inputs are refused from their header, before decoding: no diffusion pass takes them.
MAX_INPUT_SIDE = 4096

_DATA_URI = re.compile(r"^data:(?P<mime>[^;,]*)(?P<params>(?:;[^;,]*)*),(?P<payload>.*)$", re.DOTALL)


class ImageInputError(ValueError):
    """A request image that cannot be used; the message says why (without the field name)."""


def data_uri_payload(value: str) -> bytes:
    """The encoded file inside a ``data:image/...;base64,...`` URI (not yet decoded as an image)."""
    match = _DATA_URI.match(value)
    if match is None:
        raise ImageInputError("is not a data URI; expected data:image/<type>;base64,<data>")
    if ";base64" not in match["params"]:
        raise ImageInputError("must be base64-encoded (data:image/<type>;base64,<data>)")
    try:
        return base64.b64decode(match["payload"], validate=True)
    except (binascii.Error, ValueError) as error:
        raise ImageInputError("is not valid base64") from error


def open_image(payload: bytes) -> Image.Image:
    """The image in an encoded file, fully decoded (truncated files fail here), in RGB, or RGBA
    when it has an alpha channel."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(payload))
            width, height = image.size
            if max(width, height) > MAX_INPUT_SIDE:
                raise ImageInputError(f"is {width}x{height}; at most {MAX_INPUT_SIDE} pixels a side are allowed")
            image.load()
    except ImageInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageInputError("is too large to decode") from error
    except Exception as error:  # Pillow raises many types for corrupt data
        raise ImageInputError("does not contain an image Pillow can read (PNG, JPEG, WebP, ...)") from error
    if _has_alpha(image):  # transparent pixels are painted (outpainting): keep them
        return image.convert("RGBA")
    return image if image.mode == "RGB" else image.convert("RGB")


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def has_transparency(payload: bytes) -> bool:
    """Whether the image in ``payload`` has a pixel that is not fully opaque (decoded only when
    its header says it has an alpha channel)."""
    header = Image.open(io.BytesIO(payload))
    if not _has_alpha(header):
        return False
    alpha = open_image(payload).getchannel("A")
    return alpha.getextrema()[0] < 255


def decode_data_uri(value: str) -> Image.Image:
    return open_image(data_uri_payload(value))
