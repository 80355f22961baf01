"""The TFLite (LiteRT) converter shared by kzoo's exporters: builtin ops only, quantization settings, calibration.

:func:`convert_function_to_tflite` turns a ``tf.function`` into a flatbuffer whose ``serving_default`` signature
keeps the input and output names; the exporters write it with :func:`kzoo.utils.files.write_bytes` (atomically,
``0644``). Only TFLite builtin ops are allowed (no Select TF ops, which device runtimes usually lack),
so conversion fails on an unsupported op instead of silently producing a Flex model.

Quantization (``quantize``, :data:`QUANTIZE_MODES`): ``"none"`` (float32), ``"float16"`` (float16 weights),
``"dynamic"`` (int8 weights, float activations), ``"int8"`` (int8 weights and activations calibrated on
representative images; float32 input and output are kept). With ``int8_ops`` only ops of those types get int8
kernels (the quantize-only path, :func:`quantize_only`), every other op stays float32; with ``int8_ops="all"``
every op must have an int8 kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

__all__ = [
    "QUANTIZE_MODES",
    "check_quantize",
    "check_representative_images",
    "convert_function_to_tflite",
    "quantize_only",
    "representative_dataset",
    "set_quantization",
]

QUANTIZE_MODES = ("none", "float16", "dynamic", "int8")


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
    """The converter's calibration generator: one ``[1, H, W, C]`` pixel batch of ``dtype`` per image."""

    def generate() -> Iterator[list[np.ndarray]]:
        for image in images:
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
        flatbuffer = converter.convert()
        if selected:
            flatbuffer = quantize_only(flatbuffer, int8_ops)
    except Exception as error:  # the converter raises its own ConverterError, not a ValueError
        text = str(error)
        if "not supported" in text or "Select TF" in text or "illegal" in text:
            raise ValueError(
                f"the model needs ops that are not TFLite builtins (kzoo's .tflite files use builtin ops only): {text}"
            ) from error
        raise
    return flatbuffer


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
        )  # fmt: skip
    present = {op["op_name"] for op in Interpreter(model_content=calibrated)._get_ops_details()}
    return lite_convert.mlir_quantize(
        calibrated, disable_per_channel=False, fully_quantize=False, enable_numeric_verify=False,
        denylisted_ops=sorted(present - set(int8_ops)),
    )  # fmt: skip

