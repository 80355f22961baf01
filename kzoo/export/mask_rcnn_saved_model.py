"""SavedModel export of Mask R-CNN in the TF Serving layout.

The SavedModel (tag ``serve``) lives in ``<base_dir>/<model_name>/<version>/`` and runs with TensorFlow alone
(no kzoo import). Two signatures, both for images of any size:

- ``serving_default``: ``images`` uint8 ``[B, H, W, 3]`` RGB pixels ->
  ``detection_boxes`` float32 ``[B, D, 4]`` ``[ymin, xmin, ymax, xmax]`` in input-image pixels,
  ``detection_scores`` float32 ``[B, D]``, ``detection_classes`` int32 ``[B, D]`` (1..K-1, 0 for padding),
  ``num_detections`` int32 ``[B]``, ``detection_masks`` float32 ``[B, D, 28, 28]`` (RoI-space probabilities
  of the detected class); with ``full_image_masks``, ``detection_full_masks`` uint8 ``[B, D, H, W]`` (0/1,
  pasted in the graph as :func:`kzoo.ops.masks.paste_masks` does); with ``class_names``,
  ``detection_class_names`` string ``[B, D]`` (``""`` for padding). Rows at and after ``num_detections`` are 0.
- ``serving_bytes``: ``image_bytes`` string ``[B]``, each an encoded JPEG, PNG, GIF, BMP or WebP (REST clients
  send ``{"b64": "..."}``), decoded to RGB (grayscale and RGBA converted; :func:`kzoo.export.common.decode_image`,
  which refuses images over ``max_image_pixels`` before decoding them; every error names ``image_bytes[i]`` and the
  problem, corrupt or truncated data included, and an input of another rank is refused, saying a 1-D string tensor
  is needed), of any sizes -> the same outputs, each
  image's boxes in its own pixels. Images of one size run as one batch, mixed sizes one image at a time, and
  then ``detection_full_masks`` is ``[B, D, H_max, W_max]``: image ``b``'s masks in ``[:, :H_b, :W_b]``, zeros
  beyond.

Inside, an image of unknown size is resized (short side ``min_size``, long side at most ``max_size``) onto a
static ``max_size x max_size`` canvas (:func:`kzoo.ops.resize.resize_and_pad`), so every later shape is static.
``D = config.max_detections``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import cast

import numpy as np
import tensorflow as tf

from kzoo.export.common import (
    DEFAULT_MAX_IMAGE_PIXELS,
    MASK_RCNN_OUTPUT_KEYS,
    WARMUP_FILE,
    check_image_bytes,
    check_max_image_pixels,
    decode_image,
    new_version_dir,
    probe_images,
    unless_empty,
    write_class_names,
    write_prediction_logs,
)
from kzoo.models.mask_rcnn import MaskRCNNModel
from kzoo.ops.image_checks import assert_image_shape
from kzoo.ops.masks import paste_masks_tf
from kzoo.utils.files import atomic_directory

__all__ = ["export_mask_rcnn_saved_model", "mask_rcnn_warmup_requests"]


def export_mask_rcnn_saved_model(
    model: MaskRCNNModel,
    export_dir: str | os.PathLike,
    model_name: str,
    version: int | None = None,
    full_image_masks: bool = False,
    warmup_images: int | Sequence[np.ndarray] = 0,
    class_names: Sequence[str] | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> str:
    """Export a Mask R-CNN as a SavedModel in the TF Serving layout (see the module docstring for the signatures).

    Everything is written to a temporary directory inside ``export_dir/model_name`` and renamed into place at the
    end, so a failed export leaves no version directory behind.

    Args:
        model: a built :class:`kzoo.models.mask_rcnn.MaskRCNNModel` (any ``roi_method`` / ``nms_method``).
        export_dir: the TF Serving model base directory; created if missing.
        model_name: the model's directory name inside ``export_dir``.
        version: the version number (a positive int); default: one more than the largest existing numeric
            version directory, or 1.
        full_image_masks: add the ``detection_full_masks`` output, uint8 ``[B, D, H, W]`` (``D`` full-size masks
            per image: ``B * D * H * W`` bytes per response).
        warmup_images: write ``assets.extra/tf_serving_warmup_requests``: an int ``n`` for ``n`` random
            ``min_size x min_size`` images, or a list of uint8 images ``[H, W, 3]`` (or batches ``[B, H, W, 3]``);
            each gives a ``serving_default`` request and a ``serving_bytes`` request (PNG-encoded). ``0``: no file.
        class_names: optional class names, ``K`` (index = class id, the background first) or ``K - 1`` (classes
            ``1..K-1``; the background is then named ``"background"``). Written to ``assets.extra/class_names.txt``
            (``K`` lines) and served as ``detection_class_names``.
        max_image_pixels: ``serving_bytes`` refuses an image whose height x width (read from its header before
            decoding; WebP after) exceeds this, with an error naming its index, size and the cap.

    Returns:
        The version directory, ``export_dir/model_name/<version>``.

    Raises:
        TypeError: ``model`` is not a MaskRCNNModel.
        ValueError: bad ``model_name``, ``version``, ``class_names`` count, ``warmup_images`` or
            ``max_image_pixels``.
        FileExistsError: the version directory exists already.
    """
    if not isinstance(model, MaskRCNNModel):
        raise TypeError(f"model must be a kzoo MaskRCNNModel, got {type(model).__name__}")
    config = model.config
    assert config.num_classes is not None  # a built model has its class count
    names = _class_names(class_names, config.num_classes)
    warmup = _warmup_images(warmup_images, config.min_size)
    max_image_pixels = check_max_image_pixels(max_image_pixels)
    version_dir = new_version_dir(export_dir, model_name, version)

    with atomic_directory(version_dir) as temp_dir:
        module = _serving_module(model, full_image_masks, names, max_image_pixels)
        signatures = {"serving_default": module.serving_default, "serving_bytes": module.serving_bytes}
        tf.saved_model.save(module, temp_dir, signatures=signatures)
        if names is not None:
            write_class_names(temp_dir, names)
        if warmup:
            write_prediction_logs(os.path.join(temp_dir, WARMUP_FILE), model_name, mask_rcnn_warmup_requests(warmup))
    return version_dir


def mask_rcnn_warmup_requests(images: Sequence[np.ndarray]) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Warmup requests for both signatures: for each uint8 image ``[H, W, 3]`` or batch ``[B, H, W, 3]``, a
    ``serving_default`` request (``images``) and a ``serving_bytes`` request (``image_bytes``, PNG-encoded)."""
    requests = []
    for image in images:
        batch = image if image.ndim == 4 else image[np.newaxis]
        encoded = np.array([tf.io.encode_png(one).numpy() for one in batch], dtype=object)
        requests.append(("serving_default", {"images": batch}))
        requests.append(("serving_bytes", {"image_bytes": encoded}))
    return requests


def _class_names(class_names: Sequence[str] | None, num_classes: int) -> list[str] | None:
    if class_names is None:
        return None
    names = [str(name) for name in class_names]
    if len(names) == num_classes - 1:
        names = ["background", *names]
    if len(names) != num_classes:
        raise ValueError(
            f"the model has {num_classes} classes (with the background): give {num_classes} or {num_classes - 1} "
            f"class_names, got {len(names)}"
        )
    return names


def _warmup_images(warmup_images: int | Sequence[np.ndarray], min_size: int) -> list[np.ndarray]:
    if isinstance(warmup_images, (int, np.integer)) and not isinstance(warmup_images, bool):
        if warmup_images < 0:
            raise ValueError(f"warmup_images must be >= 0 or a list of images, got {warmup_images}")
        rng = np.random.default_rng(0)
        return [rng.integers(0, 256, (min_size, min_size, 3), dtype=np.uint8) for _ in range(int(warmup_images))]
    images = [np.asarray(image) for image in cast(Sequence[np.ndarray], warmup_images)]
    for index, image in enumerate(images):
        if image.dtype != np.uint8 or image.ndim not in (3, 4) or image.shape[-1] != 3 or 0 in image.shape:
            raise ValueError(
                f"warmup_images[{index}] must be a uint8 image [H, W, 3] or batch [B, H, W, 3], "
                f"got {image.dtype} {list(image.shape)}"
            )
    return images


def _serving_module(
    model: MaskRCNNModel,
    full_image_masks: bool,
    class_names: list[str] | None,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> tf.Module:
    """A ``tf.Module`` with the model's variables and the ``serving_default`` and ``serving_bytes`` functions.

    Not ``keras.export.ExportArchive``: it saves every variable twice (as the Keras variables it tracks and as the
    TF variables the endpoints use), so its SavedModel is twice the size of the model's weights.
    """
    config = model.config
    detections = config.max_detections
    mask_size = 2 * config.mask_roi_size
    names = None if class_names is None else tf.constant(class_names, tf.string)

    module = tf.Module()
    module.model_variables = [variable.value for variable in model.variables]  # the tf.Variables the graph reads

    def empty_outputs(image_size: tf.Tensor) -> dict[str, tf.Tensor]:
        out = {
            "detection_boxes": tf.zeros([0, detections, 4], tf.float32),
            "detection_scores": tf.zeros([0, detections], tf.float32),
            "detection_classes": tf.zeros([0, detections], tf.int32),
            "num_detections": tf.zeros([0], tf.int32),
            "detection_masks": tf.zeros([0, detections, mask_size, mask_size], tf.float32),
        }
        if full_image_masks:
            out["detection_full_masks"] = tf.zeros(tf.concat([[0, detections], image_size], 0), tf.uint8)
        return out

    def run(pixels: tf.Tensor, image_size: tf.Tensor) -> dict[str, tf.Tensor]:
        out = {key: value for key, value in model(pixels, training=False).items() if key in MASK_RCNN_OUTPUT_KEYS}
        if full_image_masks:
            out["detection_full_masks"] = paste_masks_tf(out["detection_masks"], out["detection_boxes"], image_size)
        return out

    def with_class_names(out: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        if names is not None:
            present = tf.sequence_mask(out["num_detections"], detections)
            out["detection_class_names"] = tf.where(present, tf.gather(names, out["detection_classes"]), "")
        return out

    def detect(images: tf.Tensor) -> dict[str, tf.Tensor]:
        image_size = tf.shape(images)[1:3]
        return unless_empty(lambda pixels: run(pixels, image_size), images, lambda: empty_outputs(image_size))

    def detect_each(image_bytes: tf.Tensor, sizes: tf.Tensor, decodable: tf.Tensor) -> dict[str, tf.Tensor]:
        """Images of different sizes, one at a time; full-image masks zero-padded to the largest height and
        width of the request."""
        padded_size = tf.reduce_max(sizes, axis=0)

        def one(args: tuple[tf.Tensor, tf.Tensor, tf.Tensor]) -> dict[str, tf.Tensor]:
            data, index, ok = args
            image = decode_image(data, index, max_pixels=max_pixels, decodable=ok)
            out = {key: value[0] for key, value in run(image[None], tf.shape(image)[:2]).items()}
            if full_image_masks:
                masks = out["detection_full_masks"]
                out["detection_full_masks"] = tf.pad(
                    masks, [[0, 0], [0, padded_size[0] - tf.shape(masks)[1]], [0, padded_size[1] - tf.shape(masks)[2]]]
                )
            return out

        spec = {key: tf.TensorSpec(value.shape[1:], value.dtype) for key, value in empty_outputs([0, 0]).items()}
        if full_image_masks:
            spec["detection_full_masks"] = tf.TensorSpec([detections, None, None], tf.uint8)
        return tf.map_fn(one, (image_bytes, tf.range(tf.size(image_bytes)), decodable), fn_output_signature=spec)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")], autograph=False)
    def serving_default(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return with_class_names(detect(assert_image_shape(images, channels=3)))

    # any rank: other ranks are refused by name (check_image_bytes)
    @tf.function(input_signature=[tf.TensorSpec(None, tf.string, name="image_bytes")], autograph=False)
    def serving_bytes(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        image_bytes = check_image_bytes(image_bytes)

        def some() -> dict[str, tf.Tensor]:
            # one decoding pass for the sizes and the corrupt data; refused images (size 0 x 0) are refused by name
            # when decoded below, whichever path runs
            decodable, sizes = probe_images(image_bytes, max_pixels)
            same = tf.reduce_all(tf.equal(sizes, sizes[:1]))
            return tf.cond(
                same,
                lambda: detect(decode_batch(image_bytes, max_pixels, decodable)),
                lambda: detect_each(image_bytes, sizes, decodable),
            )

        def nothing() -> dict[str, tf.Tensor]:
            return empty_outputs(tf.zeros([2], tf.int32))

        return with_class_names(tf.cond(tf.size(image_bytes) > 0, some, nothing))

    module.serving_default = serving_default
    module.serving_bytes = serving_bytes
    return module


def _with_probe(image_bytes: tf.Tensor, decodable: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    if decodable is None:
        decodable = tf.ones(tf.shape(image_bytes), tf.bool)  # unknown: corrupt data gives the decoder's own error
    return image_bytes, tf.range(tf.size(image_bytes)), decodable


def decoded_sizes(
    image_bytes: tf.Tensor, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, decodable: tf.Tensor | None = None
) -> tf.Tensor:
    """int32 ``[B, 2]``: the ``(height, width)`` of each encoded image ``[B]`` (decoded, with the errors of
    :func:`kzoo.export.common.decode_image`; ``decodable`` from :func:`kzoo.export.common.probe_images`)."""
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
