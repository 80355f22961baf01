"""ResNet-50/101/152 bodies (He et al., 2016) returning the C2-C5 feature maps of Mask R-CNN's FPN.

Two layouts of the bottleneck block are supported:

- ``stride_in_1x1=False``: the stride of a downsampling block sits in its 3 x 3 convolution
  (torchvision, "ResNet v1.5"; the layout of torchvision's ``maskrcnn_resnet50_fpn``).
- ``stride_in_1x1=True``: the stride sits in its first 1 x 1 convolution (the original Caffe
  ResNet, MSRA weights, Detectron).

Both have the same parameters and the same output shapes.

Padding is symmetric, as in PyTorch: every strided convolution and the max pool are an explicit
``ZeroPadding2D`` followed by a ``"valid"`` layer (stem 7 x 7 / 2 pad 3, max pool 3 x 3 / 2 pad 1,
3 x 3 / 2 pad 1). Keras ``padding="same"`` pads ``(0, 1)`` at stride 2 on even sizes, which would
shift every strided layer by one pixel against torchvision weights. Stride-1 3 x 3 convolutions use
``"same"``, which is symmetric (1, 1) for odd kernels at stride 1. PyTorch's max pool pads with
``-inf``; this one pads with zeros, which is the same here because its input is a ReLU output
(``>= 0``) and, with kernel 3 and padding 1, every window holds at least one real pixel.

Every strided layer maps a side ``n`` to ``ceil(n / 2)``, so a ``H x W`` image gives features of
``ceil(H / s) x ceil(W / s)`` for ``s = 4, 8, 16, 32`` (e.g. ``65 -> 17, 9, 5, 3``).

Layer names mirror torchvision's ``state_dict`` keys with dots replaced by underscores:

===================================  ==============================================
torchvision key                      Keras layer / variable
===================================  ==============================================
``conv1.weight``                     ``conv1`` / ``kernel``
``bn1.weight`` / ``bias``            ``bn1`` / ``gamma`` / ``beta``
``bn1.running_mean`` / ``_var``      ``bn1`` / ``moving_mean`` / ``moving_variance``
``layer{i}.{j}.conv{k}.weight``      ``layer{i}_{j}_conv{k}`` / ``kernel``
``layer{i}.{j}.bn{k}.*``             ``layer{i}_{j}_bn{k}`` / as ``bn1``
``layer{i}.{j}.downsample.0.weight`` ``layer{i}_{j}_downsample_0`` / ``kernel``
``layer{i}.{j}.downsample.1.*``      ``layer{i}_{j}_downsample_1`` / as ``bn1``
===================================  ==============================================

(``i`` in 1..4, ``j`` the block index from 0, ``k`` in 1..3; ``num_batches_tracked`` has no
counterpart.) Convolution kernels transpose from ``[O, I, kh, kw]`` to ``[kh, kw, I, O]``.
:func:`torchvision_key_to_keras` performs the name mapping. ``layer1`` .. ``layer4`` output
C2 .. C5.
"""

from __future__ import annotations

import itertools
from typing import Any

import keras

from kzoo.layers.frozen_batch_norm import FrozenBatchNormalization
from kzoo.layers.initializers import independent_initializer

STAGE_BLOCKS: dict[int, tuple[int, int, int, int]] = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
STAGE_WIDTHS = (64, 128, 256, 512)  # bottleneck widths; block outputs are 4x wider
EXPANSION = 4
FEATURE_NAMES = ("C2", "C3", "C4", "C5")
FEATURE_STRIDES: dict[str, int] = {"C2": 4, "C3": 8, "C4": 16, "C5": 32}
FEATURE_CHANNELS: dict[str, int] = {name: w * EXPANSION for name, w in zip(FEATURE_NAMES, STAGE_WIDTHS)}
NORMS = ("frozen", "batch", "sync_batch")

_BN_VARIABLES = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}


def torchvision_key_to_keras(key: str) -> tuple[str, str] | None:
    """Map a torchvision ResNet ``state_dict`` key to ``(keras_layer_name, variable_name)``.

    ``"layer1.0.downsample.1.running_var"`` -> ``("layer1_0_downsample_1", "moving_variance")``,
    ``"conv1.weight"`` -> ``("conv1", "kernel")``. Returns ``None`` for keys without a Keras
    counterpart (``num_batches_tracked`` and the classifier ``fc.*``). A ``"body."`` or
    ``"backbone.body."`` prefix (torchvision detection models) is stripped.

    Raises:
        ValueError: a key that is not a ResNet body parameter.
    """
    for prefix in ("backbone.body.", "body."):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    module, _, param = key.rpartition(".")
    if param == "num_batches_tracked" or module == "fc":
        return None
    layer = module.replace(".", "_")
    last = module.rsplit(".", 1)[-1]
    is_conv = last.startswith("conv") or (module.endswith("downsample.0"))
    is_norm = last.startswith("bn") or (module.endswith("downsample.1"))
    if is_conv and param == "weight":
        return layer, "kernel"
    if is_norm and param in _BN_VARIABLES:
        return layer, _BN_VARIABLES[param]
    raise ValueError(f"{key!r} is not a torchvision ResNet body parameter")


def _default_kernel_initializer() -> keras.initializers.Initializer:
    # torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu"), an untruncated normal.
    return keras.initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="untruncated_normal")


def resnet_backbone(
    depth: int = 50,
    input_tensor: Any = None,
    input_shape: tuple[int | None, int | None, int] | None = (None, None, 3),
    stride_in_1x1: bool = False,
    norm: str = "frozen",
    norm_epsilon: float = 1e-5,
    norm_momentum: float = 0.9,
    frozen_stages: int = 1,
    kernel_initializer: Any = None,
    kernel_regularizer: Any = None,
    dtype: Any = None,
    name: str | None = None,
) -> keras.Model:
    """A ResNet body mapping images to the feature maps C2..C5.

    Args:
        depth: 50, 101 or 152 (bottleneck blocks per stage (3, 4, 6, 3), (3, 4, 23, 3), (3, 8, 36, 3)).
        input_tensor: optional Keras tensor (or backend tensor) to build the model on.
        input_shape: ``(height, width, channels)``; height and width may be ``None``. Ignored
            when ``input_tensor`` is a Keras tensor.
        stride_in_1x1: put the stride of downsampling blocks in the first 1 x 1 convolution
            (Caffe / Detectron) instead of the 3 x 3 one (torchvision).
        norm: ``"frozen"`` (:class:`FrozenBatchNormalization`: fixed statistics and affine
            parameters, torchvision's ``FrozenBatchNorm2d``), ``"batch"``
            (``keras.layers.BatchNormalization``) or ``"sync_batch"`` (the same with
            ``synchronized=True``: statistics across replicas of a ``tf.distribute`` strategy).
        norm_epsilon: epsilon of every normalization layer (torchvision: ``1e-5``; ``0.0`` for
            its COCO_V1 Mask R-CNN weights).
        norm_momentum: moving-average momentum of ``"batch"`` norms in Keras's convention
            (``0.9`` is PyTorch's ``momentum=0.1``); unused by ``"frozen"``.
        frozen_stages: the first stages set to ``trainable=False``: 0 none, 1 the stem
            (``conv1``, ``bn1``), 2 the stem and ``layer1`` (torchvision's detection default,
            ``trainable_layers=3``), ..., 5 everything. A ``BatchNormalization`` in a frozen
            stage runs in inference mode.
        kernel_initializer: of every convolution; defaults to He normal with ``fan_out``
            (torchvision's initialization).
        kernel_regularizer: of every convolution kernel.
        dtype: the dtype policy of every layer (e.g. ``keras.DTypePolicy("mixed_bfloat16")``: float32
            variables, bfloat16 features); ``None``: Keras' default.
        name: model name, default ``"resnet{depth}"``.

    Returns:
        A functional model from float32 images ``[B, H, W, C]`` (already normalized, e.g.
        ImageNet mean/std) to a dict ``{"C2": [B, ceil(H/4), ceil(W/4), 256],
        "C3": [.., /8, .., 512], "C4": [.., /16, .., 1024], "C5": [.., /32, .., 2048]}`` in the compute
        dtype of ``dtype``.
    """
    _check_resnet_arguments(depth, norm, frozen_stages)
    frozen_stages = int(frozen_stages)
    inputs = image_input(input_tensor, input_shape)
    layers = _ResNetLayers(norm, norm_epsilon, norm_momentum, kernel_initializer, kernel_regularizer, dtype)
    x = _stem(inputs, layers, trainable=frozen_stages < 1)
    features = {}
    for stage, (blocks, width) in enumerate(zip(STAGE_BLOCKS[depth], STAGE_WIDTHS), start=1):
        x = _stage(x, layers, stage, blocks, width, stride_in_1x1, trainable=frozen_stages < stage + 1)
        features[FEATURE_NAMES[stage - 1]] = x
    model_inputs = inputs if input_tensor is None else keras.utils.get_source_inputs(inputs)
    return keras.Model(model_inputs, features, name=name or f"resnet{depth}")


def _check_resnet_arguments(depth: int, norm: str, frozen_stages: int) -> None:
    if depth not in STAGE_BLOCKS:
        raise ValueError(f"ResNet depth must be one of {sorted(STAGE_BLOCKS)}, got {depth!r}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if not 0 <= int(frozen_stages) <= 5:
        raise ValueError(f"frozen_stages must be in 0..5 (stem and four stages), got {frozen_stages!r}")


class _ResNetLayers:
    """Makes the layers of one ResNet body with its shared settings: the norm, the convolutions' initializer (one
    independent stream per convolution, numbered in creation order) and regularizer, and the dtype policy."""

    def __init__(self, norm: str, epsilon: float, momentum: float, initializer: Any, regularizer: Any, dtype: Any):
        self.norm_kind, self.epsilon, self.momentum, self.dtype = norm, epsilon, momentum, dtype
        self.initializer = keras.initializers.get(initializer) if initializer else _default_kernel_initializer()
        self.regularizer = keras.regularizers.get(regularizer)
        self.count = itertools.count()

    def conv(self, filters: int, size: int, stride: int, padding: str, name: str, trainable: bool):
        return keras.layers.Conv2D(
            filters,
            size,
            strides=stride,
            padding=padding,
            use_bias=False,
            kernel_initializer=independent_initializer(self.initializer, next(self.count)),
            kernel_regularizer=self.regularizer,
            trainable=trainable,
            dtype=self.dtype,
            name=name,
        )

    def norm(self, name: str, trainable: bool):
        if self.norm_kind == "frozen":
            return FrozenBatchNormalization(epsilon=self.epsilon, trainable=trainable, dtype=self.dtype, name=name)
        return keras.layers.BatchNormalization(
            epsilon=self.epsilon,
            momentum=self.momentum,
            synchronized=self.norm_kind == "sync_batch",
            trainable=trainable,
            dtype=self.dtype,
            name=name,
        )

    def relu(self, name: str):
        return keras.layers.ReLU(dtype=self.dtype, name=name)

    def pad(self, padding: int, name: str):
        return keras.layers.ZeroPadding2D(padding, dtype=self.dtype, name=name)


def _stem(inputs, layers: _ResNetLayers, trainable: bool):
    """Stage 1: 7x7/2 conv pad 3, norm, ReLU, 3x3/2 max pool pad 1 (stride 4 in all)."""
    x = layers.pad(3, "conv1_pad")(inputs)
    x = layers.conv(64, 7, 2, "valid", "conv1", trainable)(x)
    x = layers.norm("bn1", trainable)(x)
    x = layers.relu("relu")(x)
    x = layers.pad(1, "maxpool_pad")(x)  # zeros == -inf after a ReLU, see the module doc
    return keras.layers.MaxPooling2D(3, strides=2, padding="valid", dtype=layers.dtype, name="maxpool")(x)


def _stage(x, layers: _ResNetLayers, stage: int, blocks: int, width: int, stride_in_1x1: bool, trainable: bool):
    """Residual stage ``stage`` (1..4, torchvision's ``layer{stage}``): ``blocks`` bottlenecks, the first one
    downsampling (stride 2, except in stage 1) and widening the shortcut."""
    for block in range(blocks):
        stride = 2 if block == 0 and stage > 1 else 1
        x = _bottleneck(x, layers, f"layer{stage}_{block}", width, stride, stride_in_1x1, block == 0, trainable)
    return x


def _bottleneck(
    x, layers: _ResNetLayers, prefix: str, width: int, stride: int, stride_in_1x1: bool, project: bool, trainable: bool
):
    """1x1 (width) -> 3x3 (width) -> 1x1 (4 x width), plus the shortcut (a strided 1x1 projection and norm when
    ``project``), then ReLU; the stride sits in the first 1x1 or in the 3x3 (``stride_in_1x1``)."""
    stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
    y = layers.conv(width, 1, stride_1x1, "valid", f"{prefix}_conv1", trainable)(x)
    y = layers.norm(f"{prefix}_bn1", trainable)(y)
    y = layers.relu(f"{prefix}_relu1")(y)
    if stride_3x3 > 1:  # symmetric padding, as PyTorch (see the module doc)
        y = layers.pad(1, f"{prefix}_conv2_pad")(y)
        y = layers.conv(width, 3, stride_3x3, "valid", f"{prefix}_conv2", trainable)(y)
    else:
        y = layers.conv(width, 3, 1, "same", f"{prefix}_conv2", trainable)(y)
    y = layers.norm(f"{prefix}_bn2", trainable)(y)
    y = layers.relu(f"{prefix}_relu2")(y)
    y = layers.conv(width * EXPANSION, 1, 1, "valid", f"{prefix}_conv3", trainable)(y)
    y = layers.norm(f"{prefix}_bn3", trainable)(y)
    shortcut = x
    if project:  # channel change (and stride) on the first block of every stage
        shortcut = layers.conv(width * EXPANSION, 1, stride, "valid", f"{prefix}_downsample_0", trainable)(x)
        shortcut = layers.norm(f"{prefix}_downsample_1", trainable)(shortcut)
    x = keras.layers.Add(dtype=layers.dtype, name=f"{prefix}_add")([y, shortcut])
    return layers.relu(f"{prefix}_out")(x)


def image_input(input_tensor: Any, input_shape: tuple | None):
    """The Keras image input of a backbone, from ``input_tensor`` / ``input_shape``.

    keras.applications semantics: a Keras tensor is used as is; a backend tensor is wrapped in
    ``keras.Input(tensor=...)``; otherwise a new input named ``"images"`` of ``input_shape``.
    """
    if input_tensor is not None and keras.backend.is_keras_tensor(input_tensor):
        if len(input_tensor.shape) != 4:
            raise ValueError(f"input_tensor must be 4-D [B, H, W, C], got shape {input_tensor.shape}")
        return input_tensor
    if input_shape is None:
        input_shape = tuple(input_tensor.shape[1:]) if input_tensor is not None else (None, None, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] is None:
        raise ValueError(f"input_shape must be (height, width, channels) with known channels, got {input_shape}")
    if input_tensor is not None:
        return keras.Input(tensor=input_tensor, shape=input_shape, name="images")
    return keras.Input(shape=input_shape, name="images")
