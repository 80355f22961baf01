"""TFLite (LiteRT) for kzoo's exporters: the converter (builtin ops only, quantization settings, int8 calibration) and
loading a ``.tflite`` file into LiteRT's interpreter.

:func:`convert_function_to_tflite` turns a ``tf.function`` into a flatbuffer whose ``serving_default`` signature
keeps the input and output names; the exporters write it with :func:`kzoo.utils.files.write_bytes` (atomically,
``0644``). Only TFLite builtin ops are allowed (no Select TF ops, which device runtimes usually lack),
so conversion fails on an unsupported op instead of silently producing a Flex model.

Quantization (``quantize``, :data:`QUANTIZE_MODES`): ``"none"`` (float32), ``"float16"`` (float16 weights),
``"dynamic"`` (int8 weights, float activations), ``"int8"`` (int8 weights and activations calibrated on
representative images; float32 input and output are kept). With ``int8_ops`` only ops of those types get int8
kernels (the quantize-only path, :func:`quantize_only`), every other op stays float32; with ``int8_ops="all"``
every op must have an int8 kernel.

The contract of kzoo's image models' ``.tflite`` files (NIN and Mask R-CNN, every quantization), written into the
file itself by :func:`convert_image_function_to_tflite`, so it holds for anyone who runs the file with LiteRT's
``Interpreter`` directly:

- one input ``images``, **uint8** RGB (or gray) pixels ``[1, H, W, C]``: floats (pixels in ``[0, 1]``, NaN,
  values outside ``0..255``) cannot be set (``set_tensor`` refuses another dtype), and the model's
  normalization is inside the graph;
- a fixed shape: ``shape_signature`` is ``[1, H, W, C]`` (no ``-1``), and an interpreter resized to any other
  shape (``resize_tensor_input``, a batch, another size, another channel count) fails at ``allocate_tensors`` or
  ``invoke`` (LiteRT's error text, from a ``RESHAPE``/XNNPack node) instead of running on a stretched input.

What the file cannot check (the format has no assertion op): whether the uint8 pixels are RGB rather than BGR,
whether the image was resized or letterboxed as the model expects (:func:`kzoo.export.mask_rcnn.letterbox`), and
whether the bytes are a photograph at all; kzoo's runners (:func:`kzoo.export.classifier.run_classifier_tflite`,
:func:`kzoo.export.mask_rcnn.run_mask_rcnn_tflite`) check what can be checked
on the arrays before they reach the interpreter.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from kzoo.utils.native_output import native_stderr_silenced

__all__ = [
    "FIXED_SIZE_HINT",
    "QUANTIZE_MODES",
    "check_quantize",
    "check_representative_images",
    "convert_function_to_tflite",
    "check_output_file",
    "convert_image_function_to_tflite",
    "load_interpreter",
    "pin_input_shape",
    "quantize_only",
    "representative_dataset",
    "set_quantization",
]

QUANTIZE_MODES = ("none", "float16", "dynamic", "int8")

#: what the runners add to a size mismatch
FIXED_SIZE_HINT = " (the .tflite file's fixed input size: resize the images, or letterbox photographs, first)"


# -- conversion --------------------------------------------------------------------------------------------------------


def check_quantize(quantize: str) -> None:
    """ValueError unless ``quantize`` is one of :data:`QUANTIZE_MODES`."""
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")


def set_quantization(
    converter: tf.lite.TFLiteConverter,
    quantize: str,
    representative_dataset: Callable[[], Iterator[list[np.ndarray]]] | None = None,
) -> None:
    """Set a converter's ops and quantization for ``quantize``; builtin ops only, never Select TF ops.

    ``"none"``: float32 weights. ``"float16"``: float16 weights. ``"dynamic"``: int8 weights, float activations.
    ``"int8"``: int8 weights and activations calibrated on ``representative_dataset``, with builtin float kernels
    where an op has no int8 kernel; float32 input and output are kept.
    """
    check_quantize(quantize)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantize == "int8":
        if representative_dataset is None:
            raise ValueError("quantize='int8' needs a representative dataset for calibration")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.inference_input_type = tf.float32
        converter.inference_output_type = tf.float32
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]


def check_output_file(path, overwrite: bool) -> str:
    """``path`` as a string, or a FileExistsError when a file is there and ``overwrite`` is false (``kzoo export``'s
    rule for ``.tflite`` files: an existing file is refused unless ``--overwrite``; then it is replaced atomically,
    a temporary file renamed over it, so a reader sees the old file or the new one, never half of one)."""
    import os

    path = os.fspath(path)
    if not overwrite and os.path.lexists(path) and not os.path.isdir(path):  # a folder: the write names it
        raise FileExistsError(
            f"{path} exists already; refusing to replace it (pass overwrite=True, or kzoo export --overwrite)"
        )
    return path


def check_representative_images(images: np.ndarray | None, image_shape: Sequence[int]) -> np.ndarray:
    """Validated calibration pixels ``[N, H, W, C]`` (uint8 or float in ``0..255``), or a ValueError."""
    if images is None:
        raise ValueError("quantize='int8' needs representative_images: uint8 pixels [N, H, W, C] for calibration")
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != tuple(image_shape) or len(images) == 0:
        raise ValueError(
            f"representative_images must have shape [N, {', '.join(map(str, image_shape))}] with N >= 1, "
            f"got {list(images.shape)}"
        )
    if not (images.dtype == np.uint8 or np.issubdtype(images.dtype, np.floating)):
        raise ValueError(f"representative_images must be uint8 or float pixels in 0..255, got dtype {images.dtype}")
    return images


def representative_dataset(images: np.ndarray, dtype: str = "float32") -> Callable[[], Iterator[list[np.ndarray]]]:
    """The converter's calibration generator: one ``[1, H, W, C]`` pixel batch of ``dtype`` per image (float pixels
    rounded and clipped to ``0..255`` for ``"uint8"``)."""

    def generate() -> Iterator[list[np.ndarray]]:
        for image in images:
            if dtype == "uint8" and image.dtype != np.uint8:
                image = np.clip(np.round(image), 0, 255)
            yield [image[np.newaxis].astype(dtype)]

    return generate


def convert_function_to_tflite(
    function: tf.types.experimental.GenericFunction,
    quantize: str = "none",
    representative_dataset: Callable[[], Iterator[list[np.ndarray]]] | None = None,
    int8_ops: Sequence[str] | str | None = None,
) -> bytes:
    """Convert a ``tf.function`` (one input signature, a dict of outputs) to a builtin-ops-only TFLite flatbuffer
    whose signature ``serving_default`` keeps the input and output names.

    The variables are frozen into constants first: converting the function with its variables (the only way the
    converter keeps signature names) leaves ``READ_VARIABLE`` ops that read uninitialized values in LiteRT
    (*measured*: all outputs NaN), whatever ``experimental_enable_resource_variables`` says.

    Args:
        function: a ``tf.function`` with an ``input_signature``, returning a dict of tensors.
        quantize: one of :data:`QUANTIZE_MODES` (see the module docstring).
        representative_dataset: the calibration generator for ``"int8"``.
        int8_ops: for ``"int8"``: only ops of these TFLite types (e.g. ``"CONV_2D"``) get int8 kernels and every
            other op stays float (:func:`quantize_only`); ``"all"``: every op gets an int8 kernel (conversion fails
            on an op without one); ``None``: the converter quantizes every op it can and keeps float kernels for
            the rest.

    Returns:
        The flatbuffer bytes.

    Raises:
        ValueError: the graph needs an op that is not a TFLite builtin (the converter's message names it).
        RuntimeError: ``int8_ops`` types on a TensorFlow release without the quantizer entry point it uses.
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
    selected = quantize == "int8" and int8_ops is not None and int8_ops != "all"
    if quantize == "int8" and int8_ops == "all":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if selected:
        converter._experimental_calibrate_only = True  # calibrate here, quantize below with a deny list
    try:
        with native_stderr_silenced():  # the converter's progress lines ("fully_quantize: 0, ...")
            flatbuffer = converter.convert()
            if selected:
                assert int8_ops is not None  # selected: int8_ops names op types
                flatbuffer = quantize_only(flatbuffer, int8_ops)
    except Exception as error:  # the converter raises its own ConverterError, not a ValueError
        text = str(error)
        if "not supported" in text or "Select TF" in text or "illegal" in text:
            raise ValueError(
                f"the model needs ops that are not TFLite builtins (kzoo's .tflite files use builtin ops only): {text}"
            ) from error
        raise
    return flatbuffer


def convert_image_function_to_tflite(
    function: Callable[[tf.Tensor], dict[str, tf.Tensor]],
    image_shape: Sequence[int],
    quantize: str = "none",
    representative_images: np.ndarray | None = None,
    int8_ops: Sequence[str] | str | None = None,
) -> bytes:
    """Convert ``function`` (float32 pixels ``[1, H, W, C]`` in ``0..255`` -> a dict of outputs) to a builtin-only
    flatbuffer with kzoo's strict image input: ``images`` **uint8** ``[1, H, W, C]``, its ``shape_signature`` fixed
    (no ``-1``), and a guard in the graph so an interpreter resized to any other shape (``resize_tensor_input``,
    or a signature runner given another shape) fails at ``allocate_tensors`` or ``invoke`` instead of running.

    The guard: the graph is traced on an input of unknown shape, so the ``SHAPE`` of the input survives conversion;
    each of its four sizes must reshape a vector of that length to the expected length (a ``RESHAPE`` of a
    constant shape, which fails on any other length), and the pixels are reshaped to the static
    ``[1, H, W, C]`` (every later shape static). Then :func:`pin_input_shape` writes the fixed shape into the file.

    Args:
        function: the model, on float32 pixels ``[1, H, W, C]`` in ``0..255``.
        image_shape: ``(H, W, C)``.
        quantize, int8_ops: as :func:`convert_function_to_tflite`.
        representative_images: calibration pixels ``[N, H, W, C]`` for ``"int8"`` (checked here).
    """
    check_quantize(quantize)
    shape = [1, *(int(d) for d in image_shape)]
    dataset = None
    if quantize == "int8":
        images = check_representative_images(representative_images, shape[1:])
        dataset = representative_dataset(images, "uint8")

    @tf.function(input_signature=[tf.TensorSpec([None] * len(shape), tf.uint8, name="images")])
    def guarded(images: tf.Tensor) -> dict[str, tf.Tensor]:
        actual = tf.shape(images)
        sizes = [tf.reshape(tf.zeros(actual[i : i + 1]), [size]) for i, size in enumerate(shape)]
        zero = tf.reduce_sum(tf.concat(sizes, 0))  # 0.0, computed only when every size matches
        return function(tf.reshape(tf.cast(images, tf.float32), shape) + zero)

    return pin_input_shape(convert_function_to_tflite(guarded, quantize, dataset, int8_ops=int8_ops), shape)


def pin_input_shape(flatbuffer: bytes, shape: Sequence[int]) -> bytes:
    """``flatbuffer`` with the ``shape`` and ``shape_signature`` of every input of its main graph set to ``shape``
    (written in place: both are int32 vectors of the same length)."""
    from tensorflow.lite.python import schema_py_generated as schema

    buffer = bytearray(flatbuffer)
    graph = schema.Model.GetRootAsModel(buffer, 0).Subgraphs(0)
    for k in range(graph.InputsLength()):
        tensor = graph.Tensors(graph.Inputs(k))
        for values in (tensor.ShapeAsNumpy(), tensor.ShapeSignatureAsNumpy()):
            if isinstance(values, int) or len(values) != len(shape):
                raise ValueError(f"cannot pin the input shape {list(shape)}: the converted input has shape {values}")
            values[:] = shape  # a view into ``buffer``
    return bytes(buffer)


def quantize_only(calibrated: bytes, int8_ops: Sequence[str]) -> bytes:
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
        )
    with native_stderr_silenced():
        present = {op["op_name"] for op in Interpreter(model_content=calibrated)._get_ops_details()}
    return lite_convert.mlir_quantize(
        calibrated,
        disable_per_channel=False,
        fully_quantize=False,
        enable_numeric_verify=False,
        denylisted_ops=sorted(present - set(int8_ops)),
    )


# -- running -----------------------------------------------------------------------------------------------------------


def load_interpreter(path: str | os.PathLike, **kwargs):
    """LiteRT's ``Interpreter`` of the ``.tflite`` file at ``path`` (``kwargs``: the interpreter's, e.g.
    ``num_threads``), tensors allocated; FileNotFoundError when there is no file."""
    from ai_edge_litert.interpreter import Interpreter

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no TFLite model at {path}")
    with native_stderr_silenced():  # "Created TensorFlow Lite XNNPACK delegate for CPU."
        interpreter = Interpreter(model_path=path, **kwargs)
        interpreter.allocate_tensors()
    return interpreter
