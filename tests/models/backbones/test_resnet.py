"""kzoo.models.backbones.resnet: torchvision's parameter counts and keys, feature shapes, stride placement, frozen
stages, and the numbers of torchvision's ResNet when torch is there."""

import math

import keras
import numpy as np
import pytest

from kzoo.layers.frozen_batch_norm import FrozenBatchNormalization
from kzoo.models.backbones import (
    FEATURE_STRIDES,
    resnet_backbone,
    torchvision_key_to_keras,
)
from kzoo.models.backbones.resnet import STAGE_BLOCKS


def _torchvision_resnet_shapes(depth):
    """torchvision's ResNet body state_dict (key -> shape), derived from the architecture, without fc."""
    shapes = {"conv1.weight": (64, 3, 7, 7)}
    for p in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"bn1.{p}"] = (64,)
    in_channels = 64
    for stage, (blocks, width) in enumerate(zip(STAGE_BLOCKS[depth], (64, 128, 256, 512)), start=1):
        for block in range(blocks):
            prefix = f"layer{stage}.{block}"
            convs = {
                "conv1": (width, in_channels, 1, 1),
                "conv2": (width, width, 3, 3),
                "conv3": (4 * width, width, 1, 1),
            }
            if block == 0:
                convs["downsample.0"] = (4 * width, in_channels, 1, 1)
            for conv, shape in convs.items():
                shapes[f"{prefix}.{conv}.weight"] = shape
                bn = f"{prefix}.{conv.replace('conv', 'bn').replace('.0', '.1')}"
                for p in ("weight", "bias", "running_mean", "running_var"):
                    shapes[f"{bn}.{p}"] = (shape[0],)
            in_channels = 4 * width
    return shapes


def _parameter_count(model):
    """Conv kernels + gamma + beta: what torchvision's ``sum(p.numel() for p in m.parameters())`` counts."""
    return sum(math.prod(v.shape) for v in model.weights if v.name in ("kernel", "gamma", "beta"))


def _feature_shapes(model):
    return {k: tuple(t.shape[1:]) for k, t in model.output.items()}


@pytest.mark.parametrize("depth,published", [(50, 25_557_032), (101, 44_549_160)])
def test_resnet_parameter_counts_match_torchvision(depth, published):
    fc = 2048 * 1000 + 1000
    tv_shapes = _torchvision_resnet_shapes(depth)
    arithmetic = sum(math.prod(s) for k, s in tv_shapes.items() if "running" not in k)
    assert arithmetic == published - fc  # 23,508,032 and 42,500,160
    counts = set()
    for stride_in_1x1 in (False, True):
        model = resnet_backbone(depth, stride_in_1x1=stride_in_1x1)
        counts.add(_parameter_count(model))
        # moving statistics are stored too: 2 more numbers per normalized channel
        bn_channels = sum(s[0] for k, s in tv_shapes.items() if k.endswith("running_mean"))
        assert model.count_params() == published - fc + 2 * bn_channels
    assert counts == {published - fc}


def test_torchvision_keys_map_onto_resnet50_variables():
    model = resnet_backbone(50, input_shape=(64, 64, 3))
    variables = {(layer.name, v.name): tuple(v.shape) for layer in model.layers for v in layer.weights}
    mapped = set()
    for key, shape in _torchvision_resnet_shapes(50).items():
        layer, name = torchvision_key_to_keras(key)
        keras_shape = shape[2:] + shape[1::-1] if len(shape) == 4 else shape  # [O, I, kh, kw] -> [kh, kw, I, O]
        assert variables[(layer, name)] == keras_shape, key
        mapped.add((layer, name))
    assert mapped == set(variables)  # every Keras variable has exactly one torchvision source
    assert torchvision_key_to_keras("backbone.body.layer1.0.downsample.1.running_var") == (
        "layer1_0_downsample_1",
        "moving_variance",
    )
    assert torchvision_key_to_keras("layer3.5.bn2.num_batches_tracked") is None
    assert torchvision_key_to_keras("fc.weight") is None
    with pytest.raises(ValueError, match="not a torchvision ResNet"):
        torchvision_key_to_keras("layer1.0.relu.weight")


@pytest.mark.parametrize(
    "size,expected",
    [
        ((64, 64), [(16, 16), (8, 8), (4, 4), (2, 2)]),
        ((96, 160), [(24, 40), (12, 20), (6, 10), (3, 5)]),
        ((65, 97), [(17, 25), (9, 13), (5, 7), (3, 4)]),  # symmetric padding: ceil at every stride 2
    ],
)
def test_resnet_feature_shapes_both_layouts(size, expected):
    channels = [256, 512, 1024, 2048]
    want = {f"C{i}": (*hw, c) for i, hw, c in zip(range(2, 6), expected, channels)}
    for stride_in_1x1 in (False, True):
        model = resnet_backbone(50, input_shape=(*size, 3), stride_in_1x1=stride_in_1x1)
        assert _feature_shapes(model) == want
        for key, (h, w, _) in want.items():  # ceil(H / stride)
            assert (h, w) == tuple(-(-s // FEATURE_STRIDES[key]) for s in size)


def test_resnet_stride_placement_and_padding():
    torch_layout = resnet_backbone(50, input_shape=(64, 64, 3))
    caffe_layout = resnet_backbone(50, input_shape=(64, 64, 3), stride_in_1x1=True)
    # layer2_0: input at stride 4 (16x16)
    assert torch_layout.get_layer("layer2_0_conv1").output.shape[1:3] == (16, 16)
    assert torch_layout.get_layer("layer2_0_conv2").output.shape[1:3] == (8, 8)
    assert caffe_layout.get_layer("layer2_0_conv1").output.shape[1:3] == (8, 8)
    assert caffe_layout.get_layer("layer2_0_conv1").strides == (2, 2)
    assert caffe_layout.get_layer("layer2_0_conv2").strides == (1, 1)
    assert torch_layout.get_layer("layer2_0_conv2").strides == (2, 2)
    # explicit symmetric padding before every strided 3x3/7x7 layer
    assert torch_layout.get_layer("conv1_pad").padding == ((3, 3), (3, 3))
    assert torch_layout.get_layer("maxpool_pad").padding == ((1, 1), (1, 1))
    assert torch_layout.get_layer("layer3_0_conv2_pad").padding == ((1, 1), (1, 1))
    assert all(layer.padding == "valid" for layer in torch_layout.layers if getattr(layer, "strides", (1, 1)) != (1, 1))
    assert not any(layer.name.endswith("conv2_pad") for layer in caffe_layout.layers)


def test_resnet_forward_dynamic_shape_and_names():
    model = resnet_backbone(50, input_shape=(None, None, 3), name="body")
    assert model.name == "body" and model.input.shape == (None, None, None, 3)
    images = np.random.default_rng(0).normal(size=(2, 64, 96, 3)).astype(np.float32)
    out = model(images)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "C2": (2, 16, 24, 256),
        "C3": (2, 8, 12, 512),
        "C4": (2, 4, 6, 1024),
        "C5": (2, 2, 3, 2048),
    }
    assert all(np.isfinite(keras.ops.convert_to_numpy(v)).all() for v in out.values())
    # every convolution is bias-free and followed by its norm layer
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 53 and not any(conv.use_bias for conv in convs)
    for conv in convs:
        norm_name = (
            "bn1" if conv.name == "conv1" else conv.name.replace("conv", "bn").replace("downsample_0", "downsample_1")
        )
        assert isinstance(model.get_layer(norm_name), FrozenBatchNormalization)


@pytest.mark.parametrize("frozen_stages", [0, 1, 2])
def test_resnet_frozen_stages(frozen_stages):
    model = resnet_backbone(50, input_shape=(64, 64, 3), norm="batch", frozen_stages=frozen_stages)
    stem = ["conv1", "bn1"]
    layer1 = [layer.name for layer in model.layers if layer.name.startswith("layer1_") and layer.weights]
    layer2 = [layer.name for layer in model.layers if layer.name.startswith("layer2_") and layer.weights]
    assert all(model.get_layer(n).trainable == (frozen_stages < 1) for n in stem)
    assert all(model.get_layer(n).trainable == (frozen_stages < 2) for n in layer1)
    assert all(model.get_layer(n).trainable for n in layer2)
    frozen_layers = (stem if frozen_stages >= 1 else []) + (layer1 if frozen_stages >= 2 else [])
    frozen = {id(v) for n in frozen_layers for v in model.get_layer(n).weights}
    assert not frozen & {id(v) for v in model.trainable_weights}
    # 53 convs, each with a norm (kernel, gamma, beta); the stem has 1 conv, layer1 3 x 3 + 1 (downsample)
    assert len(model.trainable_weights) == {0: 159, 1: 159 - 3, 2: 159 - 3 - 30}[frozen_stages]


def test_resnet_blocks_start_from_independent_weights():
    # one initializer for every convolution must not make the repeated blocks of a stage start as copies
    for initializer in (None, keras.initializers.HeNormal(seed=1)):
        model = resnet_backbone(50, input_shape=(32, 32, 3), kernel_initializer=initializer)
        kernels = {v.path: v.numpy() for v in model.weights if v.path.endswith("kernel")}
        layer4 = [kernels[f"layer4_{block}_conv2/kernel"] for block in range(3)]
        assert not np.array_equal(layer4[1], layer4[2]) and not np.array_equal(layer4[0], layer4[1])
        fingerprints = {float(k.ravel()[0]) for k in kernels.values()}
        assert len(fingerprints) == len(kernels) == 53


def test_resnet_batch_norm_variants_and_frozen_stage_statistics():
    model = resnet_backbone(50, input_shape=(64, 64, 3), norm="batch", norm_epsilon=1e-3, frozen_stages=1)
    stem_bn, late_bn = model.get_layer("bn1"), model.get_layer("layer4_2_bn3")
    assert isinstance(late_bn, keras.layers.BatchNormalization) and late_bn.epsilon == 1e-3
    assert late_bn.momentum == 0.9 and not late_bn.synchronized
    before = [keras.ops.convert_to_numpy(bn.moving_mean).copy() for bn in (stem_bn, late_bn)]
    model(np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype(np.float32), training=True)
    after = [keras.ops.convert_to_numpy(bn.moving_mean) for bn in (stem_bn, late_bn)]
    np.testing.assert_array_equal(before[0], after[0])  # frozen stage: inference mode, statistics kept
    assert not np.array_equal(before[1], after[1])  # trainable stage: statistics updated
    sync = resnet_backbone(50, input_shape=(64, 64, 3), norm="sync_batch")
    assert sync.get_layer("layer1_0_bn1").synchronized
    frozen = resnet_backbone(50, input_shape=(64, 64, 3), norm_epsilon=0.0)
    assert frozen.get_layer("layer1_0_bn1").epsilon == 0.0
    assert len(frozen.trainable_weights) == 52  # every conv but the frozen stem conv1; no norm variables


def test_resnet_argument_errors_and_input_tensor():
    with pytest.raises(ValueError, match="depth"):
        resnet_backbone(34)
    with pytest.raises(ValueError, match="norm"):
        resnet_backbone(50, norm="group")
    with pytest.raises(ValueError, match="frozen_stages"):
        resnet_backbone(50, frozen_stages=6)
    with pytest.raises(ValueError, match="input_shape"):
        resnet_backbone(50, input_shape=(64, 64))
    inputs = keras.Input((64, 64, 3), name="pixels")
    model = resnet_backbone(50, input_tensor=inputs)
    assert model.inputs[0] is inputs and _feature_shapes(model)["C5"] == (2, 2, 2048)


@pytest.mark.parametrize("stride_in_1x1", [False, True])
def test_resnet_matches_torchvision_when_available(stride_in_1x1, torch_run):
    x = {
        f"x{i}": np.random.default_rng(1).normal(size=(1, *size, 3)).astype(np.float32)
        for i, size in enumerate(((64, 64), (65, 97)))
    }
    reference = torch_run(
        """
        from torchvision.models._utils import IntermediateLayerGetter

        torch.manual_seed(0)
        tv = torchvision.models.resnet50()
        if bool(inputs["stride_in_1x1"]):  # the Caffe layout: move each first block's stride to its 1x1 conv
            for stage in (tv.layer2, tv.layer3, tv.layer4):
                stage[0].conv1.stride, stage[0].conv2.stride = (2, 2), (1, 1)
        for module in tv.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eps = 0.0
                for tensor, low, high in ((module.weight, 0.5, 1.5), (module.bias, -0.5, 0.5),
                                          (module.running_mean, -0.5, 0.5), (module.running_var, 0.5, 2.0)):
                    tensor.uniform_(low, high)
        tv.eval()
        body = IntermediateLayerGetter(tv, {"layer1": "C2", "layer2": "C3", "layer3": "C4", "layer4": "C5"})
        for key, value in tv.state_dict().items():
            outputs["w:" + key] = value.numpy()
        for name in ("x0", "x1"):
            for level, feature in body(torch.from_numpy(inputs[name].transpose(0, 3, 1, 2))).items():
                outputs[f"{name}:{level}"] = feature.numpy().transpose(0, 2, 3, 1)
        """,
        stride_in_1x1=np.array(stride_in_1x1),
        **x,
    )
    model = resnet_backbone(50, stride_in_1x1=stride_in_1x1, norm_epsilon=0.0)
    for key, value in reference.items():
        mapped = torchvision_key_to_keras(key[2:]) if key.startswith("w:") else None
        if mapped is not None:
            (variable,) = [v for v in model.get_layer(mapped[0]).weights if v.name == mapped[1]]
            variable.assign(value.transpose(2, 3, 1, 0) if value.ndim == 4 else value)
    for name, image in x.items():
        out = model(image)
        for level in ("C2", "C3", "C4", "C5"):
            ref = reference[f"{name}:{level}"]
            got = keras.ops.convert_to_numpy(out[level])
            assert got.shape == ref.shape
            assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max(), (name, level)
