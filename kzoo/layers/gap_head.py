"""The global-average-pooling classifier head of Network In Network."""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="kzoo")
class GlobalAveragePoolingHead(keras.layers.Layer):
    """NIN's classifier: one feature map per class, averaged, then the activation.

    There is no fully connected layer and no weight: the score of class ``c`` is the
    spatial mean of input channel ``c``, so the input maps are the network's class
    confidence maps (the paper's argument for interpretability). The averaging and
    the activation run in float32 even under a mixed-precision policy.

    Args:
        activation: applied to the averaged scores: ``"softmax"`` (default),
            ``None``/``"linear"`` for logits, or any Keras activation.
        return_class_maps: if true, also return the input maps, so callers can
            draw class activation maps.
        dtype: the layer's dtype policy; default ``"float32"`` (not the global or the
            model's mixed policy: the scores are averaged and activated in float32).

    Input shape:
        ``(batch, height, width, classes)``, float.
    Output shape:
        ``(batch, classes)`` float32 scores; with ``return_class_maps`` the tuple
        ``(scores, maps)`` where ``maps`` is the input, ``(batch, height, width, classes)``.
    """

    def __init__(self, activation: Any = "softmax", return_class_maps: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.activation = keras.activations.get(activation)
        self.return_class_maps = return_class_maps

    def build(self, input_shape: tuple) -> None:
        if len(input_shape) != 4:
            raise ValueError(
                f"GlobalAveragePoolingHead expects (batch, height, width, classes), got shape {input_shape}"
            )
        self.built = True

    def call(self, inputs):
        maps = inputs
        scores = keras.ops.mean(keras.ops.cast(maps, "float32"), axis=(1, 2))
        scores = self.activation(scores)
        if self.return_class_maps:
            return scores, maps
        return scores

    def compute_output_shape(self, input_shape: tuple):
        scores = (input_shape[0], input_shape[-1])
        if self.return_class_maps:
            return scores, tuple(input_shape)
        return scores

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            activation=keras.activations.serialize(self.activation),
            return_class_maps=self.return_class_maps,
        )
        return config
