"""The SavedModel side shared by kzoo's exporters (NIN and Mask R-CNN): the TF Serving layout, warmup files and the
one decoder of the ``serving_bytes`` signatures.

- TF Serving layout: ``<base_dir>/<model_name>/<version>/``, versions numbered 1, 2, ..., each written into a
  temporary directory and renamed into place (:func:`kzoo.utils.files.atomic_directory`: ``0755`` directories,
  ``0644`` files), so a failed export leaves nothing behind. Versions are never replaced: an export without a
  version takes the next free one, and an existing version given explicitly is refused (FileExistsError), with
  or without ``kzoo export --overwrite`` (which is for ``.tflite`` files only).
- TF Serving warmup files: a TFRecord of ``PredictionLog`` records (``tensorflow-serving-api`` protos).
- The one decoder of the ``serving_bytes`` signatures (formats, a pixel cap read from the header, errors naming
  the image's index).

The families' SavedModels are :mod:`kzoo.export.classifier`'s and :mod:`kzoo.export.mask_rcnn`'s; the TFLite
converter is :mod:`kzoo.export.tflite`'s.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

import numpy as np
import tensorflow as tf

from kzoo.utils.files import atomic_path, make_directory, write_text

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")

CLASS_NAMES_FILE = os.path.join("assets.extra", "class_names.txt")  # one name per line, in class order

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_T = TypeVar("_T")


# -- TF Serving layout -------------------------------------------------------------------------------------------------


def check_model_name(model_name: str) -> str:
    """``model_name`` if it is a plain file name (no folder part, not ``.``/``..``, no NUL): exports named after it
    stay inside their output folder. ValueError otherwise."""
    name = str(model_name)
    if (
        not name
        or name in (".", "..")
        or "\0" in name
        or os.path.basename(name) != name
        or "/" in name
        or (os.altsep and os.altsep in name)
    ):
        raise ValueError(f"model name must be a plain name without folders, got {model_name!r}")
    return name


def new_version_dir(base_dir: str | os.PathLike, model_name: str, version: int | None = None) -> str:
    """The version directory an export will create: ``base_dir/model_name/<version>`` (not created yet).

    ``base_dir/model_name`` is created if missing. ``version=None`` picks one more than the largest numeric
    version directory there, or 1.

    Raises:
        ValueError: ``model_name`` is not a plain directory name, or ``version`` is not a positive int.
        FileExistsError: the version directory exists already.
    """
    check_model_name(model_name)
    model_dir = os.path.join(os.fspath(base_dir), model_name)
    if version is not None and (isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1):
        raise ValueError(f"version must be a positive integer, got {version!r}")
    make_directory(model_dir)
    if version is None:
        version = next_version(model_dir)
    version_dir = os.path.join(model_dir, str(int(version)))
    if os.path.exists(version_dir):
        raise FileExistsError(
            f"version directory {version_dir} exists already; refusing to overwrite it: SavedModel versions are never "
            f"replaced (TF Serving "
            f"does not reload a version number it has loaded): give another version, or none for the next free one "
            f"({next_version(model_dir)})"
        )
    return version_dir


def latest_version_dir(model_dir: str | os.PathLike) -> str | None:
    """The highest numeric version folder of a TF Serving model folder, or ``None``."""
    model_dir = os.fspath(model_dir)
    if not os.path.isdir(model_dir):
        return None
    version = next_version(model_dir) - 1
    return os.path.join(model_dir, str(version)) if version else None


def next_version(model_dir: str) -> int:
    """One more than the largest numeric subdirectory of ``model_dir``, or 1."""
    versions = [
        int(name) for name in os.listdir(model_dir) if name.isdigit() and os.path.isdir(os.path.join(model_dir, name))
    ]
    return max(versions, default=0) + 1


def write_class_names(export_dir: str, class_names: Sequence[str]) -> None:
    """Write ``assets.extra/class_names.txt`` (one name per line, in class order) inside ``export_dir``."""
    write_text(os.path.join(export_dir, CLASS_NAMES_FILE), "\n".join(class_names) + "\n")


def write_prediction_logs(
    path: str | os.PathLike,
    model_name: str,
    requests: Iterable[tuple[str, Mapping[str, np.ndarray]]],
) -> int:
    """Write a TF Serving warmup file: one ``PredictionLog`` (a ``PredictRequest``) per request.

    Args:
        path: the file to write (atomically, through :func:`kzoo.utils.files.atomic_path`; parent directories are
            created).
        model_name: ``model_spec.name`` of the requests.
        requests: ``(signature_name, {input_name: array})`` pairs.

    Returns:
        The number of records written.
    """
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    count = 0
    with atomic_path(path) as temp_path, tf.io.TFRecordWriter(temp_path) as writer:
        for signature_name, inputs in requests:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name),
            )
            for name, value in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
            count += 1
    return count


def unless_empty(fn: Callable[[tf.Tensor], _T], batch: tf.Tensor, empty: Callable[[], _T]) -> _T:
    """``fn(batch)``, or ``empty()`` (the outputs of an empty batch) when ``batch`` has 0 items: TF's oneDNN
    convolution fails on a batch of 0 images with a misleading "input depth must be evenly divisible" error."""
    return tf.cond(tf.shape(batch)[0] > 0, lambda: fn(batch), empty)


# -- encoded images ----------------------------------------------------------------------------------------------------


def is_jpeg_or_png(image_bytes: tf.Tensor) -> tf.Tensor:
    """bool tensor of ``image_bytes``' shape: each string starts like a JPEG or a PNG file."""
    is_png = tf.equal(tf.strings.substr(image_bytes, 0, len(_PNG_SIGNATURE)), _PNG_SIGNATURE)
    return tf.logical_or(tf.io.is_jpeg(image_bytes), is_png)


def _header_uint(padded: tf.Tensor, offset: int, size: int, little_endian: bool) -> tf.Tensor:
    """int64 scalar: the unsigned integer of ``size`` bytes at ``offset`` of a scalar string."""
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, offset, size), tf.uint8), tf.int64)
    weights = tf.constant([256**i for i in range(size)][:: 1 if little_endian else -1], tf.int64)
    return tf.reduce_sum(tf.reshape(raw, [size]) * weights)


def encoded_image_size(image_bytes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``(known, [height, width])`` of one encoded image (a scalar string) read from its header, before decoding:
    JPEG (``tf.image.extract_jpeg_shape``), PNG (IHDR), GIF (logical screen), BMP (info header). ``known`` is a bool
    scalar, false for other data (the size is then ``[0, 0]``); the size is int64 ``[2]``."""
    padded = tf.strings.join([image_bytes, tf.constant(b"\0" * 32)])
    head = tf.strings.substr(padded, 0, 8)
    is_jpeg = tf.io.is_jpeg(image_bytes)
    is_png = tf.equal(head, _PNG_SIGNATURE)
    is_gif = tf.equal(tf.strings.substr(head, 0, 4), b"GIF8")
    is_bmp = tf.equal(tf.strings.substr(head, 0, 2), b"BM")

    def header_size() -> tf.Tensor:
        png = tf.stack([_header_uint(padded, 20, 4, False), _header_uint(padded, 16, 4, False)])
        gif = tf.stack([_header_uint(padded, 8, 2, True), _header_uint(padded, 6, 2, True)])
        bmp_height = _header_uint(padded, 22, 4, True)
        bmp_height = tf.where(bmp_height >= 2**31, 2**32 - bmp_height, bmp_height)  # top-down BMPs: negative
        bmp = tf.stack([bmp_height, _header_uint(padded, 18, 4, True)])
        return tf.where(is_png, png, tf.where(is_gif, gif, tf.where(is_bmp, bmp, tf.zeros([2], tf.int64))))

    size = tf.cond(is_jpeg, lambda: tf.cast(tf.image.extract_jpeg_shape(image_bytes)[:2], tf.int64), header_size)
    return tf.reduce_any(tf.stack([is_jpeg, is_png, is_gif, is_bmp])), size


def is_webp(image_bytes: tf.Tensor) -> tf.Tensor:
    """bool tensor of ``image_bytes``' shape: each string starts like a WebP file (``RIFF....WEBP``)."""
    padded = tf.strings.join([image_bytes, tf.constant(b"\0" * 12)])
    riff = tf.equal(tf.strings.substr(padded, 0, 4), b"RIFF")
    return tf.logical_and(riff, tf.equal(tf.strings.substr(padded, 8, 4), b"WEBP"))


#: The default cap on an encoded image's pixels (height x width) in the ``serving_bytes`` signatures.
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000

IMAGE_FORMATS = "JPEG, PNG, GIF, BMP or WebP"


def check_image_bytes(image_bytes: tf.Tensor) -> tf.Tensor:
    """``image_bytes`` as a 1-D string tensor ``[B]``, or (when run) an InvalidArgumentError saying a 1-D string
    tensor is needed, with the shape received: the ``serving_bytes`` signatures take any rank, so a scalar or a
    ``[B, 1]`` request gets this message instead of an internal error of the graph."""
    rank_ok = tf.equal(tf.rank(image_bytes), 1)
    check = tf.debugging.Assert(
        rank_ok,
        [
            "image_bytes must be a 1-D string tensor [batch] of encoded images (one string per image; a single image "
            "is a batch of one); got shape",
            tf.shape(image_bytes),
        ],
    )
    with tf.control_dependencies([check]):
        return tf.reshape(image_bytes, [-1])


def _header_facts(image_bytes: tf.Tensor, max_pixels: int) -> dict[str, tf.Tensor]:
    """What one encoded image's first bytes say, without decoding: bool scalars ``empty``, ``known`` (JPEG, PNG, GIF
    or BMP with a size in the header), ``webp``, ``over_cap`` (the header's size over ``max_pixels``), ``ok`` (none
    of the problems: the data may be decoded), and int64 ``size`` ``[2]``."""
    empty = tf.equal(tf.strings.length(image_bytes), 0)
    webp = is_webp(image_bytes)
    known, size = encoded_image_size(image_bytes)
    over_cap = known & (size[0] * size[1] > max_pixels)
    ok = tf.logical_not(empty) & (known | webp) & tf.logical_not(over_cap)
    return {"empty": empty, "known": known, "webp": webp, "over_cap": over_cap, "ok": ok, "size": size}


def probe_images(image_bytes: tf.Tensor, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> tuple[tf.Tensor, tf.Tensor]:
    """Try to decode each encoded image ``[B]`` without failing: ``(decodable bool [B], sizes int32 [B, 2])``.

    An image whose header is refused (empty, unknown format, over ``max_pixels``) is not decoded (``decodable``
    true, size ``[0, 0]``: :func:`decode_image` refuses it with its own message). The others are decoded in a
    ``tf.data`` pipeline whose ``ignore_errors`` drops the ones the decoder fails on (truncated or corrupt data):
    those are ``decodable`` false, so :func:`decode_image` can name their index instead of letting the decoder's
    text, which names no image, reach the client. A graph cannot catch an op's error any other way.
    """
    count = tf.size(image_bytes, out_type=tf.int64)

    def probe(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        data = tf.gather(image_bytes, index)
        ok = _header_facts(data, max_pixels)["ok"]

        def decoded_size() -> tf.Tensor:
            image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
            return tf.shape(image)[:2]

        return index, tf.cond(ok, decoded_size, lambda: tf.zeros([2], tf.int32))

    probed = tf.data.Dataset.range(count).map(probe).ignore_errors()

    def add(state: tuple[tf.Tensor, tf.Tensor], item: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        (decodable, sizes), (index, size) = state, item
        return (
            tf.tensor_scatter_nd_update(decodable, [[index]], [True]),
            tf.tensor_scatter_nd_update(sizes, [[index]], [size]),
        )

    return probed.reduce((tf.zeros([count], tf.bool), tf.zeros([count, 2], tf.int32)), add)


def decode_image(
    image_bytes: tf.Tensor,
    index: tf.Tensor,
    channels: int = 3,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    decodable: tf.Tensor | None = None,
) -> tf.Tensor:
    """One encoded image (scalar string) -> uint8 ``[H, W, channels]``: the one decoder of the ``serving_bytes``
    signatures (NIN and Mask R-CNN).

    JPEG, PNG, GIF (first frame), BMP and WebP; ``channels`` 3 (grayscale and RGBA converted to RGB) or 1
    (color converted to gray). Before decoding, the height and width in the header (JPEG, PNG, GIF, BMP) are
    checked against ``max_pixels``; WebP is checked after decoding.

    ``decodable`` (a bool scalar, from :func:`probe_images`): false when the decoder fails on the data; the image is
    then refused as corrupt or truncated, naming its index, before the decoder runs. Without it, corrupt data
    gives the decoder's own error, which names no image.

    Raises:
        tf.errors.InvalidArgumentError: when run, naming ``image_bytes[index]`` and the problem: empty input, an
            unknown format, an image over ``max_pixels`` (its size and the cap), corrupt or truncated data (with
            ``decodable``), or an image with no pixels.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    max_pixels = int(max_pixels)

    def message(text: str, *values: tf.Tensor) -> list[tf.Tensor]:
        return [tf.strings.format("image_bytes[{}] " + text, (index, *values))]

    facts = _header_facts(image_bytes, max_pixels)
    empty, known, webp, size = facts["empty"], facts["known"], facts["webp"], facts["size"]
    pixels = size[0] * size[1]
    checks = [
        tf.debugging.Assert(tf.logical_not(empty), message("is empty")),
        tf.debugging.Assert(empty | known | webp, message(f"is not a {IMAGE_FORMATS} image")),
        tf.debugging.Assert(
            tf.logical_not(known) | (pixels <= max_pixels),
            message(
                f"is {{}}x{{}} (height x width) = {{}} pixels, over the cap of {max_pixels} pixels (max_image_pixels)",
                size[0],
                size[1],
                pixels,
            ),
        ),
    ]
    if decodable is not None:  # only when the header passed, so one problem gives one message
        kind = tf.where(
            tf.io.is_jpeg(image_bytes),
            "JPEG",
            tf.where(
                is_jpeg_or_png(image_bytes),
                "PNG",
                tf.where(webp, "WebP", tf.where(tf.equal(tf.strings.substr(image_bytes, 0, 2), b"BM"), "BMP", "GIF")),
            ),
        )
        text = tf.strings.join([message("is a corrupt or truncated ")[0], kind, " image: the decoder cannot read it"])
        checks.append(tf.debugging.Assert(decodable | tf.logical_not(facts["ok"]), [text]))

    def decode(decode_channels: int) -> tf.Tensor:
        image = tf.io.decode_image(image_bytes, channels=decode_channels, dtype=tf.uint8, expand_animations=False)
        return tf.ensure_shape(image, [None, None, decode_channels])

    with tf.control_dependencies(checks):
        if channels == 3:
            image = decode(3)
        else:  # GIF, BMP and WebP decode to RGB only
            image = tf.cond(
                is_jpeg_or_png(image_bytes),
                lambda: decode(1),
                lambda: tf.cast(tf.round(tf.image.rgb_to_grayscale(tf.cast(decode(3), tf.float32))), tf.uint8),
            )
    image = tf.ensure_shape(image, [None, None, channels])
    decoded = tf.shape(image, out_type=tf.int64)[:2]
    checks = [
        tf.debugging.Assert(tf.reduce_min(decoded) > 0, message("decodes to an empty image")),
        tf.debugging.Assert(
            decoded[0] * decoded[1] <= max_pixels,
            message(
                f"decodes to {{}}x{{}} (height x width), over the cap of {max_pixels} pixels (max_image_pixels)",
                decoded[0],
                decoded[1],
            ),
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(image)


def _with_probe(image_bytes: tf.Tensor, decodable: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    if decodable is None:
        decodable = tf.ones(tf.shape(image_bytes), tf.bool)  # unknown: corrupt data gives the decoder's own error
    return image_bytes, tf.range(tf.size(image_bytes)), decodable


def decoded_sizes(
    image_bytes: tf.Tensor, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, decodable: tf.Tensor | None = None
) -> tf.Tensor:
    """int32 ``[B, 2]``: the ``(height, width)`` of each encoded image ``[B]`` (decoded, with the errors of
    :func:`decode_image`; ``decodable`` from :func:`probe_images`)."""
    return tf.map_fn(
        lambda args: tf.shape(decode_image(args[0], args[1], max_pixels=max_pixels, decodable=args[2]))[:2],
        _with_probe(image_bytes, decodable),
        fn_output_signature=tf.TensorSpec([2], tf.int32),
    )


def decode_batch(
    image_bytes: tf.Tensor, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, decodable: tf.Tensor | None = None
) -> tf.Tensor:
    """Encoded images ``[B]``, ``B >= 1``, all of one size (see :func:`decoded_sizes`) -> uint8 ``[B, H, W, 3]``."""
    return tf.map_fn(
        lambda args: decode_image(args[0], args[1], max_pixels=max_pixels, decodable=args[2]),
        _with_probe(image_bytes, decodable),
        fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
    )


def check_max_image_pixels(max_image_pixels: int) -> int:
    """``max_image_pixels`` as a positive int that fits int64 (the graph compares it with the header's
    height x width in int64), or a ValueError naming it."""
    if (
        isinstance(max_image_pixels, bool)
        or not isinstance(max_image_pixels, (int, np.integer))
        or not (1 <= max_image_pixels <= np.iinfo(np.int64).max)
    ):
        raise ValueError(f"max_image_pixels must be a positive int of at most 2**63 - 1, got {max_image_pixels!r}")
    return int(max_image_pixels)
