"""Reading the image files a user hands ``kzoo predict``: any common format, any mode, as uint8 RGB.

Decoding goes through Pillow rather than ``tf.io.decode_image``, which reads only JPEG, PNG, GIF and BMP, keeps
16-bit PNGs as uint16 and returns 1, 2, 3 or 4 channels depending on the file.

What comes out, whatever went in:

* uint8 ``[H, W, 3]`` RGB;
* grayscale (and 1-bit) images: the gray value repeated in the three channels;
* 16-bit samples scaled to 8 bits (``round(v / 257)``, so 65535 reads 255), never clipped;
* palette images: the palette colours;
* CMYK (and YCbCr, LAB, ...) JPEGs and TIFFs: converted to RGB by Pillow;
* alpha **dropped**, not composited: a pixel reads the colour stored under it (for a transparent palette index,
  that index's palette colour), as ``tf.io.decode_image(..., channels=3)`` does, so the array matches what a
  model served from the file's bytes sees;
* animations (GIF, WebP, APNG): the first frame;
* the EXIF orientation tag applied (``PIL.ImageOps.exif_transpose``), so a phone photo comes out upright.
"""

from __future__ import annotations

import io
import os
import struct
import warnings

import numpy as np

# Images with more pixels than this are refused before decoding (a decompression bomb: a few kilobytes of PNG can
# claim 50000 x 50000 pixels, 7.5 GB as RGB). 100 megapixels is well above any camera's output.
MAX_PIXELS = 100_000_000

# The Pillow formats accepted (Pillow's JPEG reader also opens the multi-picture "MPO" JPEGs cameras write).
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")
_EXPECTED = "a JPEG, PNG, GIF, BMP, WebP or TIFF image"

# 16-bit modes Pillow opens 16-bit grayscale PNG / TIFF files as.
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def read_image_file(path: str) -> tuple[bytes, np.ndarray]:
    """Read an image file: its bytes, and its pixels as uint8 RGB (see the module docstring for the rules).

    Args:
        path: a JPEG, PNG, GIF, BMP, WebP or TIFF file.

    Returns:
        ``(data, image)``: the file's bytes unchanged, and uint8 ``[H, W, 3]`` pixels, EXIF orientation applied.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: ``path`` is a directory, empty, not an image of a known format, truncated or corrupt, or
            larger than :data:`MAX_PIXELS` pixels.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory, not an image file (expected {_EXPECTED})")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise ValueError(f"{path} is empty (0 bytes); expected {_EXPECTED}")
    return data, decode_image_bytes(data, name=path)


def decode_image_bytes(data: bytes, name: str = "image") -> np.ndarray:
    """Decode an encoded image (see :func:`read_image_file`) to uint8 ``[H, W, 3]``; ``name`` is used in errors."""
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        # Pillow warns above ~89 megapixels and refuses above ~179; this module applies its own MAX_PIXELS
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        except Image.DecompressionBombError as error:
            raise ValueError(f"{name} is too large to decode safely ({error}); the limit is {MAX_PIXELS:,} pixels "
                             "(a decompression bomb?)") from error  # fmt: skip
        except UnidentifiedImageError as error:
            raise ValueError(f"{name} is not {_EXPECTED}") from error
        except (OSError, SyntaxError, ValueError, EOFError) as error:  # a header Pillow recognized, then choked on
            raise ValueError(f"{name} is a corrupt image ({error}); expected {_EXPECTED}") from error
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise ValueError(f"{name} is {width} x {height} = {width * height:,} pixels, over the limit of "
                             f"{MAX_PIXELS:,} pixels (kzoo.data.images.MAX_PIXELS); refusing to decode it "
                             "(a decompression bomb?)")  # fmt: skip
        if width == 0 or height == 0:
            raise ValueError(f"{name} has no pixels ({width} x {height}); expected {_EXPECTED}")
        try:
            image.load()  # the first frame of an animation
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise ValueError(f"{name} is a truncated or corrupt {image.format} image ({error}); "
                             f"expected {_EXPECTED}") from error  # fmt: skip
    image = _exif_upright(image)
    return _to_rgb_uint8(image)


def _exif_upright(image):
    """Apply the EXIF orientation tag; an unreadable EXIF block leaves the image as stored."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, struct.error):
        return image


def _to_rgb_uint8(image) -> np.ndarray:
    """Any Pillow mode -> uint8 ``[H, W, 3]`` (alpha dropped, 16 bits scaled by 1/257)."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        values = np.asarray(image)
        if mode == "F":  # float TIFFs: [0, 1] floats scaled to [0, 255], anything else read as [0, 255]
            values = np.nan_to_num(values.astype(np.float64))
            gray = values * 255.0 if values.max(initial=0.0) <= 1.0 else values
        else:  # 16-bit samples (mode "I" is what older Pillows open 16-bit PNGs as)
            gray = np.clip(values.astype(np.float64), 0, 65535) / 257.0
        gray = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode in ("P", "PA"):
        image = image.convert("RGBA")  # applies the palette (and its transparency) before the alpha is dropped
    elif mode == "LA":
        image = image.convert("L")
    if image.mode != "RGB":
        image = image.convert("RGB")  # L, 1, RGBA, RGBX, CMYK, YCbCr, LAB, HSV
    array = np.asarray(image, dtype=np.uint8)
    return np.ascontiguousarray(array.reshape(array.shape[0], array.shape[1], 3))
