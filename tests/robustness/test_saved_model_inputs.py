"""Bad inputs into the exported SavedModels (NIN: ``serving_default``, ``class_maps``, ``serving_bytes``; Mask
R-CNN: ``serving_default``, ``serving_bytes``), called through the loaded signatures as TF Serving runs them: each
case gives the correct result or an error status whose message names the problem."""

import numpy as np
import pytest
import tensorflow as tf
from corpus import pixels, with_value

from kzoo.export import export_classifier_saved_model, export_mask_rcnn_saved_model

InvalidArgument = tf.errors.InvalidArgumentError
CAP = 10_000  # max_image_pixels of the exports: 100 x 100 passes, 128 x 128 does not
# a loaded signature called with another dtype fails to bind (TypeError), then runs the graph, which refuses it
DTYPE_MISMATCH = (TypeError, ValueError, InvalidArgument)


def png_header(height: int, width: int) -> bytes:
    """A PNG signature and IHDR chunk claiming ``height x width`` pixels, without pixel data."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + b"IHDR" + ihdr + b"\0\0\0\0"


def gif_header(height: int, width: int) -> bytes:
    """A GIF header claiming ``height x width`` pixels, without image data."""
    return b"GIF89a" + width.to_bytes(2, "little") + height.to_bytes(2, "little") + b"\0" * 8


@pytest.fixture(scope="module")
def nin_exports(nin_model, gray_nin_model, tmp_path_factory):
    """Loaded NIN SavedModels: ``float32`` and ``uint8`` inputs (RGB), ``gray`` (float32, 1 channel)."""
    base = tmp_path_factory.mktemp("serving")
    names = ["a", "b", "c"]
    exports = {}
    for key, model, dtype in (
        ("float32", nin_model, "float32"),
        ("uint8", nin_model, "uint8"),
        ("gray", gray_nin_model, "float32"),
    ):
        path = export_classifier_saved_model(model, base, f"nin_{key}", names, input_dtype=dtype, max_image_pixels=CAP)
        exports[key] = tf.saved_model.load(path).signatures
    return exports


@pytest.fixture(scope="module")
def mask_rcnn_export(mask_rcnn_model, tmp_path_factory):
    path = export_mask_rcnn_saved_model(
        mask_rcnn_model, tmp_path_factory.mktemp("serving"), "mask_rcnn", max_image_pixels=CAP
    )
    return tf.saved_model.load(path).signatures


def probabilities_ok(out: dict) -> None:
    probabilities = out["probabilities"].numpy()
    assert probabilities.shape[1:] == (3,) and np.all(np.isfinite(probabilities))
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)


# -- NIN serving_default and class_maps: float32 pixels in [0, 255] -------------------------------------------------

NON_FINITE = (InvalidArgument, r"images: non-finite pixel values \(NaN or inf\)")
UNIT = (InvalidArgument, r"images: float pixels that look like pixels in \[0, 1\].*multiply the images by 255")
OUTSIDE = r"images: pixel values outside \[0, 255\]; observed min and max:"


def nin_shape(observed: str) -> tuple:
    return InvalidArgument, r"images must be a batch of images \[batch, 16, 16, 3\]; got shape\W+" + observed


NIN_PIXEL_CASES = [
    pytest.param(lambda: pixels((2, 16, 16, 3), np.float32), "ok", id="float-0-255"),
    pytest.param(lambda: np.zeros((1, 16, 16, 3), np.float32), "ok", id="all-black"),
    pytest.param(lambda: np.zeros((0, 16, 16, 3), np.float32), "ok", id="empty-batch"),
    pytest.param(lambda: np.full((1, 16, 16, 3), 0.7, np.float32), UNIT, id="0.7"),
    pytest.param(lambda: pixels((2, 16, 16, 3), np.float32) / 255, UNIT, id="unit-floats"),
    pytest.param(lambda: with_value((1, 16, 16, 3), 300.0), (InvalidArgument, OUTSIDE + r".*\[300\]"), id="300"),
    pytest.param(lambda: with_value((1, 16, 16, 3), -1.0), (InvalidArgument, OUTSIDE + r".*\[-1\]"), id="minus-1"),
    pytest.param(
        lambda: pixels((2, 16, 16, 3), np.float32) / 127.5 - 1, (InvalidArgument, OUTSIDE), id="preprocessed-already"
    ),
    pytest.param(lambda: with_value((1, 16, 16, 3), np.nan), NON_FINITE, id="nan"),
    pytest.param(lambda: with_value((1, 16, 16, 3), np.inf), NON_FINITE, id="inf"),
    pytest.param(lambda: np.zeros((1, 16, 16, 4), np.float32), nin_shape(r"\[1 16 16 4\]"), id="4-channels"),
    pytest.param(lambda: np.zeros((1, 16, 16, 1), np.float32), nin_shape(r"\[1 16 16 1\]"), id="1-channel"),
    pytest.param(lambda: np.zeros((16, 16, 3), np.float32), nin_shape(r"\[16 16 3\]"), id="rank3"),
    pytest.param(lambda: np.zeros((1, 8, 8, 3), np.float32), nin_shape(r"\[1 8 8 3\]"), id="other-size"),
]


@pytest.mark.parametrize("signature", ["serving_default", "class_maps"])
@pytest.mark.parametrize("make, outcome", NIN_PIXEL_CASES)
def test_nin_pixels(nin_exports, expect, signature, make, outcome):
    out = expect(lambda value: nin_exports["float32"][signature](images=tf.constant(value)), make(), outcome)
    if out is not None and signature == "serving_default":
        probabilities_ok(out)
    if out is not None and signature == "class_maps":
        assert np.all(np.isfinite(out["class_maps"].numpy()))


def test_nin_uint8_export(nin_exports):
    # a uint8 signature takes uint8 tensors only: floats are not converted silently
    signature = nin_exports["uint8"]["serving_default"]
    probabilities_ok(signature(images=tf.constant(pixels((2, 16, 16, 3)))))
    for value in (0.7, 300.0, -1.0, np.nan):
        with pytest.raises(DTYPE_MISMATCH, match="uint8"):
            signature(images=tf.constant(np.full((1, 16, 16, 3), value, np.float32)))


# -- serving_bytes (NIN and Mask R-CNN share the decoder) -----------------------------------------------------------

IMAGE = pixels((40, 50, 3), seed=3)
BIG = pixels((128, 128, 3), seed=4)
NOT_AN_IMAGE = r"image_bytes\[1\] is not a JPEG, PNG, GIF, BMP or WebP image"


def over_cap(height: int, width: int, decoded: bool = False) -> tuple:
    size = f"decodes to {height}x{width}" if decoded else f"is {height}x{width} \\(height x width\\) = {height * width}"
    return InvalidArgument, rf"image_bytes\[1\] {size}.* over the cap of {CAP} pixels \(max_image_pixels\)"


BYTES_CASES = [
    pytest.param(lambda encode: encode(IMAGE, "PNG"), "ok", id="png"),
    pytest.param(lambda encode: encode(IMAGE, "JPEG"), "ok", id="jpeg"),
    pytest.param(lambda encode: encode(IMAGE, "GIF"), "ok", id="gif"),
    pytest.param(lambda encode: encode(IMAGE, "BMP"), "ok", id="bmp"),
    pytest.param(lambda encode: encode(IMAGE, "WEBP"), "ok", id="webp"),
    pytest.param(lambda encode: encode(np.zeros((100, 100, 3), np.uint8), "PNG"), "ok", id="png-at-the-cap"),
    pytest.param(lambda encode: b"", (InvalidArgument, r"image_bytes\[1\] is empty"), id="empty"),
    pytest.param(lambda encode: b"this is not an image", (InvalidArgument, NOT_AN_IMAGE), id="text"),
    pytest.param(lambda encode: encode(IMAGE, "TIFF"), (InvalidArgument, NOT_AN_IMAGE), id="tiff"),
    pytest.param(lambda encode: encode(IMAGE, "PNG")[:40], (InvalidArgument, "PNG"), id="truncated-png"),
    pytest.param(lambda encode: encode(BIG, "PNG"), over_cap(128, 128), id="png-over-cap"),
    pytest.param(lambda encode: encode(BIG, "JPEG"), over_cap(128, 128), id="jpeg-over-cap"),
    pytest.param(lambda encode: encode(BIG, "GIF"), over_cap(128, 128), id="gif-over-cap"),
    pytest.param(lambda encode: encode(BIG, "BMP"), over_cap(128, 128), id="bmp-over-cap"),
    pytest.param(lambda encode: encode(BIG, "WEBP"), over_cap(128, 128, decoded=True), id="webp-over-cap"),
    # headers claiming huge images without the data: refused from the header, before any decoding
    pytest.param(lambda encode: png_header(100_000, 100_000), over_cap(100_000, 100_000), id="png-header-bomb"),
    pytest.param(lambda encode: gif_header(60_000, 60_000), over_cap(60_000, 60_000), id="gif-header-bomb"),
]


@pytest.mark.parametrize("model", ["nin", "nin-gray", "mask_rcnn"])
@pytest.mark.parametrize("make, outcome", BYTES_CASES)
def test_serving_bytes(nin_exports, mask_rcnn_export, encode, expect, model, make, outcome):
    signature = {"nin": nin_exports["float32"], "nin-gray": nin_exports["gray"], "mask_rcnn": mask_rcnn_export}[model][
        "serving_bytes"
    ]
    good = encode(IMAGE, "PNG")
    out = expect(lambda data: signature(image_bytes=tf.constant([good, data])), make(encode), outcome)
    if out is None:
        return
    if model == "mask_rcnn":
        assert out["num_detections"].shape == (2,) and np.all(np.isfinite(out["detection_scores"].numpy()))
    else:
        probabilities_ok(out)


def test_lossless_formats_agree(nin_exports, mask_rcnn_export, encode):
    # gray: PNG through libpng's RGB-to-gray, BMP through tf.image.rgb_to_grayscale (gray levels differ by 1 at most)
    for signatures, tolerance in ((nin_exports["float32"], 1e-6), (nin_exports["gray"], 2e-3)):
        outs = [
            signatures["serving_bytes"](image_bytes=tf.constant([encode(IMAGE, fmt)]))["probabilities"]
            for fmt in ("PNG", "BMP")
        ]
        np.testing.assert_allclose(outs[0], outs[1], atol=tolerance)
    png, bmp = (
        mask_rcnn_export["serving_bytes"](image_bytes=tf.constant([encode(IMAGE, fmt)])) for fmt in ("PNG", "BMP")
    )
    np.testing.assert_allclose(png["detection_scores"], bmp["detection_scores"], atol=1e-6)


# -- Mask R-CNN serving_default: uint8 [B, H, W, 3], any size --------------------------------------------------------


def mask_rcnn_shape(observed: str) -> tuple:
    return InvalidArgument, r"images must be a batch of images \[batch, height, width, 3\]; got shape\W+" + observed


MASK_RCNN_CASES = [
    pytest.param(lambda: pixels((1, 64, 64, 3)), "ok", id="uint8"),
    pytest.param(lambda: pixels((2, 30, 90, 3)), "ok", id="uint8-other-size"),
    pytest.param(lambda: np.zeros((1, 64, 64, 3), np.uint8), "ok", id="all-black"),
    pytest.param(lambda: np.zeros((0, 64, 64, 3), np.uint8), "ok", id="empty-batch"),
    pytest.param(lambda: pixels((1, 64, 64, 4)), mask_rcnn_shape(r"\[1 64 64 4\]"), id="4-channels"),
    pytest.param(lambda: pixels((1, 64, 64, 1)), mask_rcnn_shape(r"\[1 64 64 1\]"), id="1-channel"),
    pytest.param(lambda: pixels((64, 64, 3)), mask_rcnn_shape(r"\[64 64 3\]"), id="rank3"),
    pytest.param(lambda: np.full((1, 64, 64, 3), 0.7, np.float32), (DTYPE_MISMATCH, "uint8"), id="float-into-uint8"),
]


@pytest.mark.parametrize("make, outcome", MASK_RCNN_CASES)
def test_mask_rcnn_pixels(mask_rcnn_export, expect, make, outcome):
    images = make()
    out = expect(lambda value: mask_rcnn_export["serving_default"](images=tf.constant(value)), images, outcome)
    if out is not None:
        assert out["detection_boxes"].shape == (len(images), 10, 4)
