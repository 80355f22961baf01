"""Mask R-CNN: SavedModel export in the TF Serving layout, TFLite (LiteRT) conversion, and running the ``.tflite``
files (with the letterbox that fits photographs of any size into a file's fixed input).

SavedModel (:func:`export_mask_rcnn_saved_model`, tag ``serve``) in ``<base_dir>/<model_name>/<version>/``
(:mod:`kzoo.export.serving`); it runs with TensorFlow alone (no kzoo import). Two signatures, both for images of any
size:

- ``serving_default``: ``images`` uint8 ``[B, H, W, 3]`` RGB pixels ->
  ``detection_boxes`` float32 ``[B, D, 4]`` ``[ymin, xmin, ymax, xmax]`` in input-image pixels,
  ``detection_scores`` float32 ``[B, D]``, ``detection_classes`` int32 ``[B, D]`` (1..K-1, 0 for padding),
  ``num_detections`` int32 ``[B]``, ``detection_masks`` float32 ``[B, D, 28, 28]`` (RoI-space probabilities
  of the detected class); with ``full_image_masks``, ``detection_full_masks`` uint8 ``[B, D, H, W]`` (0/1,
  pasted in the graph as :func:`kzoo.ops.masks.paste_masks` does); with ``class_names``,
  ``detection_class_names`` string ``[B, D]`` (``""`` for padding). Rows at and after ``num_detections`` are 0.
- ``serving_bytes``: ``image_bytes`` string ``[B]``, each an encoded JPEG, PNG, GIF, BMP or WebP (REST clients
  send ``{"b64": "..."}``), decoded to RGB (grayscale and RGBA converted; :func:`kzoo.export.serving.decode_image`,
  which refuses images over ``max_image_pixels`` before decoding them; every error names ``image_bytes[i]`` and the
  problem, corrupt or truncated data included, and an input of another rank is refused, saying a 1-D string tensor
  is needed), of any sizes -> the same outputs, each
  image's boxes in its own pixels. Images of one size run as one batch, mixed sizes one image at a time, and
  then ``detection_full_masks`` is ``[B, D, H_max, W_max]``: image ``b``'s masks in ``[:, :H_b, :W_b]``, zeros
  beyond.

Inside, an image of unknown size is resized (short side ``input.min_size``, long side at most
``input.max_size``) onto a static ``input.max_size x input.max_size`` canvas
(:func:`kzoo.ops.resize.resize_and_pad`), so every later shape is static.
``D = config.detection.max_detections``.

TFLite (:func:`convert_mask_rcnn_tflite`; run the files with :func:`run_mask_rcnn_tflite`, or
:func:`run_mask_rcnn_tflite_on_photos` for photographs of any size). The ``.tflite`` model has a fixed input:
``images`` uint8 ``[1, H, W, 3]`` RGB pixels, as the SavedModel's ``serving_default`` takes (a ``shape_signature``
without ``-1``; an interpreter resized to another shape fails at ``allocate_tensors`` or ``invoke``; floats cannot
be set: see :mod:`kzoo.export.tflite` for this contract and what the file cannot check, e.g. RGB vs BGR, or a
photograph squeezed instead of letterboxed), and the signature ``serving_default`` with the outputs of
:class:`kzoo.models.mask_rcnn.MaskRCNNModel`: ``detection_boxes`` float32 ``[1, D, 4]`` (``[ymin, xmin, ymax,
xmax]`` in input pixels), ``detection_scores`` float32 ``[1, D]``, ``detection_classes`` int32 ``[1, D]``,
``num_detections`` int32 ``[1]``, ``detection_masks`` float32 ``[1, D, 28, 28]``. Preprocessing (resize,
normalization, padding), the RPN, RoIAlign, NMS and the mask selection are all inside the graph; image decoding and
mask pasting are not.

Only TFLite builtin ops are allowed (no Select TF ops, which device runtimes usually lack), so conversion fails
on an unsupported op instead of silently producing a Flex model. For that the model is rebuilt with
``roi_align.method="gather"`` (``CropAndResize`` is not a builtin; the gather kernel has the same weights and agrees
with it) and ``nms_method="per_image"`` (TFLite's builtin NMS op instead of ``WHILE`` loops; same results, and
full-integer quantization needs it, see :mod:`kzoo.ops.nms`), and the weights are copied.

Quantization (``quantize``): ``"none"`` (float32), ``"float16"`` (float16 weights), ``"dynamic"`` (int8 weights,
float activations), ``"int8"``: the convolutions and fully connected layers (:data:`INT8_OPS`, nearly all of the
compute) run with int8 weights and activations calibrated on ``representative_images``; every other op stays
float32, so the detections stay close to the Keras model's. Letting the converter quantize the whole graph
instead makes the post-processing's box coordinates, class offsets and scores int8 and the detections unusable
(the measured agreement of both: benchmarks/README.md).

Resizing and the inverse box mapping of the letterbox are :mod:`kzoo.ops.resize`'s (the model's own rule, floor
rounding).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import cast

import numpy as np
import tensorflow as tf

from kzoo.export.serving import (
    DEFAULT_MAX_IMAGE_PIXELS,
    WARMUP_FILE,
    check_image_bytes,
    check_max_image_pixels,
    decode_batch,
    decode_image,
    new_version_dir,
    probe_images,
    unless_empty,
    write_class_names,
    write_prediction_logs,
)
from kzoo.export.tflite import (
    FIXED_SIZE_HINT,
    check_output_file,
    check_quantize,
    check_representative_images,
    convert_image_function_to_tflite,
    load_interpreter,
)
from kzoo.models.mask_rcnn import MaskRCNNModel
from kzoo.models.mask_rcnn_config import MaskRCNNConfig
from kzoo.ops import resize
from kzoo.ops.image_checks import assert_image_shape, check_images_np
from kzoo.ops.masks import paste_masks_tf
from kzoo.utils.files import atomic_directory, write_bytes

__all__ = [
    "INT8_OPS",
    "MASK_RCNN_OUTPUT_KEYS",
    "TFLITE_INPUT_DTYPES",
    "convert_mask_rcnn_tflite",
    "export_mask_rcnn_saved_model",
    "letterbox",
    "mask_rcnn_warmup_requests",
    "run_mask_rcnn_tflite",
    "run_mask_rcnn_tflite_on_photos",
    "tflite_ready_model",
]

MASK_RCNN_OUTPUT_KEYS = (
    "detection_boxes",
    "detection_scores",
    "detection_classes",
    "num_detections",
    "detection_masks",
)

#: the input dtype of kzoo's ``.tflite`` files (float32 inputs, which let ``[0, 1]`` floats or NaN in unchecked,
#: are no longer written)
TFLITE_INPUT_DTYPES = ("uint8",)

#: the ops that get int8 kernels in the ``"int8"`` variant: the network's convolutions and matrix products
INT8_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


# -- SavedModel --------------------------------------------------------------------------------------------------------


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
        model: a built :class:`kzoo.models.mask_rcnn.MaskRCNNModel` (any ``roi_align.method`` / ``nms_method``).
        export_dir: the TF Serving model base directory; created if missing.
        model_name: the model's directory name inside ``export_dir``.
        version: the version number (a positive int); default: one more than the largest existing numeric
            version directory, or 1.
        full_image_masks: add the ``detection_full_masks`` output, uint8 ``[B, D, H, W]`` (``D`` full-size masks
            per image: ``B * D * H * W`` bytes per response).
        warmup_images: write ``assets.extra/tf_serving_warmup_requests``: an int ``n`` for ``n`` random
            ``input.min_size x input.min_size`` images, or a list of uint8 images ``[H, W, 3]`` (or batches
            ``[B, H, W, 3]``);
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
    warmup = _warmup_images(warmup_images, config.input.min_size)
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
    detections = config.detection.max_detections
    mask_size = 2 * config.roi_align.mask_size
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


# -- TFLite ------------------------------------------------------------------------------------------------------------


def convert_mask_rcnn_tflite(
    model: MaskRCNNModel | MaskRCNNConfig,
    path: str | os.PathLike,
    image_size: tuple[int, int] | None = None,
    quantize: str = "none",
    representative_images: np.ndarray | None = None,
    weights: str | os.PathLike | None = None,
    input_dtype: str = "uint8",
    overwrite: bool = True,
) -> str:
    """Convert a Mask R-CNN to a builtin-ops-only ``.tflite`` file with a fixed input size.

    Args:
        model: a built :class:`MaskRCNNModel` (its weights are used), or a :class:`MaskRCNNConfig` (random
            weights unless ``weights`` is given). Rebuilt with ``roi_align.method="gather"`` and
            ``nms_method="per_image"`` when it uses other kernels (same weights, same results).
        path: the ``.tflite`` file to write (atomically: a temporary file, then a rename).
        image_size: ``(H, W)`` of the input images. The model resizes them inside as its config says
            (``input.min_size``/``input.max_size``); ``min_size == max_size == max(H, W)`` avoids a resize for
            square inputs. ``None``: the model's fixed size (``MaskRCNN(input_shape=(H, W, 3))``,
            ``model.image_shape``).
        quantize: ``"none"``, ``"float16"``, ``"dynamic"`` or ``"int8"`` (see the module docstring).
        representative_images: uint8 (or float) pixels ``[N, H, W, 3]`` in ``0..255`` for the ``"int8"``
            calibration (a few dozen typical images); ignored otherwise.
        weights: a ``.weights.h5`` file to load when ``model`` is a config.
        input_dtype: dtype of the input pixels: ``"uint8"`` only (the argument is kept for older callers).
        overwrite: replace an existing file at ``path`` (atomically); ``False``: refuse it (FileExistsError),
            before any conversion work (``kzoo export`` passes ``False`` unless ``--overwrite``).

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: unknown ``quantize`` or ``input_dtype``, a bad ``image_size``, missing or badly shaped
            ``representative_images`` for ``"int8"``, ``weights`` with a model, or an op that is not a TFLite
            builtin (the message names it).
        FileNotFoundError: a missing ``weights`` file.
        RuntimeError: ``"int8"`` on a TensorFlow release without the quantizer entry point it uses.
    """
    check_quantize(quantize)
    check_output_file(path, overwrite)
    if input_dtype not in TFLITE_INPUT_DTYPES:
        raise ValueError(
            f"input_dtype must be one of {TFLITE_INPUT_DTYPES}, got {input_dtype!r}: kzoo's .tflite files take uint8 "
            "pixels, so a caller of the interpreter cannot pass floats in [0, 1] or NaN"
        )
    if image_size is None:
        fixed = model.image_shape if isinstance(model, MaskRCNNModel) else None
        if fixed is None:
            raise ValueError(
                "image_size=(H, W) is needed: a .tflite file takes one input size (a model built with "
                "MaskRCNN(input_shape=(H, W, 3)) brings its own)"
            )
        image_size = fixed[:2]
    height, width = check_image_size(image_size)
    if quantize == "int8":
        representative_images = check_representative_images(representative_images, (height, width, 3))
    ready = tflite_ready_model(model, (height, width), weights)

    def detect(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        out = ready(pixels, training=False)
        return {key: out[key] for key in MASK_RCNN_OUTPUT_KEYS}

    flatbuffer = convert_image_function_to_tflite(detect, (height, width, 3), quantize, representative_images, INT8_OPS)
    return write_bytes(check_output_file(path, overwrite), flatbuffer)


def tflite_ready_model(
    model: MaskRCNNModel | MaskRCNNConfig,
    image_size: tuple[int, int],
    weights: str | os.PathLike | None = None,
) -> MaskRCNNModel:
    """``model`` itself when it already uses the TFLite kernels (``roi_align.method="gather"``,
    ``nms_method="per_image"``), else a model rebuilt with them from its config and given its weights (or
    ``weights``, or random weights for a config). Built on an input of ``image_size``."""
    if isinstance(model, MaskRCNNModel):
        if weights is not None:
            raise ValueError("weights= is for a MaskRCNNConfig; a MaskRCNNModel brings its own weights")
        config = model.config
    elif isinstance(model, MaskRCNNConfig):
        config = model
    else:
        raise TypeError(f"model must be a MaskRCNNModel or a MaskRCNNConfig, got {type(model).__name__}")
    wanted = config.replace(roi_align={"method": "gather"}, nms_method="per_image")
    if isinstance(model, MaskRCNNModel) and wanted == config:
        return model
    ready = MaskRCNNModel(wanted, name=model.name if isinstance(model, MaskRCNNModel) else "mask_rcnn")
    ready(np.zeros((1, *image_size, 3), np.uint8))  # build every weight
    if isinstance(model, MaskRCNNModel):
        values = model.get_weights()
        if len(values) != len(ready.weights):
            raise ValueError(f"cannot copy {len(values)} weights into the rebuilt model's {len(ready.weights)}")
        ready.set_weights(values)
    elif weights is not None:
        from kzoo.models.weight_files import load_weights_file

        load_weights_file(ready, weights)  # FileNotFoundError, or one line naming the first layer that differs
    return ready


def check_image_size(image_size: Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` as positive ints, or a ValueError naming ``image_size``."""
    try:
        height, width = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (height, width), got {image_size!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return height, width


# -- running .tflite files ---------------------------------------------------------------------------------------------


def run_mask_rcnn_tflite(
    path: str | os.PathLike, images: np.ndarray, num_threads: int | None = None
) -> dict[str, np.ndarray]:
    """Run a ``.tflite`` Mask R-CNN written by ``convert_mask_rcnn_tflite`` with LiteRT, one image at a time.

    Args:
        path: the ``.tflite`` file.
        images: pixels ``[N, H, W, 3]`` (or one image ``[H, W, 3]``) in ``0..255``, uint8 or float (the input
            contract of :mod:`kzoo.ops.image_checks`), of the model's input size (other sizes are refused: see
            :func:`run_mask_rcnn_tflite_on_photos`); cast (rounded, for a uint8 input) to the model's input dtype.
        num_threads: LiteRT CPU threads (``None``: its default).

    Returns:
        ``detection_boxes`` float32 ``[N, D, 4]``, ``detection_scores`` float32 ``[N, D]``,
        ``detection_classes`` int32 ``[N, D]``, ``num_detections`` int32 ``[N]``, ``detection_masks`` float32
        ``[N, D, 28, 28]``. Outputs are found by signature name, or (for a file without signatures) by
        rank and dtype.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: ``images`` break the input contract (rank, channels, dtype, values) or do not match the
            model's input size (both sizes named).
    """
    interpreter = load_interpreter(path, num_threads=num_threads)
    interpreter.allocate_tensors()
    (input_detail,) = interpreter.get_input_details()
    expected = tuple(int(d) for d in input_detail["shape"][1:])
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[np.newaxis]
    height, width, channels = expected
    check_images_np(images, channels=channels, height=height, width=width, allow_empty=True, hint=FIXED_SIZE_HINT)
    dtype = np.dtype(input_detail["dtype"])
    if dtype == np.uint8 and images.dtype != np.uint8:
        images = np.clip(np.round(images), 0, 255)
    images = images.astype(dtype)

    signatures = interpreter.get_signature_list()
    runner = interpreter.get_signature_runner("serving_default") if "serving_default" in signatures else None
    by_kind = outputs_by_kind(interpreter)
    results: list[dict[str, np.ndarray]] = []
    for image in images:
        if runner is not None:
            (input_name,) = signatures["serving_default"]["inputs"]
            out = runner(**{input_name: image[np.newaxis]})
        else:
            interpreter.set_tensor(input_detail["index"], image[np.newaxis])
            interpreter.invoke()
            out = {key: interpreter.get_tensor(detail["index"]) for key, detail in by_kind.items()}
        results.append({key: np.array(out[key])[0] for key in MASK_RCNN_OUTPUT_KEYS})
    if not results:
        return {key: np.zeros((0, *detail["shape"][1:]), np.dtype(detail["dtype"])) for key, detail in by_kind.items()}
    return {key: np.stack([r[key] for r in results]) for key in MASK_RCNN_OUTPUT_KEYS}


def letterbox(
    image: np.ndarray, size: tuple[int, int], min_size: int | None = None, max_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fit one image into a fixed input size the way kzoo's model and training pipeline resize
    (:func:`kzoo.ops.resize.letterbox`: aspect ratio kept, ``floor`` of the scaled sides, bilinear, zero padding at
    the bottom and right).

    Args:
        image: uint8 (or float) pixels ``[H, W, 3]`` in ``0..255``.
        size: ``(height, width)`` of the canvas, e.g. a ``.tflite`` file's input size.
        min_size, max_size: the resize rule (default ``max(size)``: the image just fits the canvas); the resized
            image is capped to the canvas in any case.

    Returns:
        ``(canvas, scales)``: uint8 ``[height, width, 3]``, and float64 ``[2]``, the vertical and horizontal factors
        from image to canvas pixels (the resized size over the image size, which the floor makes differ slightly).
        :func:`kzoo.ops.resize.boxes_to_input` (with the resized size ``scales * image size``) maps canvas boxes
        back into the image.

    Raises:
        ValueError: ``image`` is not ``[H, W, 3]`` with ``H, W >= 1``, or a bad ``size``.
    """
    image = np.asarray(image)
    canvas, (new_h, new_w) = _letterbox(image, size, min_size, max_size)
    return canvas, np.array([new_h / image.shape[0], new_w / image.shape[1]])


def _letterbox(image: np.ndarray, size, min_size=None, max_size=None) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`letterbox`'s uint8 canvas and the resized ``(h, w)``."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise ValueError(f"image must be [H, W, 3] with H, W >= 1, got {list(image.shape)}")
    check_images_np(image[np.newaxis], channels=3, name="image")
    padded, resized = resize.letterbox(image.astype(np.float32), check_image_size(size), min_size, max_size)
    return np.clip(np.round(padded.numpy()), 0, 255).astype(np.uint8), resized


def run_mask_rcnn_tflite_on_photos(
    path: str | os.PathLike,
    photos: Sequence[np.ndarray],
    num_threads: int | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Run a ``.tflite`` Mask R-CNN on images of any sizes: each is letterboxed to the file's input size
    (:func:`letterbox`) and its boxes are mapped back into its own pixels (:func:`kzoo.ops.resize.boxes_to_input`).

    Args:
        path: the ``.tflite`` file.
        photos: ``N`` images ``[H_i, W_i, 3]``, uint8 (or float in ``0..255``), each of its own size (the input
            contract of :mod:`kzoo.ops.image_checks`, checked per photo: errors name ``photos[i]``).
        num_threads: LiteRT CPU threads.
        min_size, max_size: :func:`letterbox`'s resize rule (default: each photo just fits the input).

    Returns:
        As :func:`run_mask_rcnn_tflite`, with ``detection_boxes`` float32 ``[N, D, 4]`` in each image's pixels
        (clipped to it); ``detection_masks`` stay in the box frame (paste them with
        :func:`kzoo.ops.masks.paste_masks` at each image's size).

    Raises:
        ValueError: a photo that breaks the input contract, named by its index.
    """
    (detail,) = load_interpreter(path).get_input_details()
    size = (int(detail["shape"][1]), int(detail["shape"][2]))
    for index, photo in enumerate(photos):
        photo = np.asarray(photo)
        if photo.ndim != 3:
            raise ValueError(f"photos[{index}] must be one image [height, width, 3], got shape {list(photo.shape)}")
        check_images_np(photo[np.newaxis], channels=3, name=f"photos[{index}]")
    boxed = [_letterbox(photo, size, min_size, max_size) for photo in photos]
    if not boxed:
        return run_mask_rcnn_tflite(path, np.zeros((0, *size, 3), np.uint8), num_threads)
    out = run_mask_rcnn_tflite(path, np.stack([canvas for canvas, _ in boxed]), num_threads)
    resized = np.array([hw for _, hw in boxed])
    originals = np.array([np.shape(photo)[:2] for photo in photos])
    out["detection_boxes"] = resize.boxes_to_input(out["detection_boxes"], resized, originals, clip=True)
    out["detection_boxes"] = out["detection_boxes"].astype(np.float32)
    return out


_OUTPUT_KINDS = {  # (rank, integer dtype) -> output: unique, so outputs are found without names
    (3, False): "detection_boxes",
    (2, False): "detection_scores",
    (2, True): "detection_classes",
    (1, True): "num_detections",
    (4, False): "detection_masks",
}


def outputs_by_kind(interpreter) -> dict[str, dict]:
    """A Mask R-CNN interpreter's output details by output name, told apart by rank and dtype."""
    out = {}
    for detail in interpreter.get_output_details():
        kind = (len(detail["shape"]), bool(np.issubdtype(np.dtype(detail["dtype"]), np.integer)))
        if kind not in _OUTPUT_KINDS or _OUTPUT_KINDS[kind] in out:
            raise ValueError(
                f"not a kzoo Mask R-CNN .tflite file: unexpected output {detail['name']} {list(detail['shape'])} "
                f"{np.dtype(detail['dtype'])}"
            )
        out[_OUTPUT_KINDS[kind]] = detail
    if len(out) != len(MASK_RCNN_OUTPUT_KEYS):
        raise ValueError(
            f"not a kzoo Mask R-CNN .tflite file: outputs {sorted(out)}, expected {list(MASK_RCNN_OUTPUT_KEYS)}"
        )
    return out
