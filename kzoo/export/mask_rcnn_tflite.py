"""TFLite (LiteRT) conversion of Mask R-CNN, builtin ops only, and a runner for the result.

The ``.tflite`` model has a fixed input size: ``images`` ``[1, H, W, 3]`` RGB pixels in ``0..255`` (float32 or
uint8), and the signature ``serving_default`` with the outputs of :class:`kzoo.models.mask_rcnn.MaskRCNNModel`:
``detection_boxes`` float32 ``[1, D, 4]`` (``[ymin, xmin, ymax, xmax]`` in input pixels), ``detection_scores``
float32 ``[1, D]``, ``detection_classes`` int32 ``[1, D]``, ``num_detections`` int32 ``[1]``,
``detection_masks`` float32 ``[1, D, 28, 28]``. Preprocessing (resize, normalization, padding), the RPN,
RoIAlign, NMS and the mask selection are all inside the graph; image decoding and mask pasting are not.

Only TFLite builtin ops are allowed (no Select TF ops, which device runtimes usually lack), so conversion fails
on an unsupported op instead of silently producing a Flex model. For that the model is rebuilt with
``roi_method="gather"`` (``CropAndResize`` is not a builtin; the gather kernel has the same weights and agrees
with it) and ``nms_method="per_image"`` (TFLite's builtin NMS op instead of ``WHILE`` loops; same results, and
full-integer quantization needs it, see :mod:`kzoo.ops.nms`), and the weights are copied.

Quantization (``quantize``): ``"none"`` (float32), ``"float16"`` (float16 weights), ``"dynamic"`` (int8 weights,
float activations), ``"int8"``: the convolutions and fully connected layers (:data:`INT8_OPS`, nearly all of the
compute) run with int8 weights and activations calibrated on ``representative_images``; every other op stays
float32 (*measured* on the trained shapes model against Keras: all 125 detections found, 94% matched, classes
99% equal). Letting the converter quantize the whole graph instead makes the post-processing's box coordinates,
class offsets and scores int8 and the detections unusable (*measured*: 348 detections for 125, a quarter of them
matched, boxes off by up to 30 pixels).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from kzoo.export.common import (
    check_quantize,
    check_representative_images,
    representative_dataset,
    set_quantization,
    write_bytes_atomically,
)
from kzoo.models.mask_rcnn import MaskRCNNModel
from kzoo.models.mask_rcnn_config import MaskRCNNConfig

__all__ = ["INPUT_DTYPES", "INT8_OPS", "convert_function_to_tflite", "convert_mask_rcnn_tflite", "detect_photos_tflite",
           "letterbox", "run_mask_rcnn_tflite", "tflite_ready_model"]  # fmt: skip

INPUT_DTYPES = ("float32", "uint8")
#: the ops that get int8 kernels in the ``"int8"`` variant: the network's convolutions and matrix products
INT8_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
OUTPUT_KEYS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections", "detection_masks")


def convert_mask_rcnn_tflite(
    model: MaskRCNNModel | MaskRCNNConfig,
    path: str | os.PathLike,
    image_size: tuple[int, int],
    quantize: str = "none",
    representative_images: np.ndarray | None = None,
    weights: str | os.PathLike | None = None,
    input_dtype: str = "float32",
) -> str:
    """Convert a Mask R-CNN to a builtin-ops-only ``.tflite`` file with a fixed input size.

    Args:
        model: a built :class:`MaskRCNNModel` (its weights are used), or a :class:`MaskRCNNConfig` (random
            weights unless ``weights`` is given). Rebuilt with ``roi_method="gather"`` and ``nms_method="per_image"``
            when it uses other kernels (same weights, same results).
        path: the ``.tflite`` file to write (atomically: a temporary file, then a rename).
        image_size: ``(H, W)`` of the input images. The model resizes them inside as its config says
            (``min_size``/``max_size``); ``min_size == max_size == max(H, W)`` avoids a resize for square inputs.
        quantize: ``"none"``, ``"float16"``, ``"dynamic"`` or ``"int8"`` (see the module docstring).
        representative_images: uint8 (or float) pixels ``[N, H, W, 3]`` in ``0..255`` for the ``"int8"``
            calibration (a few dozen typical images); ignored otherwise.
        weights: a ``.weights.h5`` file to load when ``model`` is a config.
        input_dtype: dtype of the input pixels, ``"float32"`` or ``"uint8"``.

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
    if input_dtype not in INPUT_DTYPES:
        raise ValueError(f"input_dtype must be one of {INPUT_DTYPES}, got {input_dtype!r}")
    height, width = _check_image_size(image_size)
    if quantize == "int8":
        representative_images = check_representative_images(representative_images, (height, width, 3))
    ready = tflite_ready_model(model, (height, width), weights)

    @tf.function(input_signature=[tf.TensorSpec([1, height, width, 3], tf.as_dtype(input_dtype), name="images")])
    def detect(images: tf.Tensor) -> dict[str, tf.Tensor]:
        out = ready(images, training=False)
        return {key: out[key] for key in OUTPUT_KEYS}

    dataset = representative_dataset(representative_images, input_dtype) if quantize == "int8" else None
    flatbuffer = convert_function_to_tflite(detect, quantize, dataset, int8_ops=INT8_OPS)
    return write_bytes_atomically(path, flatbuffer)


def tflite_ready_model(
    model: MaskRCNNModel | MaskRCNNConfig,
    image_size: tuple[int, int],
    weights: str | os.PathLike | None = None,
) -> MaskRCNNModel:
    """``model`` itself when it already uses the TFLite kernels (``roi_method="gather"``, ``nms_method="per_image"``),
    else a model rebuilt with them from its config and given its weights (or ``weights``, or random weights for a
    config). Built on an input of ``image_size``."""
    if isinstance(model, MaskRCNNModel):
        if weights is not None:
            raise ValueError("weights= is for a MaskRCNNConfig; a MaskRCNNModel brings its own weights")
        config = model.config
    elif isinstance(model, MaskRCNNConfig):
        config = model
    else:
        raise TypeError(f"model must be a MaskRCNNModel or a MaskRCNNConfig, got {type(model).__name__}")
    wanted = dataclasses.replace(config, roi_method="gather", nms_method="per_image")
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
        if not os.path.isfile(os.fspath(weights)):
            raise FileNotFoundError(f"weights file not found: {weights}")
        ready.load_weights(os.fspath(weights))
    return ready


def convert_function_to_tflite(
    function: tf.types.experimental.GenericFunction,
    quantize: str = "none",
    representative_dataset: Callable[[], Iterator[list[np.ndarray]]] | None = None,
    int8_ops: Sequence[str] | None = None,
) -> bytes:
    """Convert a ``tf.function`` (one input signature, a dict of outputs) to a builtin-ops-only TFLite flatbuffer
    whose signature ``serving_default`` keeps the input and output names.

    The variables are frozen into constants first: converting the function with its variables (the only way the
    converter keeps signature names) leaves ``READ_VARIABLE`` ops that read uninitialized values in LiteRT
    (*measured*: all outputs NaN), whatever ``experimental_enable_resource_variables`` says.

    Args:
        function: a ``tf.function`` with an ``input_signature``, returning a dict of tensors.
        quantize: as :func:`convert_mask_rcnn_tflite`.
        representative_dataset: the calibration generator for ``"int8"``.
        int8_ops: for ``"int8"``: only ops of these TFLite types (e.g. ``"CONV_2D"``) get int8 kernels; every
            other op stays float. ``None``: the converter quantizes every op it can.

    Returns:
        The flatbuffer bytes.

    Raises:
        ValueError: the graph needs an op that is not a TFLite builtin (the converter's message names it).
    """
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    check_quantize(quantize)
    concrete = function.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete, lower_control_flow=False)
    structure = concrete.structured_outputs
    spec = concrete.structured_input_signature[0]

    @tf.function(input_signature=list(spec))
    def named(*inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return tf.nest.pack_sequence_as(structure, frozen(*inputs))

    # a tf.Module (not the function) as the trackable object: the converter then keeps the signature's names
    converter = tf.lite.TFLiteConverter.from_concrete_functions([named.get_concrete_function()], tf.Module())
    set_quantization(converter, quantize, representative_dataset)
    if quantize == "int8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        if int8_ops is not None:
            converter._experimental_calibrate_only = True  # calibrate here, quantize below with a deny list
    try:
        flatbuffer = converter.convert()
        if quantize == "int8" and int8_ops is not None:
            flatbuffer = _quantize_only(flatbuffer, int8_ops)
    except Exception as error:  # the converter raises its own ConverterError, not a ValueError
        text = str(error)
        if "not supported" in text or "Select TF" in text or "illegal" in text:
            raise ValueError(
                f"the model needs ops that are not TFLite builtins (kzoo's .tflite files use builtin ops only): {text}"
            ) from error
        raise
    return flatbuffer


def _quantize_only(calibrated: bytes, int8_ops: Sequence[str]) -> bytes:
    """Quantize a calibrated flatbuffer to int8 for the op types ``int8_ops`` only; every other op stays float32.

    The converter has no public switch for this: the deny list of op types is the one that
    ``tf.lite.experimental.QuantizationDebugger`` passes to the same quantizer (``denylisted_ops``). (Its deny list
    of op *names* is not enough here: tensors of denied ops still got int8 round trips, and scores were lost.)
    """
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.python import convert as lite_convert

    if not hasattr(lite_convert, "mlir_quantize"):
        raise RuntimeError(
            f"TensorFlow {tf.__version__} has no tensorflow.lite.python.convert.mlir_quantize, which kzoo's int8 "
            "Mask R-CNN conversion uses to keep the post-processing in float32 (tested with TensorFlow 2.20-2.21); "
            "use quantize='dynamic' or a TensorFlow release that has it"
        )  # fmt: skip
    present = {op["op_name"] for op in Interpreter(model_content=calibrated)._get_ops_details()}
    return lite_convert.mlir_quantize(
        calibrated, disable_per_channel=False, fully_quantize=False, enable_numeric_verify=False,
        denylisted_ops=sorted(present - set(int8_ops)),
    )  # fmt: skip


def run_mask_rcnn_tflite(
    path: str | os.PathLike, images: np.ndarray, num_threads: int | None = None
) -> dict[str, np.ndarray]:
    """Run a ``.tflite`` Mask R-CNN written by :func:`convert_mask_rcnn_tflite` with LiteRT, one image at a time.

    Args:
        path: the ``.tflite`` file.
        images: pixels ``[N, H, W, 3]`` (or one image ``[H, W, 3]``) in ``0..255``, uint8 or float, of the
            model's input size; cast (rounded and clipped, for a uint8 input) to the model's input dtype.
        num_threads: LiteRT CPU threads (``None``: its default).

    Returns:
        ``detection_boxes`` float32 ``[N, D, 4]``, ``detection_scores`` float32 ``[N, D]``,
        ``detection_classes`` int32 ``[N, D]``, ``num_detections`` int32 ``[N]``, ``detection_masks`` float32
        ``[N, D, 28, 28]``. Outputs are found by signature name, or (for a file without signatures) by
        rank and dtype.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: ``images`` do not match the model's input size.
    """
    from ai_edge_litert.interpreter import Interpreter

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no TFLite model at {path}")
    interpreter = Interpreter(model_path=path, num_threads=num_threads)
    interpreter.allocate_tensors()
    (input_detail,) = interpreter.get_input_details()
    expected = tuple(int(d) for d in input_detail["shape"][1:])
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[np.newaxis]
    if images.ndim != 4 or images.shape[1:] != expected:
        raise ValueError(f"images must have shape [N, {', '.join(map(str, expected))}], got {list(images.shape)}")
    dtype = np.dtype(input_detail["dtype"])
    if dtype == np.uint8 and images.dtype != np.uint8:
        images = np.clip(np.round(images), 0, 255)
    images = images.astype(dtype)

    signatures = interpreter.get_signature_list()
    runner = interpreter.get_signature_runner("serving_default") if "serving_default" in signatures else None
    by_kind = _outputs_by_kind(interpreter)
    results: list[dict[str, np.ndarray]] = []
    for image in images:
        if runner is not None:
            (input_name,) = signatures["serving_default"]["inputs"]
            out = runner(**{input_name: image[np.newaxis]})
        else:
            interpreter.set_tensor(input_detail["index"], image[np.newaxis])
            interpreter.invoke()
            out = {key: interpreter.get_tensor(detail["index"]) for key, detail in by_kind.items()}
        results.append({key: np.array(out[key])[0] for key in OUTPUT_KEYS})
    if not results:
        return {
            key: np.zeros((0, *detail["shape"][1:]), np.dtype(detail["dtype"])) for key, detail in by_kind.items()
        }  # fmt: skip
    return {key: np.stack([r[key] for r in results]) for key in OUTPUT_KEYS}


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Fit one image into a fixed input size the way kzoo's training pipeline does.

    The image is resized bilinearly with its aspect ratio kept, so that it just fits ``size``, and placed at the top
    left of a zero canvas (padding at the bottom and right, as the pipeline and the model's own resize pad).

    Args:
        image: uint8 (or float) pixels ``[H, W, 3]`` in ``0..255``.
        size: ``(height, width)`` of the canvas, e.g. a ``.tflite`` file's input size.

    Returns:
        ``(canvas, scales)``: uint8 ``[height, width, 3]``, and float64 ``[2]``, the vertical and horizontal factors
        from image to canvas pixels (the resized size over the image size, which rounding makes differ slightly):
        divide canvas ``y`` and ``x`` by them to get image coordinates.

    Raises:
        ValueError: ``image`` is not ``[H, W, 3]`` with ``H, W >= 1``.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise ValueError(f"image must be [H, W, 3] with H, W >= 1, got {list(image.shape)}")
    height, width = _check_image_size(size)
    scale = min(height / image.shape[0], width / image.shape[1])
    new_h = min(max(round(image.shape[0] * scale), 1), height)
    new_w = min(max(round(image.shape[1] * scale), 1), width)
    resized = tf.image.resize(tf.cast(image, tf.float32), (new_h, new_w)).numpy()
    canvas = np.zeros((height, width, 3), np.uint8)
    canvas[:new_h, :new_w] = np.clip(np.round(resized), 0, 255).astype(np.uint8)
    return canvas, np.array([new_h / image.shape[0], new_w / image.shape[1]])


def detect_photos_tflite(
    path: str | os.PathLike, photos: Sequence[np.ndarray], num_threads: int | None = None
) -> dict[str, np.ndarray]:
    """Run a ``.tflite`` Mask R-CNN on images of any sizes: each is letterboxed to the file's input size
    (:func:`letterbox`) and its boxes are mapped back into its own pixels.

    Args:
        path: the ``.tflite`` file.
        photos: ``N`` images ``[H_i, W_i, 3]``, uint8 (or float in ``0..255``), each of its own size.
        num_threads: LiteRT CPU threads.

    Returns:
        As :func:`run_mask_rcnn_tflite`, with ``detection_boxes`` float32 ``[N, D, 4]`` in each image's pixels
        (clipped to it); ``detection_masks`` stay in the box frame (paste them with
        :func:`kzoo.ops.masks.paste_masks` at each image's size).
    """
    from ai_edge_litert.interpreter import Interpreter

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no TFLite model at {path}")
    (detail,) = Interpreter(model_path=path).get_input_details()
    size = (int(detail["shape"][1]), int(detail["shape"][2]))
    boxed = [letterbox(photo, size) for photo in photos]
    if not boxed:
        return run_mask_rcnn_tflite(path, np.zeros((0, *size, 3), np.uint8), num_threads)
    out = run_mask_rcnn_tflite(path, np.stack([canvas for canvas, _ in boxed]), num_threads)
    scales = np.array([np.tile(scales, 2) for _, scales in boxed])[:, None, :]  # [N, 1, 4]: y, x, y, x
    limits = np.array([[*np.shape(photo)[:2]] * 2 for photo in photos], np.float64)[:, None, :]
    out["detection_boxes"] = np.clip(out["detection_boxes"] / scales, 0.0, limits).astype(np.float32)
    return out


_OUTPUT_KINDS = {  # (rank, integer dtype) -> output: unique, so outputs are found without names
    (3, False): "detection_boxes", (2, False): "detection_scores", (2, True): "detection_classes",
    (1, True): "num_detections", (4, False): "detection_masks",
}  # fmt: skip


def _outputs_by_kind(interpreter) -> dict[str, dict]:
    """The interpreter's output details by output name, told apart by rank and dtype."""
    out = {}
    for detail in interpreter.get_output_details():
        kind = (len(detail["shape"]), bool(np.issubdtype(np.dtype(detail["dtype"]), np.integer)))
        if kind not in _OUTPUT_KINDS or _OUTPUT_KINDS[kind] in out:
            raise ValueError(
                f"not a kzoo Mask R-CNN .tflite file: unexpected output {detail['name']} {list(detail['shape'])} "
                f"{np.dtype(detail['dtype'])}"
            )
        out[_OUTPUT_KINDS[kind]] = detail
    if len(out) != len(OUTPUT_KEYS):
        raise ValueError(f"not a kzoo Mask R-CNN .tflite file: outputs {sorted(out)}, expected {list(OUTPUT_KEYS)}")
    return out


def _check_image_size(image_size: tuple[int, int]) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (height, width), got {image_size!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return height, width
