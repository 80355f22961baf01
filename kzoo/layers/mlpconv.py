"""The mlpconv block of Network In Network (Lin, Chen, Yan, 2013)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from kzoo.layers.initializers import independent_initializer


@keras.saving.register_keras_serializable(package="kzoo")
class Mlpconv(keras.layers.Layer):
    """A k x k convolution followed by a cascade of 1 x 1 convolutions, each with ReLU.

    This is the paper's "micro network" slid over the input: stage ``n`` computes
    ``f^n = max(W_n^T f^(n-1) + b_n, 0)``. The first stage is an ordinary ``k x k``
    convolution (the receptive field); every later stage is a ``1 x 1`` convolution,
    i.e. one fully connected layer of a small MLP applied at every pixel (the paper's
    "cascaded cross channel parametric pooling"). ``filters[i]`` is the width of
    stage ``i``: the first entry is the number of ``k x k`` filters, the others the
    hidden and output widths of the per-pixel MLP. The block's output is the last
    stage: ``filters[-1]`` feature maps; in the last block of a NIN it is one
    confidence map per class.

    Optional batch normalization sits between each convolution and its ReLU (the
    convolutions then have no bias). Optional dropout is applied to the block's
    output during training.

    Args:
        filters: widths of the stages, at least one entry.
        kernel_size: size of the first (spatial) convolution, an int or a pair.
        strides: strides of the first convolution.
        padding: ``"same"`` or ``"valid"``, for the first convolution.
        use_batch_norm: add ``BatchNormalization`` before every ReLU.
        batch_norm_momentum, batch_norm_epsilon: its hyper-parameters.
        dropout_rate: dropout applied to the block's output (0 disables it).
        kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer:
            passed to every convolution.
        dtype: the dtype policy (``keras.DTypePolicy`` or its name, e.g. ``"mixed_bfloat16"``), forwarded to
            every convolution, normalization and dropout of the block; default Keras' global policy.

    Input shape:
        ``(batch, height, width, channels)``, float (channels-last).
    Output shape:
        ``(batch, new_height, new_width, filters[-1])``, same dtype as the
        layer's compute dtype; spatial size is set by the first convolution only.
    """

    def __init__(
        self,
        filters: Sequence[int],
        kernel_size: int | Sequence[int] = 3,
        strides: int | Sequence[int] = 1,
        padding: str = "same",
        use_batch_norm: bool = False,
        batch_norm_momentum: float = 0.99,
        batch_norm_epsilon: float = 1e-3,
        dropout_rate: float = 0.0,
        kernel_initializer: Any = "he_normal",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        filters = [int(f) for f in filters]
        if not filters or any(f <= 0 for f in filters):
            raise ValueError(f"Mlpconv filters must be a non-empty list of positive ints, got {filters}")
        if padding not in ("same", "valid"):
            raise ValueError(f"Mlpconv padding must be 'same' or 'valid', got {padding!r}")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"Mlpconv dropout_rate must be in [0, 1), got {dropout_rate}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.padding = padding
        self.use_batch_norm = use_batch_norm
        self.batch_norm_momentum = batch_norm_momentum
        self.batch_norm_epsilon = batch_norm_epsilon
        self.dropout_rate = dropout_rate
        self.input_spec = keras.layers.InputSpec(ndim=4)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)

        self.convs = []
        self.norms = []
        for i, width in enumerate(filters):
            self.convs.append(
                keras.layers.Conv2D(
                    width,
                    kernel_size if i == 0 else 1,
                    strides=strides if i == 0 else 1,
                    padding=padding if i == 0 else "valid",
                    use_bias=not use_batch_norm,
                    kernel_initializer=independent_initializer(self.kernel_initializer, i),
                    bias_initializer=independent_initializer(self.bias_initializer, i),
                    kernel_regularizer=self.kernel_regularizer,
                    bias_regularizer=self.bias_regularizer,
                    dtype=self.dtype_policy,
                    name=f"conv{i}",
                )
            )
            if use_batch_norm:
                self.norms.append(
                    keras.layers.BatchNormalization(
                        momentum=batch_norm_momentum,
                        epsilon=batch_norm_epsilon,
                        dtype=self.dtype_policy,
                        name=f"bn{i}",
                    )
                )
        self.dropout = (
            keras.layers.Dropout(dropout_rate, dtype=self.dtype_policy, name="dropout") if dropout_rate > 0 else None
        )

    def build(self, input_shape: tuple) -> None:
        if len(input_shape) != 4:
            raise ValueError(f"Mlpconv expects a 4-D input (batch, height, width, channels), got shape {input_shape}")
        # Keras checks calls against this spec: a wrong rank or channel count is a clear error naming the layer.
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: input_shape[-1]})
        shape = tuple(input_shape)
        for i, conv in enumerate(self.convs):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            if self.use_batch_norm:
                self.norms[i].build(shape)
        if self.dropout is not None:
            self.dropout.build(shape)
        self.built = True

    def call(self, inputs, training=None):
        x = inputs
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if self.use_batch_norm:
                x = self.norms[i](x, training=training)
            x = keras.ops.relu(x)
        if self.dropout is not None:
            x = self.dropout(x, training=training)
        return x

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        shape = tuple(input_shape)
        for conv in self.convs:
            shape = conv.compute_output_shape(shape)
        return shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            filters=list(self.filters),
            kernel_size=self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            use_batch_norm=self.use_batch_norm,
            batch_norm_momentum=self.batch_norm_momentum,
            batch_norm_epsilon=self.batch_norm_epsilon,
            dropout_rate=self.dropout_rate,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=keras.regularizers.serialize(self.bias_regularizer),
        )
        return config
