"""Network In Network assembly: mlpconv blocks, pooling, dropout, global-average-pooling head."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import keras
import numpy as np

from kzoo.layers import GlobalAveragePoolingHead, Mlpconv
from kzoo.models.nin_config import DEFAULT_INPUT_SHAPES, NIN_TRAINABLE_PRESETS, VARIANTS, BlockSpec
from kzoo.ops.image_checks import FLOAT_DTYPES, assert_image_values, check_image_spec

__all__ = [
    "DEFAULT_INPUT_SHAPES",
    "VARIANTS",
    "BlockSpec",
    "NINModel",
    "build_nin",
    "check_nin_images",
    "class_map_model",
    "resolve_blocks",
]

#: The values NIN's input takes: pixels scaled by ``kzoo.applications.nin.preprocess_input`` (``x / 127.5 - 1``).
NIN_INPUT_RANGE = (-1.0, 1.0)
_NIN_INPUT_NAME = "NIN images"
_NIN_HINT = " (NIN takes float pixels scaled to [-1, 1] by kzoo.applications.nin.preprocess_input, applied once)"


@keras.saving.register_keras_serializable(package="kzoo")
class NINModel(keras.Model):
    """A functional NIN (built by :func:`build_nin`) that checks its images before running them.

    Shapes and dtypes are checked at trace time (:func:`kzoo.ops.image_checks.check_image_spec`: ``ValueError``
    for a rank other than 4, other channels or sizes than the model's input, a non-float dtype, an empty batch);
    outside training, on the TensorFlow backend, the values too (``InvalidArgumentError``: non-finite values,
    values outside ``NIN_INPUT_RANGE``, such as raw pixels or pixels preprocessed twice). Keras' own input check
    (which would add or drop a trailing axis of size 1) is replaced by these.

    ``predict`` also takes a Python list (or a ``tf.RaggedTensor``) of images: images of one size run as one batch,
    one result row per image in order (a NIN with a fixed input size refuses other sizes, naming the image: resize
    them first); an empty batch or list gives empty outputs of the right shapes instead of Keras' own
    ``UnboundLocalError``. Calling the model on a list is refused with a message saying so.

    Called eagerly for inference (``model(images)``) on the TensorFlow backend, the model runs one compiled graph
    (``tf.function``) per input dtype, whatever the batch size (its input size is fixed), as ``predict`` does:
    as fast and lean as the graph instead of op by op.
    """

    @property
    def input_spec(self):
        return None

    @input_spec.setter
    def input_spec(self, value) -> None:
        del value

    def call(self, inputs, training=None, mask=None, **kwargs):
        if len(self.inputs) == 1:
            if _is_image_list(inputs):
                raise ValueError(
                    "NIN takes one batch [batch, height, width, channels] of one size per call; for a list (or a "
                    "tf.RaggedTensor) of images use model.predict(images), which batches each size separately"
                )
            if not training and mask is None and not kwargs and _eager_tensorflow():
                return self._compiled_inference(inputs)
            inputs = check_nin_images(inputs, self.inputs[0].shape, training=bool(training))
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def _compiled_inference(self, images):
        """An eager inference call through the compiled graph of the input's dtype."""
        import tensorflow as tf

        images = tf.convert_to_tensor(images)
        check_nin_images(images, self.inputs[0].shape, training=True)  # shapes and dtype, before any trace
        graphs = self.__dict__.setdefault("_kzoo_compiled_graphs", {})  # not tracked by Keras
        if images.dtype.name not in graphs:
            graphs[images.dtype.name] = tf.function(
                lambda x: super(NINModel, self).call(check_nin_images(x, self.inputs[0].shape), training=False),
                input_signature=[tf.TensorSpec([None, *images.shape[1:]], images.dtype)],
            )
        return graphs[images.dtype.name](images)

    def _check_batch(self, shape, dtype, name: str) -> None:
        _check_batch_of(self, shape, dtype, name)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        if len(self.inputs) != 1:
            return super().predict(x, batch_size=batch_size, verbose=verbose, steps=steps, callbacks=callbacks)
        empty = keras.tree.map_structure(
            lambda t: np.zeros((0, *t.shape[1:]), t.dtype), self.outputs[0] if len(self.outputs) == 1 else self.outputs
        )
        if not _is_image_list(x):
            if hasattr(x, "shape") and hasattr(x, "dtype"):  # arrays: checked here too, as Keras' predict function
                # is retraced for a second input size with unknown sizes, where the call's static check sees none
                self._check_batch(x.shape, x.dtype, _NIN_INPUT_NAME)
                if x.shape[0] == 0:
                    return empty
            return super().predict(x, batch_size=batch_size, verbose=verbose, steps=steps, callbacks=callbacks)
        images = _image_list(x)
        if not images:
            return empty
        by_size: dict[tuple, list[int]] = {}
        for index, image in enumerate(images):
            by_size.setdefault((image.shape, str(image.dtype)), []).append(index)
        parts = []
        for indices in by_size.values():
            batch = np.stack([images[i] for i in indices])
            self._check_batch(batch.shape, batch.dtype, f"images[{indices[0]}]")
            out = super().predict(batch, batch_size=batch_size, verbose=verbose, callbacks=callbacks)
            parts.append((indices, out))
        order = np.argsort(np.concatenate([indices for indices, _ in parts]), kind="stable")
        return keras.tree.map_structure(lambda *outs: np.concatenate(outs)[order], *[out for _, out in parts])

    def training_losses(self, batch, seed=None, label_smoothing: float = 0.0) -> dict:
        """The losses of one batch in training mode, for :func:`kzoo.models.training_step.apply_training_step`.

        Args:
            batch: ``(images float32 [B, H, W, C], labels int [B])``, images preprocessed.
            seed: unused (dropout draws from Keras' seed generator).
            label_smoothing: of the cross-entropy.

        Returns:
            ``{"total": the mean cross-entropy, "accuracy": the fraction of top-1 hits}``, float32 scalars.
        """
        del seed
        images, labels = batch
        scores = keras.ops.cast(self(images, training=True), "float32")
        labels = keras.ops.cast(labels, "int32")
        per_example = keras.losses.categorical_crossentropy(
            keras.ops.one_hot(labels, scores.shape[-1]), scores, label_smoothing=label_smoothing
        )
        hits = keras.ops.cast(keras.ops.equal(keras.ops.cast(keras.ops.argmax(scores, -1), "int32"), labels), "float32")
        return {"total": keras.ops.mean(per_example), "accuracy": keras.ops.mean(hits)}

    #: ``train.trainable_layers`` presets (:meth:`set_trainable_preset`).
    TRAINABLE_PRESETS: ClassVar[tuple[str, ...]] = NIN_TRAINABLE_PRESETS

    def _blocks(self) -> list[Mlpconv]:
        return [layer for layer in self.layers if isinstance(layer, Mlpconv)]

    def class_specific_weights(self) -> list[keras.Variable]:
        """The weights whose shapes depend on the class count (reset when weights of another class count are
        loaded, :func:`kzoo.models.weight_files.load_weights_transferring`): the class stage, i.e. the last 1 x 1
        convolution of the last mlpconv block and its batch normalization; none without the top."""
        blocks = self._blocks()
        if not blocks or not any(isinstance(layer, GlobalAveragePoolingHead) for layer in self.layers):
            return []
        last = blocks[-1]
        return list(last.convs[-1].weights) + (list(last.norms[-1].weights) if last.norms else [])

    def set_trainable_preset(self, preset: str) -> None:
        """Train what ``preset`` (one of :attr:`TRAINABLE_PRESETS`) names and freeze the rest: ``all`` every
        layer with weights, ``heads`` only the last one (the last mlpconv block, which holds the class stage)."""
        if preset not in self.TRAINABLE_PRESETS:
            raise ValueError(f"NIN trainable preset must be one of {list(self.TRAINABLE_PRESETS)}, got {preset!r}")
        layers = [layer for layer in self.layers if layer.weights]
        for layer in layers:
            layer.trainable = preset == "all" or layer is layers[-1]


def _check_batch_of(model: keras.Model, shape, dtype, name: str) -> None:
    _, height, width, channels = (None if d is None else int(d) for d in model.inputs[0].shape)
    check_image_spec(
        tuple(shape),
        keras.backend.standardize_dtype(dtype),
        channels=channels,
        height=height,
        width=width,
        dtypes=FLOAT_DTYPES,
        name=name,
        allow_empty=True,
        hint=_NIN_HINT,
    )


def _is_image_list(images) -> bool:
    """A Python list/tuple of images or a ``tf.RaggedTensor`` (any backend: the ragged type is checked by name)."""
    return isinstance(images, (list, tuple)) or type(images).__name__ == "RaggedTensor"


def _image_list(images) -> list[np.ndarray]:
    """A list of images ``[H_i, W_i, C]`` (or a ``tf.RaggedTensor``) -> NumPy arrays; errors name ``images[i]``."""
    if type(images).__name__ == "RaggedTensor":
        images = [images[i] for i in range(int(images.nrows()))]
        images = [image.to_tensor() if type(image).__name__ == "RaggedTensor" else image for image in images]
    out = []
    for index, image in enumerate(images):
        image = np.asarray(keras.ops.convert_to_numpy(image))
        if image.ndim != 3:
            raise ValueError(
                f"images[{index}] must be one image [height, width, channels] (a list holds one image per entry; "
                f"pass a batch of one size as one array), got shape {list(image.shape)}"
            )
        out.append(image)
    return out


def check_nin_images(images, input_shape, training: bool = False):
    """NIN's input contract: float ``[B, H, W, C]`` of ``input_shape`` (``(None, H, W, C)``, ``None`` for any
    size) in ``NIN_INPUT_RANGE``; the values are checked (TensorFlow backend) unless ``training``.

    Returns:
        ``images`` (with the value assertions attached when checked).
    """
    _, height, width, channels = (None if d is None else int(d) for d in input_shape)
    shape = getattr(images, "shape", None)
    dtype = getattr(images, "dtype", None)
    if shape is None or dtype is None:
        return images
    check_image_spec(
        shape,
        dtype,
        channels=channels,
        height=height,
        width=width,
        dtypes=FLOAT_DTYPES,
        name=_NIN_INPUT_NAME,
        hint=_NIN_HINT,
    )
    if training or keras.backend.backend() != "tensorflow" or keras.backend.is_keras_tensor(images):
        return images
    return assert_image_values(
        images, value_range=NIN_INPUT_RANGE, refuse_unit_range=False, name=_NIN_INPUT_NAME, hint=_NIN_HINT
    )


def resolve_blocks(variant: str, blocks: Sequence[Mapping[str, Any] | BlockSpec] | None) -> tuple[BlockSpec, ...]:
    """The block list of a variant name, or of a custom list (``variant="custom"``)."""
    if blocks is not None:
        specs = tuple(BlockSpec.from_dict(b) for b in blocks)
        if not specs:
            raise ValueError("a custom NIN needs at least one block")
        return specs
    if variant not in VARIANTS:
        raise ValueError(f"unknown NIN variant {variant!r}; choose one of {sorted(VARIANTS)} or pass `blocks`")
    return VARIANTS[variant]


def build_nin(
    input_tensor: keras.KerasTensor,
    blocks: Sequence[BlockSpec],
    num_classes: int,
    include_top: bool = True,
    pooling: str | None = None,
    classifier_activation: Any = "softmax",
    dropout_rate: float = 0.5,
    use_batch_norm: bool = False,
    kernel_regularizer: Any = None,
    name: str = "nin",
    dtype: str | keras.DTypePolicy | None = None,
) -> NINModel:
    """Assemble a NIN on ``input_tensor``.

    Args:
        input_tensor: a Keras input, ``(batch, height, width, channels)``, float32
            images already passed through ``preprocess_input``.
        blocks: the mlpconv blocks.
        num_classes: the width of the score output; the last block's last stage has this many maps.
        include_top: add the class stage and the ``GlobalAveragePoolingHead``.
        pooling: without the top: ``None`` (4-D feature maps), ``"avg"`` or ``"max"``.
        classifier_activation: activation of the head (``None`` for logits).
        dropout_rate: rate of the dropouts that follow blocks with ``dropout=True``.
        use_batch_norm: batch normalization before every ReLU.
        kernel_regularizer: regularizer of every convolution kernel.
        name: model name.
        dtype: the dtype policy of the blocks, poolings and dropouts (``keras.DTypePolicy`` or its name:
            ``"mixed_bfloat16"`` computes in bfloat16 with float32 variables); ``None``: Keras' global policy.
            The head averages and activates in float32 whatever the policy.

    Returns:
        A functional :class:`NINModel`, which checks its images (see there). With the top:
        ``(batch, num_classes)`` scores (float32); its layer ``"head"`` takes the class confidence maps
        ``(batch, h, w, num_classes)``.
        Without it: the last block's features, pooled as asked.
    """
    if include_top and num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
    x = input_tensor
    for index, spec in enumerate(blocks, start=1):
        filters = list(spec.filters)
        if include_top and index == len(blocks):
            filters.append(num_classes)
        x = Mlpconv(
            filters,
            kernel_size=spec.kernel_size,
            strides=spec.strides,
            padding=spec.padding,
            use_batch_norm=use_batch_norm,
            kernel_regularizer=kernel_regularizer,
            name=f"block{index}",
            dtype=dtype,
        )(x)
        if spec.pool:
            x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name=f"pool{index}", dtype=dtype)(x)
        if spec.dropout and dropout_rate > 0:
            x = keras.layers.Dropout(dropout_rate, name=f"dropout{index}", dtype=dtype)(x)
    if include_top:
        x = GlobalAveragePoolingHead(activation=classifier_activation, name="head")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool", dtype=dtype)(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool", dtype=dtype)(x)
    return NINModel(input_tensor, x, name=name)


def class_map_model(model: keras.Model) -> keras.Model:
    """A model returning ``(scores, class_maps)`` from a NIN built with its top.

    ``class_maps`` is the head's input, ``(batch, h, w, classes)``: the paper's
    class confidence maps.
    """
    try:
        head = model.get_layer("head")
    except ValueError as error:
        raise ValueError("class maps need a NIN built with include_top=True") from error
    return keras.Model(model.inputs, [model.outputs[0], head.input], name=f"{model.name}_class_maps")


def _eager_tensorflow() -> bool:
    """Whether this runs eagerly on the TensorFlow backend (where a compiled graph can replace op-by-op calls)."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return tf.executing_eagerly()
