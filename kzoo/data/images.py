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

This module is the one strict decoder of image files: ``kzoo predict`` (NIN and Mask R-CNN), the class maps, and
the annotation converters (:mod:`kzoo.data.annotation_builder`, which reads each image's size through
:func:`inspect_image_file`) all read images through it. Strict means:

* only regular files: a FIFO, socket or device is refused from ``os.stat`` before it is opened (opening a FIFO
  would block);
* truncated or corrupt data is an error naming the file, never Pillow's black (or gray) fill: pixels are loaded
  with ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` off whatever another library set it to, and a PNG's chunks are
  checked (CRCs, and an image data stream holding every row the header announces), which Pillow alone does not do
  (it fills the rows a complete-looking stream lacks with zeros; TensorFlow's decoder refuses such a file).

The training pipeline decodes with ``tf.io.decode_image``, which refuses the same truncated files (its errors are
turned into ones naming the file by :func:`kzoo.data.decode_errors.naming_undecodable_images`).
"""

from __future__ import annotations

import dataclasses
import io
import os
import stat
import struct
import threading
import warnings
import zlib

import numpy as np

# Images with more pixels than this are refused before decoding (a decompression bomb: a few kilobytes of PNG can
# claim 50000 x 50000 pixels, 7.5 GB as RGB). 100 megapixels is well above any camera's output.
MAX_PIXELS = 100_000_000

# The image formats and file extensions of kzoo, all here. Two format lists, because two decoders read images:
# this module (Pillow) reads IMAGE_FORMATS; the training pipeline's tf.io.decode_image reads DECODABLE_FORMATS only,
# so the COCO reader skips an image of another format and the annotation converters re-encode it (as PNG).

#: The Pillow formats accepted (Pillow's JPEG reader also opens the multi-picture "MPO" JPEGs cameras write).
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")
#: The formats the tf.data pipeline decodes (``tf.io.decode_image``), as Pillow names them.
DECODABLE_FORMATS = ("JPEG", "PNG", "GIF", "BMP")
#: Extensions of image files: those a folder or a glob given to ``kzoo predict`` stands for, and those the
#: annotation readers that search folders (:mod:`kzoo.data.yolo`) look for; one per name of :data:`IMAGE_FORMATS`.
IMAGE_FILE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")
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
    data = read_image_bytes(path)
    return data, decode_image_bytes(data, name=path)


def check_image_path(path: str) -> None:
    """Refuse ``path`` unless it is a regular file, from ``os.stat`` alone (nothing is opened: opening a FIFO
    blocks until a writer comes).

    Raises:
        FileNotFoundError: nothing at ``path`` (or a dangling link).
        ValueError: a directory, or not a regular file (a FIFO, socket or device), named.
    """
    path = os.fspath(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"image not found: {path}") from None
    except NotADirectoryError:
        raise FileNotFoundError(f"image not found: {path} (a part of the path is not a folder)") from None
    if stat.S_ISDIR(mode):
        raise ValueError(f"{path} is a directory, not an image file (expected {_EXPECTED})")
    if not stat.S_ISREG(mode):
        kind = (
            "a FIFO (named pipe)"
            if stat.S_ISFIFO(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "not a plain file"
        )
        raise ValueError(f"{path} is not a regular file ({kind}); expected {_EXPECTED}")


def read_image_bytes(path: str) -> bytes:
    """The bytes of the image file ``path``, after :func:`check_image_path`; an empty file is a ``ValueError``."""
    path = os.fspath(path)
    check_image_path(path)
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise ValueError(f"{path} is empty (0 bytes); expected {_EXPECTED}")
    return data


@dataclasses.dataclass(frozen=True)
class ImageFileInfo:
    """What :func:`inspect_image_file` finds: the Pillow ``format`` (``"PNG"``...), the upright ``height`` and
    ``width`` (EXIF orientation applied) and the EXIF ``orientation`` (1 when absent)."""

    format: str
    height: int
    width: int
    orientation: int


def inspect_image_file(path: str) -> ImageFileInfo:
    """Decode the image file ``path`` strictly, as :func:`read_image_file` does (every pixel, so a truncated or
    corrupt file is an error here, not later), and say what it is.

    Raises:
        FileNotFoundError, ValueError: as :func:`read_image_file`.
    """
    path = os.fspath(path)
    image = _open_strict(read_image_bytes(path), path)
    try:
        orientation = int(image.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 - an unreadable EXIF block leaves the image as stored
        orientation = 1
    width, height = image.size
    if orientation in (5, 6, 7, 8):  # the upright image is transposed
        width, height = height, width
    return ImageFileInfo(str(image.format), int(height), int(width), orientation)


def decode_image_bytes(data: bytes, name: str = "image") -> np.ndarray:
    """Decode an encoded image (see :func:`read_image_file`) to uint8 ``[H, W, 3]``; ``name`` is used in errors."""
    image = _exif_upright(_open_strict(data, name))
    return _to_rgb_uint8(image)


def _open_strict(data: bytes, name: str):
    """The Pillow image of ``data`` with its pixels loaded (the first frame), strictly (see the module docstring)."""
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        # Pillow warns above ~89 megapixels and refuses above ~179; this module applies its own MAX_PIXELS
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        except Image.DecompressionBombError as error:
            raise ValueError(
                f"{name} is too large to decode safely ({error}); the limit is {MAX_PIXELS:,} pixels "
                "(a decompression bomb?)"
            ) from error
        except UnidentifiedImageError as error:
            raise ValueError(f"{name} is not {_EXPECTED}") from error
        except (OSError, SyntaxError, ValueError, EOFError) as error:  # a header Pillow recognized, then choked on
            raise ValueError(f"{name} is a corrupt image ({error}); expected {_EXPECTED}") from error
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise ValueError(
                f"{name} is {width} x {height} = {width * height:,} pixels, over the limit of "
                f"{MAX_PIXELS:,} pixels (kzoo.data.images.MAX_PIXELS); refusing to decode it "
                "(a decompression bomb?)"
            )
        if width == 0 or height == 0:
            raise ValueError(f"{name} has no pixels ({width} x {height}); expected {_EXPECTED}")
        try:
            _load_pixels(image)  # the first frame of an animation
        except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as error:
            raise ValueError(
                f"{name} is a truncated or corrupt {image.format} image ({error}); expected {_EXPECTED}"
            ) from error
    if image.format == "PNG":
        problem = png_data_problem(data)
        if problem:
            raise ValueError(f"{name} is a truncated or corrupt PNG image ({problem}); expected {_EXPECTED}")
    return image


_EXIF_ORIENTATION = 0x0112
_TRUNCATION_LOCK = threading.Lock()


def _load_pixels(image) -> None:
    """``image.load()`` with ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` off (another library may have set it)."""
    from PIL import ImageFile

    if not ImageFile.LOAD_TRUNCATED_IMAGES:
        image.load()
        return
    with _TRUNCATION_LOCK:
        saved, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
        try:
            image.load()
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = saved


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def png_data_problem(data: bytes) -> str | None:
    """What is wrong with a PNG's chunks, or ``None``: a chunk cut short or with a wrong CRC, a missing ``IHDR``
    or ``IEND``, or an image data stream (``IDAT``) that is corrupt or holds fewer bytes than the rows the header
    announces (Pillow fills the missing rows with zeros without a word)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return "no PNG signature"
    position, header, expected, total, ended = 8, None, 0, 0, False
    inflate = zlib.decompressobj()
    while position < len(data):
        if position + 8 > len(data):
            return f"a chunk header cut short at byte {position}"
        length, kind = struct.unpack(">I", data[position : position + 4])[0], data[position + 4 : position + 8]
        end = position + 12 + length
        if end > len(data):
            return f"the {kind.decode('latin-1')!r} chunk at byte {position} is cut short"
        body = data[position + 8 : position + 8 + length]
        if zlib.crc32(kind + body) != struct.unpack(">I", data[end - 4 : end])[0]:
            return f"the {kind.decode('latin-1')!r} chunk at byte {position} has a wrong CRC"
        position = end
        if kind == b"IHDR" and len(body) >= 13:
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body[:13])
            bits = depth * _PNG_CHANNELS.get(color, 4)
            passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
            for x0, y0, dx, dy in passes:
                columns, rows = -(-max(width - x0, 0) // dx), -(-max(height - y0, 0) // dy)
                if columns and rows:
                    expected += rows * (1 + (columns * bits + 7) // 8)
            header = (width, height)
        elif kind == b"IDAT" and total < expected and not inflate.eof:
            try:
                while body and total < expected and not inflate.eof:
                    total += len(inflate.decompress(body, 1 << 20))
                    body = inflate.unconsumed_tail
            except zlib.error as error:
                return f"corrupt image data ({error})"
        elif kind == b"IEND":
            ended = True
            break
    if header is None:
        return "no IHDR chunk"
    if total < expected:
        rows = f"{header[1]} rows of {header[0]} pixels"
        return f"the image data holds {total} of the {expected} bytes of the header's {rows}"
    if not ended:
        return "no IEND chunk (the file is cut short)"
    return None


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


def expand_image_inputs(inputs: list[str], extra_extensions: tuple[str, ...] = ()) -> list[str]:
    """The files a list of ``kzoo predict`` inputs stands for, in order: a file as it is (checked later by the
    reader), a folder as its image files (sorted, not recursive, hidden files left out), a glob pattern
    (``photos/*.jpg``, ``data/**/*.png``; quoted in the shell) as the files it matches, sorted.

    Args:
        inputs: paths, folders and patterns.
        extra_extensions: further extensions a folder or pattern takes (``kzoo predict`` adds video files).

    Returns:
        File paths; one file listed twice stays twice (each gets its own output).

    Raises:
        FileNotFoundError: a folder with no image file, or a pattern that matches none (named), or a path with
            nothing there that is no pattern.
    """
    import glob

    extensions = IMAGE_FILE_EXTENSIONS + tuple(extra_extensions)
    found: list[str] = []
    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item):
            names = sorted(n for n in os.listdir(item) if n.lower().endswith(extensions) and not n.startswith("."))
            paths = [os.path.join(item, n) for n in names if not os.path.isdir(os.path.join(item, n))]
            if not paths:
                raise FileNotFoundError(f"no image files ({', '.join(extensions)}) in the folder {item}")
            found.extend(paths)
        elif not os.path.lexists(item) and glob.has_magic(item):
            paths = sorted(p for p in glob.glob(item, recursive=True) if p.lower().endswith(extensions))
            if not paths:
                raise FileNotFoundError(f"no image files match {item!r}")
            found.extend(paths)
        else:
            found.append(item)
    return found
