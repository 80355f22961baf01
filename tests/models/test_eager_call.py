"""``model(images)`` called eagerly runs a compiled graph (one per canvas size and dtype for Mask R-CNN, one per
dtype for NIN) that gives what ``tf.function(model.call)`` and ``model.predict`` give. Speed and memory:
benchmarks/python_call.py."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.models.mask_rcnn import MaskRCNNModel
from kzoo.models.mask_rcnn_config import MaskRCNNConfig
from kzoo.models.nin import build_nin, resolve_blocks

TINY = dict(
    num_classes=4,
    backbone={"name": "small_convnet", "width": 0.25, "norm": "group"},
    fpn={"channels": 16},
    anchors={"sizes": (8, 16, 32, 64, 128), "aspect_ratios": (1.0,)},
    rpn={"pre_nms_top_k_test": 50, "post_nms_top_k_test": 20},
    box_head={"fc_dim": 32},
    mask_head={"num_convs": 1, "channels": 16},
    detection={"max_detections": 10, "score_threshold": 0.0},
    input={"min_size": 64, "max_size": 96},
)


@pytest.fixture(scope="module")
def mask_rcnn():
    keras.utils.set_random_seed(0)
    model = MaskRCNNModel(MaskRCNNConfig().replace(**TINY))
    model.build((None, 64, 64, 3))
    return model


def test_mask_rcnn_eager_call_is_the_compiled_graph(mask_rcnn):
    rng = np.random.default_rng(0)
    for shape in [(2, 48, 64, 3), (1, 96, 128, 3), (3, 50, 50, 3), (1, 40, 40, 3)]:
        images = rng.integers(0, 256, shape, dtype=np.uint8)
        eager = mask_rcnn(images)
        graph = tf.function(mask_rcnn.call)(tf.constant(images))
        predicted = mask_rcnn.predict(images, verbose=0, batch_size=2)
        for key in eager:
            np.testing.assert_allclose(eager[key].numpy(), graph[key].numpy(), atol=2e-5, err_msg=key)
            np.testing.assert_allclose(eager[key].numpy(), predicted[key], atol=2e-5, err_msg=key)
    graphs = mask_rcnn.__dict__["_kzoo_compiled_graphs"]
    # 48x64 and 96x128 pad to one canvas (64x96); 50x50 and 40x40 to another (64x64): two graphs for four sizes
    assert set(graphs) == {((64, 96), "uint8"), ((64, 64), "uint8")}
    mask_rcnn(np.zeros((1, 48, 64, 3), np.float32))
    assert ((64, 96), "float32") in graphs  # one graph per dtype too
    assert not any("compiled" in v.path for v in mask_rcnn.weights)  # nothing tracked: weights files unchanged


def test_mask_rcnn_eager_errors_stay_clear(mask_rcnn):
    with pytest.raises(ValueError, match="3 channels|channels"):
        mask_rcnn(np.zeros((1, 48, 64, 4), np.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="MaskRCNN images"):
        mask_rcnn(np.full((1, 48, 64, 3), np.nan, np.float32))


def test_mask_rcnn_keeps_a_bounded_number_of_graphs(mask_rcnn, monkeypatch):
    import kzoo.models.mask_rcnn as module

    monkeypatch.setattr(module, "COMPILED_GRAPHS_KEPT", 2)
    graphs = mask_rcnn.__dict__.setdefault("_kzoo_compiled_graphs", {})
    graphs.clear()
    for shape in [(1, 48, 64, 3), (1, 50, 50, 3), (1, 64, 48, 3), (1, 48, 64, 3)]:  # canvases 64x96, 64x64, 96x64
        mask_rcnn(np.zeros(shape, np.uint8))
    assert list(graphs) == [((96, 64), "uint8"), ((64, 96), "uint8")]  # the least recently used went first


def test_nin_eager_call_is_the_compiled_graph():
    keras.utils.set_random_seed(0)
    blocks = resolve_blocks("custom", [{"filters": [8, 8]}, {"filters": [8], "pool": False, "dropout": False}])
    model = build_nin(keras.Input((16, 16, 3)), blocks, num_classes=3)
    images = np.random.default_rng(0).uniform(-1, 1, (5, 16, 16, 3)).astype(np.float32)
    eager = model(images)
    np.testing.assert_allclose(eager.numpy(), model.predict(images, verbose=0), atol=1e-6)
    np.testing.assert_allclose(eager.numpy(), tf.function(model.call)(tf.constant(images)).numpy(), atol=1e-6)
    model(images[:2])  # another batch size: the same graph
    assert list(model.__dict__["_kzoo_compiled_graphs"]) == ["float32"]
    with pytest.raises(tf.errors.InvalidArgumentError):
        model(images * 255)  # raw pixels, not preprocessed: the value check runs in the graph
    with pytest.raises(ValueError):
        model(np.zeros((1, 8, 8, 3), np.float32))
