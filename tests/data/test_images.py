"""kzoo.data.images.read_image_file on every kind of file a user may hand `kzoo predict` (written here with Pillow,
16-bit PNGs written by hand since Pillow cannot write all of them)."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from kzoo.data import images
from kzoo.data.images import read_image_file


def _png(width: int, height: int, bit_depth: int, color_type: int, samples: np.ndarray) -> bytes:
    """A PNG of big-endian ``samples`` ``[H, W, channels]`` (no filtering), for modes Pillow cannot write."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    dtype = ">u2" if bit_depth == 16 else "u1"
    rows = samples.astype(dtype).reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _claims_size(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` pixels, followed by the few bytes of a 1 x 1 image's data."""
    tiny = _png(1, 1, 8, 0, np.zeros((1, 1)))
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    ihdr_chunk = struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF)
    return tiny[:8] + ihdr_chunk + tiny[33:]  # signature, the claimed header, then the 1 x 1 image's chunks


def _write(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _save(tmp_path, name: str, image: Image.Image, **kwargs) -> str:
    path = tmp_path / name
    image.save(path, **kwargs)
    return str(path)


def _check(image: np.ndarray, shape: tuple[int, int]) -> None:
    assert image.dtype == np.uint8 and image.shape == (*shape, 3)


def _gray_ramp(height: int = 6, width: int = 8) -> np.ndarray:
    return (np.arange(height * width).reshape(height, width) * 5).astype(np.uint8)


# -- JPEG ------------------------------------------------------------------------------------------------------------


def test_jpeg_rgb_gray_and_cmyk(tmp_path):
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[..., 2] = 40
    path = _save(tmp_path, "rgb.jpg", Image.fromarray(rgb), quality=95)
    data, image = read_image_file(path)
    assert data == open(path, "rb").read()
    _check(image, (16, 24))
    assert np.abs(image.astype(int) - rgb).max() <= 4

    path = _save(tmp_path, "gray.jpg", Image.fromarray(np.full((10, 12), 90, np.uint8)), quality=95)
    _, image = read_image_file(path)
    _check(image, (10, 12))
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
    assert np.abs(image.astype(int) - 90).max() <= 2

    cmyk = Image.new("CMYK", (12, 8), (0, 255, 255, 0))  # pure red in CMYK
    _, image = read_image_file(_save(tmp_path, "cmyk.jpg", cmyk, quality=95))
    _check(image, (8, 12))
    assert image[..., 0].min() > 240 and image[..., 1:].max() < 15


def test_jpeg_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((16, 32, 3), np.uint8)  # 32 wide, 16 high: left half red, right half blue
    pixels[:, :16, 0] = 255
    pixels[:, 16:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = _save(tmp_path, "rotated.jpg", Image.fromarray(pixels), exif=exif, quality=95)
    _, image = read_image_file(path)
    _check(image, (32, 16))  # upright: 16 wide, 32 high, the left (red) half on top
    assert image[4, 8, 0] > 200 and image[4, 8, 2] < 50
    assert image[28, 8, 2] > 200 and image[28, 8, 0] < 50


# -- PNG -------------------------------------------------------------------------------------------------------------


def test_png_8bit_gray_gives_three_equal_channels(tmp_path):
    gray = _gray_ramp()
    _, image = read_image_file(_save(tmp_path, "gray.png", Image.fromarray(gray)))
    _check(image, gray.shape)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], gray)


def test_png_8bit_gray_alpha_rgb_rgba_drop_alpha(tmp_path):
    gray = _gray_ramp()
    alpha = np.zeros_like(gray)  # fully transparent: the stored colour must still come back (alpha dropped)
    la = Image.merge("LA", [Image.fromarray(gray), Image.fromarray(alpha)])
    _, image = read_image_file(_save(tmp_path, "la.png", la))
    _check(image, gray.shape)
    np.testing.assert_array_equal(image, np.repeat(gray[..., None], 3, -1))

    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    _, image = read_image_file(_save(tmp_path, "rgb.png", Image.fromarray(rgb)))
    np.testing.assert_array_equal(image, rgb)

    rgba = np.concatenate([rgb, np.full((5, 7, 1), 10, np.uint8)], -1)
    _, image = read_image_file(_save(tmp_path, "rgba.png", Image.fromarray(rgba)))
    np.testing.assert_array_equal(image, rgb)


def test_png_16bit_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 25700], [4660, 65280, 65535]], np.uint16)
    expected = np.array([[0, 1, 100], [18, 254, 255]], np.uint8)

    _, image = read_image_file(_write(tmp_path, "gray16.png", _png(3, 2, 16, 0, values[..., None])))
    _check(image, (2, 3))
    np.testing.assert_array_equal(image, np.repeat(expected[..., None], 3, -1))

    gray_alpha = np.stack([values, np.full_like(values, 1000)], -1)
    _, image = read_image_file(_write(tmp_path, "la16.png", _png(3, 2, 16, 4, gray_alpha)))
    _check(image, (2, 3))
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 0] == image[..., 2]).all()
    assert np.abs(image[..., 0].astype(int) - expected).max() <= 1  # Pillow keeps the high byte here (v >> 8)

    rgb = np.stack([values, values[::-1], np.full_like(values, 65535)], -1)
    expected_rgb = np.stack([expected, expected[::-1], np.full_like(expected, 255)], -1)
    _, image = read_image_file(_write(tmp_path, "rgb16.png", _png(3, 2, 16, 2, rgb)))
    _check(image, (2, 3))
    assert np.abs(image.astype(int) - expected_rgb).max() <= 1  # Pillow keeps the high byte here (v >> 8)

    rgba = np.concatenate([rgb, np.zeros_like(values)[..., None]], -1)
    _, image = read_image_file(_write(tmp_path, "rgba16.png", _png(3, 2, 16, 6, rgba)))
    assert np.abs(image.astype(int) - expected_rgb).max() <= 1

    # and Pillow's own 16-bit grayscale PNG (mode I;16): the single value 65535 reads 255
    white16 = Image.fromarray(np.full((4, 4), 65535, np.uint16))
    _, image = read_image_file(_save(tmp_path, "white16.png", white16))
    assert (image == 255).all()


def test_png_palette_with_and_without_transparency(tmp_path):
    indices = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    palette = [10, 20, 30, 200, 100, 50, 0, 255, 0] + [0] * (256 * 3 - 9)
    expected = np.array(palette[:9], np.uint8).reshape(3, 3)[indices]

    picture = Image.new("P", (3, 2))
    picture.putpalette(palette)
    picture.putdata(indices.ravel().tolist())
    _, image = read_image_file(_save(tmp_path, "palette.png", picture))
    _check(image, (2, 3))
    np.testing.assert_array_equal(image, expected)

    _, image = read_image_file(_save(tmp_path, "palette_transparent.png", picture, transparency=1))
    np.testing.assert_array_equal(image, expected)  # the transparent index reads its palette colour

    alphas = bytes([255, 0, 128])
    _, image = read_image_file(_save(tmp_path, "palette_alphas.png", picture, transparency=alphas))
    np.testing.assert_array_equal(image, expected)


# -- GIF, BMP, WebP, TIFF ---------------------------------------------------------------------------------------------


def test_gif_first_frame(tmp_path):
    red = Image.new("RGB", (6, 4), (255, 0, 0))
    blue = Image.new("RGB", (6, 4), (0, 0, 255))
    path = _save(tmp_path, "anim.gif", red, save_all=True, append_images=[blue], duration=100)
    assert Image.open(path).n_frames == 2
    _, image = read_image_file(path)
    _check(image, (4, 6))
    assert (image == [255, 0, 0]).all()


def test_bmp_webp_tiff(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    _, image = read_image_file(_save(tmp_path, "x.bmp", Image.fromarray(rgb)))
    np.testing.assert_array_equal(image, rgb)
    _, image = read_image_file(_save(tmp_path, "gray.bmp", Image.fromarray(_gray_ramp())))
    np.testing.assert_array_equal(image, np.repeat(_gray_ramp()[..., None], 3, -1))

    _, image = read_image_file(_save(tmp_path, "x.webp", Image.fromarray(rgb), lossless=True))
    np.testing.assert_array_equal(image, rgb)
    rgba = np.concatenate([rgb, np.full((6, 9, 1), 0, np.uint8)], -1)
    _, image = read_image_file(_save(tmp_path, "alpha.webp", Image.fromarray(rgba), lossless=True, exact=True))
    _check(image, (6, 9))

    _, image = read_image_file(_save(tmp_path, "x.tiff", Image.fromarray(rgb)))
    np.testing.assert_array_equal(image, rgb)
    _, image = read_image_file(_save(tmp_path, "gray16.tiff", Image.fromarray(np.full((3, 5), 65535, np.uint16))))
    _check(image, (3, 5))
    assert (image == 255).all()
    _, image = read_image_file(_save(tmp_path, "cmyk.tiff", Image.new("CMYK", (4, 3), (0, 0, 0, 0))))
    assert (image == 255).all()  # no ink: white


def test_one_bit_image(tmp_path):
    bits = Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).convert("1")
    _, image = read_image_file(_save(tmp_path, "bits.png", bits))
    np.testing.assert_array_equal(image[..., 0], [[0, 255], [255, 0]])


# -- errors ----------------------------------------------------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path):
    path = str(tmp_path / "nope.jpg")
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        read_image_file(path)


def test_directory_empty_and_non_image_files(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        read_image_file(str(tmp_path))
    path = _write(tmp_path, "empty.png", b"")
    with pytest.raises(ValueError, match=r"empty\.png is empty.*JPEG, PNG"):
        read_image_file(path)
    path = _write(tmp_path, "notes.jpg", b"these are not pixels\n" * 10)
    with pytest.raises(ValueError, match=r"notes\.jpg is not a JPEG, PNG, GIF, BMP, WebP or TIFF image"):
        read_image_file(path)
    # a format Pillow reads but kzoo does not accept (PPM)
    path = _save(tmp_path, "x.ppm", Image.new("RGB", (2, 2)))
    with pytest.raises(ValueError, match=r"x\.ppm is not a JPEG"):
        read_image_file(path)


def test_truncated_files(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for name in ("cut.png", "cut.jpg"):
        full = tmp_path / ("full_" + name)
        Image.fromarray(rgb).save(full)
        data = full.read_bytes()
        path = _write(tmp_path, name, data[: len(data) // 2])
        with pytest.raises(ValueError, match=name.replace(".", r"\.") + ".*(truncated|corrupt)"):
            read_image_file(path)
    path = _write(tmp_path, "header_only.png", b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ValueError, match=r"header_only\.png"):
        read_image_file(path)


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    # a tiny file claiming 12000 x 10000 pixels (over MAX_PIXELS, under Pillow's own refusal at ~179 megapixels)
    path = _write(tmp_path, "bomb.png", _claims_size(12000, 10000))
    with pytest.raises(ValueError, match=r"bomb\.png is 12000 x 10000 = 120,000,000 pixels"):
        read_image_file(path)
    # one claiming 20000 x 20000: Pillow refuses it itself; still a ValueError naming the size
    path = _write(tmp_path, "bigger.png", _claims_size(20000, 20000))
    with pytest.raises(ValueError, match=r"bigger\.png is too large.*400000000 pixels"):
        read_image_file(path)
    # the limit is the module constant
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    path = _save(tmp_path, "small.png", Image.new("RGB", (11, 10)))
    with pytest.raises(ValueError, match="11 x 10 = 110 pixels"):
        read_image_file(path)
