"""Network In Network, keras.applications-style: ``NIN``, ``preprocess_input``, ``decode_predictions``."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, cast

import keras
import numpy as np

from kzoo.applications.weights import get_registered, registered_or_path, resolve_weights_file
from kzoo.models.nin import DEFAULT_INPUT_SHAPES, VARIANTS, build_nin, resolve_blocks
from kzoo.ops.image_checks import assert_image_values, check_pixel_dtype, check_values_np


def NIN(
    include_top: bool = True,
    weights: str | None = None,
    input_tensor: keras.KerasTensor | None = None,
    input_shape: Sequence[int] | None = None,
    pooling: str | None = None,
    classes: int | None = None,
    classifier_activation: Any = "softmax",
    variant: str = "cifar10",
    dropout_rate: float = 0.5,
    name: str = "nin",
    *,
    num_classes: int | None = None,
    blocks: Sequence[dict] | None = None,
    use_batch_norm: bool = False,
    kernel_regularizer: Any = None,
) -> keras.Model:
    """Instantiate a Network In Network (Lin, Chen, Yan, 2013).

    The network is a stack of ``Mlpconv`` blocks (3 x 3 / 2 max pooling and dropout
    after the first ones) whose last 1 x 1 stage has one map per class, averaged by
    ``GlobalAveragePoolingHead`` into the class scores: no fully connected layer.

    Args:
        include_top: keep the class stage and the global-average-pooling head.
        weights: ``None`` (random), a registered name (``"fashion_mnist"``, which
            also fixes variant, input channels and classes) or a ``.weights.h5`` path.
        input_tensor: optional Keras input to build the model on.
        input_shape: ``(height, width, channels)``; defaults to the variant's
            (cifar10/cifar100/svhn 32x32x3, mnist 28x28x1, imagenet 224x224x3).
            The network is fully convolutional: any height and width of at least
            8 pixels works (imagenet: at least 11, its first convolution is 11 x 11 "valid").
        pooling: without the top: ``None``, ``"avg"`` or ``"max"``.
        classes: deprecated alias of ``num_classes`` (keras.applications' name, kept in its place for one
            release; a ``DeprecationWarning``).
        classifier_activation: head activation; ``None`` returns the averaged maps (logits).
        variant: ``"cifar10"``, ``"cifar100"``, ``"svhn"``, ``"mnist"``, ``"imagenet"``,
            or ``"custom"`` with ``blocks``.
        dropout_rate: dropout after the pooled blocks (the paper's 0.5).
        name: model name.
        num_classes: the width of the classifier's score output: the number of classes (the last block's width;
            default 10). The same name and meaning as :func:`kzoo.applications.MaskRCNN`'s ``num_classes``, where
            the background is one of the classes (class 0); a classifier has none.
        blocks: custom block list: dicts with ``filters`` (stage widths, the class
            stage excluded), ``kernel_size``, ``strides``, ``padding``, ``pool``, ``dropout``.
        use_batch_norm: batch normalization before every ReLU.
        kernel_regularizer: regularizer of every convolution kernel.

    Returns:
        A ``keras.Model`` from float32 images ``(batch, height, width, channels)``
        preprocessed by ``preprocess_input`` to ``(batch, num_classes)`` float32 scores
        (with the top), or to features (without it).
    """
    num_classes = _num_classes(num_classes, classes)
    entry = registered_or_path(weights, "nin")  # the registry of kzoo.applications.weights
    if entry is not None:
        variant, blocks = cast(str, entry.variant), entry.model_kwargs.get("blocks")  # NIN entries name it
        use_batch_norm = entry.model_kwargs.get("use_batch_norm", use_batch_norm)
        if include_top and num_classes != len(entry.class_names):
            raise ValueError(f"weights={weights!r} has {len(entry.class_names)} classes, got num_classes={num_classes}")
    if variant == "custom" and blocks is None:
        raise ValueError("variant='custom' needs `blocks`")
    block_specs = resolve_blocks(variant, blocks if variant == "custom" or blocks is not None else None)
    default_shape = entry.input_shape if entry else DEFAULT_INPUT_SHAPES.get(variant, (32, 32, 3))
    input_shape = _check_input_shape(input_shape, input_tensor, default_shape, entry)
    if input_tensor is None:
        inputs = keras.Input(input_shape, name="images")
    elif keras.backend.is_keras_tensor(input_tensor):
        inputs = input_tensor
    else:
        inputs = keras.Input(tensor=input_tensor, shape=input_shape, name="images")

    def build(top: bool, model_inputs) -> keras.Model:
        return build_nin(
            model_inputs,
            block_specs,
            num_classes=num_classes,
            include_top=top,
            pooling=pooling,
            classifier_activation=classifier_activation,
            dropout_rate=dropout_rate,
            use_batch_norm=use_batch_norm,
            kernel_regularizer=kernel_regularizer,
            name=name,
        )

    model = build(include_top, inputs)
    if entry is not None and include_top:
        model.class_names = tuple(entry.class_names)  # output index -> name (decode_predictions, pictures)
    if weights is None:
        return model
    path = resolve_weights_file(entry) if entry else str(weights)
    if include_top:
        _load_weights(model, path)
    else:
        full = build(True, keras.Input(input_shape))
        _load_weights(full, path)
        _copy_prefix_weights(full, model)
    return model


def _num_classes(num_classes: int | None, classes: int | None) -> int:
    """``num_classes`` (default 10), or the deprecated ``classes`` with a DeprecationWarning."""
    if classes is None:
        return 10 if num_classes is None else num_classes
    warnings.warn(
        "NIN(classes=...) is deprecated and will be removed in the next release: use num_classes= (the name "
        "MaskRCNN takes too)",
        DeprecationWarning,
        stacklevel=3,
    )
    if num_classes is not None and num_classes != classes:
        raise ValueError(f"NIN got classes={classes} and num_classes={num_classes}: pass num_classes only")
    return classes


def _check_input_shape(input_shape, input_tensor, default_shape, entry) -> tuple[int, int, int]:
    if input_shape is None and input_tensor is not None:
        input_shape = tuple(input_tensor.shape[1:])
    shape = tuple(default_shape if input_shape is None else input_shape)
    if len(shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}")
    if shape[2] is None or shape[2] < 1:
        raise ValueError(f"input_shape needs a known channel count, got {input_shape}")
    if entry is not None and shape[2] != entry.input_shape[2]:
        raise ValueError(
            f"weights={entry.name!r} expect {entry.input_shape[2]} input channel(s) "
            f"(trained on {entry.input_shape}), got input_shape={tuple(input_shape)}"
        )
    for side in shape[:2]:
        if side is not None and side < 8:
            raise ValueError(f"input_shape {shape} is too small: height and width must be at least 8")
    return shape


def _load_weights(model: keras.Model, path: str) -> None:
    from kzoo.models.weight_files import load_weights_file

    load_weights_file(model, path)  # one line naming the first layer that differs and both shapes


def _copy_prefix_weights(source: keras.Model, target: keras.Model) -> None:
    """Copy weights layer by layer; the target's last block has fewer stages (no class stage)."""
    for layer in target.layers:
        if not layer.weights:
            continue
        source_weights = source.get_layer(layer.name).get_weights()
        if layer.name.startswith("block") and len(layer.weights) < len(source_weights):
            # Mlpconv keeps its variables stage by stage, so the leading ones are the shared stages.
            source_weights = source_weights[: len(layer.weights)]
        layer.set_weights(source_weights)


def preprocess_input(x: Any, data_format: str | None = None) -> Any:
    """Scale pixels from ``[0, 255]`` to ``[-1, 1]``, the range kzoo's NINs are trained on.

    The input contract (docs/input-contract.md, :mod:`kzoo.ops.image_checks`): uint8 pixels, or float pixels in
    ``[0, 255]``, finite; a float batch that looks like ``[0, 1]`` pixels is refused (multiply it by 255), and so
    is a batch preprocessed already (negative values).

    Args:
        x: images ``(..., height, width, channels)`` (or channels-first), numpy
            array or tensor, uint8 or float, RGB or grayscale.
        data_format: accepted for keras.applications compatibility; the scaling
            does not depend on it.

    Returns:
        float32 images of the same shape (numpy in, numpy out).

    Raises:
        ValueError: a dtype other than uint8 or float, or (NumPy input) values breaking the contract.
        tf.errors.InvalidArgumentError: values breaking the contract (TensorFlow tensors).
    """
    del data_format
    if isinstance(x, np.ndarray) or np.isscalar(x):
        x = np.asarray(x)
        check_pixel_dtype(x.dtype, name="preprocess_input", detail=" (pixels in [0, 255])")
        check_values_np(x, name="preprocess_input")
        return np.asarray(x, np.float32) / 127.5 - 1.0
    if keras.backend.backend() == "tensorflow" and not keras.backend.is_keras_tensor(x):
        x = keras.ops.convert_to_tensor(x)
        check_pixel_dtype(x.dtype, name="preprocess_input", detail=" (pixels in [0, 255])")
        x = assert_image_values(x, name="preprocess_input")
    return keras.ops.cast(x, "float32") / 127.5 - 1.0


def decode_predictions(
    preds: Any, top: int = 5, class_names: Sequence[str] | str | None = None
) -> list[list[tuple[int, str, float]]]:
    """Top-``top`` classes of each prediction.

    Args:
        preds: scores ``(batch, classes)``.
        top: how many classes to return per image.
        class_names: a name per class, or a registered weights name
            (``"fashion_mnist"``), or ``None`` for the class indices as names.

    Returns:
        One list per image of ``(class_index, class_name, score)``, best first.

    Raises:
        ValueError: ``preds`` is not ``(batch, classes)`` numbers, or a row holds NaN or inf (named with its row:
            NaN cannot be ranked, so no top class is made up for it).
    """
    preds = np.asarray(keras.ops.convert_to_numpy(preds))
    if preds.ndim != 2:
        raise ValueError(f"decode_predictions expects scores of shape (batch, classes), got {preds.shape}")
    if not (np.issubdtype(preds.dtype, np.floating) or np.issubdtype(preds.dtype, np.integer)):
        raise ValueError(f"decode_predictions expects numeric scores, got dtype {preds.dtype}")
    finite = np.isfinite(preds).all(axis=1)
    if not finite.all():
        rows = np.flatnonzero(~finite)
        shown = ", ".join(str(int(r)) for r in rows[:10]) + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")
        raise ValueError(
            f"decode_predictions: preds[{int(rows[0])}] holds non-finite scores (NaN or inf), which cannot be ranked "
            f"(rows {shown}); check the model's inputs and weights"
        )
    if isinstance(class_names, str):
        class_names = get_registered(class_names, "nin").class_names
    if class_names is None:
        class_names = [str(i) for i in range(preds.shape[1])]
    if len(class_names) != preds.shape[1]:
        raise ValueError(f"{len(class_names)} class names for {preds.shape[1]} classes")
    results = []
    for row in preds:
        order = np.argsort(-row)[:top]
        results.append([(int(i), class_names[i], float(row[i])) for i in order])
    return results


__all__ = ["NIN", "VARIANTS", "decode_predictions", "preprocess_input"]
