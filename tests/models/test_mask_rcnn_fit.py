"""``MaskRCNNModel.compile`` + ``model.fit``: the Keras train step against the custom loop's step
(:func:`kzoo.training.step.make_train_step`), on one device and under ``MirroredStrategy``.

Tolerances: per-step losses rtol 1e-4 (measured ~1e-7), final weights atol 1e-6 + rtol 1e-4 (measured ~1e-9); the two
paths run the same float32 ops, only the traced graphs differ.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from kzoo.config import config_from_dict
from kzoo.models import mask_rcnn
from kzoo.tasks import instance_segmentation as seg
from kzoo.training.step import make_train_step

LOSS_RTOL = 1e-4
WEIGHT_RTOL, WEIGHT_ATOL = 1e-4, 1e-6
STEPS = 3


class _StepLosses(keras.callbacks.Callback):
    """Each step's own losses, recovered from fit's running means (``k m_k - (k - 1) m_(k-1)``)."""

    def __init__(self) -> None:
        super().__init__()
        self.means: list[dict[str, float]] = []

    def on_train_batch_end(self, batch, logs=None):
        self.means.append({name: float(logs[name]) for name in mask_rcnn.LOSS_NAMES})

    def per_step(self) -> np.ndarray:
        means = np.array([[m[name] for name in mask_rcnn.LOSS_NAMES] for m in self.means], np.float64)
        counts = np.arange(1, len(means) + 1)[:, None]
        sums = means * counts
        return np.diff(np.concatenate([np.zeros_like(sums[:1]), sums]), axis=0)


def _fixed_batches(config, batch_size: int, steps: int) -> tf.data.Dataset:
    """The first ``steps`` training batches as a dataset both paths read in the same order."""
    data = seg.load_detection_data(config)
    train, _ = seg.make_pipelines(config, data, batch_size)
    return train.take(steps).cache()


def _sgd():
    return keras.optimizers.SGD(learning_rate=0.05, momentum=0.0)


def test_loss_names_match_the_task():
    assert mask_rcnn.LOSS_NAMES == seg.LOSS_NAMES


@pytest.mark.parametrize("clip", [None, 0.5], ids=["no_clip", "clip"])
def test_fit_matches_the_custom_train_step(tmp_path, tiny_mask_rcnn, clip):
    config = config_from_dict(tiny_mask_rcnn(tmp_path, train={"seed": 3}))
    dataset = _fixed_batches(config, 2, STEPS)
    list(dataset)  # fill the cache: both paths read the same tensors

    model = seg.InstanceSegmentationTask(config).build_model(init_weights=False)
    initial = model.get_weights()
    model.compile(optimizer=_sgd(), seed=3, gradient_clip_norm=clip)
    assert len(model.get_weights()) == len(initial)  # the metrics add no weights
    recorder = _StepLosses()
    history = model.fit(dataset, steps_per_epoch=STEPS, epochs=1, verbose=0, callbacks=[recorder])
    assert set(mask_rcnn.LOSS_NAMES) <= set(history.history)
    assert int(model.optimizer.iterations.numpy()) == STEPS
    fit_losses, fit_weights = recorder.per_step(), model.get_weights()

    reference = seg.InstanceSegmentationTask(config).build_model(init_weights=False)
    reference.set_weights(initial)
    optimizer = _sgd()
    step = make_train_step(
        reference, optimizer, tf.distribute.get_strategy(), mask_rcnn.LOSS_NAMES, seed=3, gradient_clip_norm=clip
    )
    iterator = iter(dataset)
    ref_losses = np.array([step(iterator).numpy() for _ in range(STEPS)], np.float64)

    assert np.all(np.isfinite(ref_losses)) and ref_losses[0, 0] > 0
    np.testing.assert_allclose(fit_losses, ref_losses, rtol=LOSS_RTOL, atol=1e-6)
    # History holds the epoch's mean of every loss
    for index, name in enumerate(mask_rcnn.LOSS_NAMES):
        assert history.history[name][-1] == pytest.approx(ref_losses[:, index].mean(), rel=LOSS_RTOL, abs=1e-6)
    moved = 0
    for index, (a, b, start) in enumerate(zip(fit_weights, reference.get_weights(), initial, strict=True)):
        np.testing.assert_allclose(a, b, rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL, err_msg=f"variable {index}")
        moved += int(not np.array_equal(a, start))
    assert moved > len(initial) // 2  # the steps trained the network
    # the losses changed between steps: the seeds and weights moved on
    assert not np.allclose(ref_losses[0], ref_losses[-1])


def test_fit_resets_its_metrics_every_epoch(tmp_path, tiny_mask_rcnn):
    config = config_from_dict(tiny_mask_rcnn(tmp_path))
    dataset = _fixed_batches(config, 2, 1).repeat()
    model = seg.InstanceSegmentationTask(config).build_model(init_weights=False)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0))  # no update: every epoch sees the same loss
    history = model.fit(dataset, steps_per_epoch=1, epochs=2, verbose=0)
    for name in mask_rcnn.LOSS_NAMES:
        first, second = history.history[name]
        assert np.isfinite(first) and second == pytest.approx(first, rel=1e-5)
    assert [m.name for m in model.metrics] == list(mask_rcnn.LOSS_NAMES)


def test_compile_rejects_keras_losses_and_unbuilt_models(tmp_path, tiny_mask_rcnn):
    config = config_from_dict(tiny_mask_rcnn(tmp_path))
    model = seg.InstanceSegmentationTask(config).build_model(init_weights=False)
    with pytest.raises(ValueError, match="'loss' is not supported"):
        model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="gradient_clip_norm"):
        model.compile(optimizer="sgd", gradient_clip_norm=0.0)
    model.compile(optimizer=keras.optimizers.SGD(0.1), seed=7, gradient_clip_norm=2.0)
    assert model.jit_compile is False  # not Keras' "auto" (XLA on a GPU needs roi_method: gather)
    compile_config = model.get_compile_config()
    assert compile_config["seed"] == 7 and compile_config["gradient_clip_norm"] == 2.0
    other = seg.InstanceSegmentationTask(config).build_model(init_weights=False)
    other.compile_from_config(compile_config)
    assert (other._train_seed, other._gradient_clip_norm) == (7, 2.0) and other.optimizer.built
    assert float(other.optimizer.learning_rate) == pytest.approx(0.1)
    unbuilt = mask_rcnn.MaskRCNNModel(config.model)
    unbuilt.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="call it on images first"):
        unbuilt._maybe_symbolic_build()


# -- MirroredStrategy (a fresh process: logical devices must exist before TF runs an op) -------------------------

_MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf

    spec = json.loads(sys.argv[1])
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    # the replicas share the CPU's thread pools: without this, a reduction's order (and the last bits of a few
    # weights) can depend on the machine's load, and the 1e-6 comparison below with it
    tf.config.experimental.enable_op_determinism()

    import keras
    import numpy as np
    from kzoo.config import config_from_dict
    from kzoo.tasks import instance_segmentation as seg

    config = config_from_dict(spec["config"])
    data = seg.load_detection_data(config)
    batches = list(seg.make_pipelines(config, data, 2)[0].take(spec["steps"]))
    dataset = tf.data.Dataset.from_tensor_slices({k: tf.stack([b[k] for b in batches]) for k in batches[0]})

    def run(strategy, clip_mode):
        with strategy.scope():
            model = seg.InstanceSegmentationTask(config).build_model(init_weights=False)
            model.set_weights(initial)
            kwargs = {"global_clipnorm": spec["clip"]} if clip_mode == "keras" else {}
            model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05, **kwargs), seed=3,
                          gradient_clip_norm=spec["clip"] if clip_mode == "kzoo" else None)
        history = model.fit(dataset, steps_per_epoch=spec["steps"], epochs=1, verbose=0)
        copies = [[c.numpy() for c in getattr(v.value, "values", [v.value])] for v in model.weights]
        spread = max(float(np.max(np.abs(c - cs[0]))) for cs in copies for c in cs[1:]) if len(copies[0]) > 1 else 0.0
        return {"history": {k: [float(x) for x in v] for k, v in history.history.items()},
                "replicas": strategy.num_replicas_in_sync, "spread": spread}, model.get_weights()

    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        initial = seg.InstanceSegmentationTask(config).build_model(init_weights=False).get_weights()
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    one = tf.distribute.OneDeviceStrategy("/cpu:0")
    out, arrays = {}, {}
    for name, strategy, clip_mode in [("one", one, "kzoo"), ("two", mirrored, "kzoo"), ("one_keras", one, "keras"),
                                      ("two_keras", mirrored, "keras")]:
        out[name], weights = run(strategy, clip_mode)
        arrays.update({f"{name}_{i}": w for i, w in enumerate(weights)})
    arrays.update({f"initial_{i}": w for i, w in enumerate(initial)})
    np.savez(spec["result"] + ".npz", **arrays)
    with open(spec["result"] + ".json", "w") as f:
        json.dump(out, f)
    """
)


@pytest.mark.slow
def test_fit_on_two_replicas_matches_one_device(tmp_path, tiny_mask_rcnn):
    """A global batch of 2 on two logical CPUs (1 image each) trains like one device on both images, with the
    ``compile(gradient_clip_norm=...)`` clipping of the global gradient. Keras' own ``global_clipnorm`` clips each
    replica's gradient before the all-reduce: it matches on one device but not on two replicas when it binds."""
    root = Path(__file__).resolve().parents[2]
    result = tmp_path / "mirrored"
    spec = {
        "config": tiny_mask_rcnn(tmp_path / "run", train={"seed": 3}),
        "steps": 2,
        "clip": 0.5,
        "result": os.fspath(result),
    }
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": os.pathsep.join(filter(None, [os.fspath(root), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-c", _MIRRORED_SCRIPT, json.dumps(spec)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(Path(f"{result}.json").read_text())
    assert out["one"]["replicas"] == 1 and out["two"]["replicas"] == 2 and out["two"]["spread"] == 0.0
    for name in mask_rcnn.LOSS_NAMES:
        assert out["two"]["history"][name][0] == pytest.approx(out["one"]["history"][name][0], rel=LOSS_RTOL)
    with np.load(f"{result}.npz") as arrays:
        count = sum(1 for key in arrays.files if key.startswith("initial_"))
        weights = {
            run: [arrays[f"{run}_{i}"] for i in range(count)]
            for run in ("one", "two", "one_keras", "two_keras", "initial")
        }
    for index, (a, b) in enumerate(zip(weights["one"], weights["two"], strict=True)):
        np.testing.assert_allclose(a, b, rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL, err_msg=f"variable {index}")
    # on one device Keras' global_clipnorm is the same clipping
    for index, (a, b) in enumerate(zip(weights["one"], weights["one_keras"], strict=True)):
        np.testing.assert_allclose(a, b, rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL, err_msg=f"variable {index}")
    # on two replicas it clips each replica's gradient: another update
    largest = max(float(np.max(np.abs(a - b))) for a, b in zip(weights["one"], weights["two_keras"]))
    assert largest > 100 * WEIGHT_ATOL
