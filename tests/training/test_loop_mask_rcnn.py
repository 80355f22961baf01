"""Mask R-CNN training: configs, the losses' gradients, distribution, resume, divergence, the CLI."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import tensorflow as tf

from kzoo.config import ConfigError, MaskRCNNExperimentConfig, config_from_dict, load_config
from kzoo.tasks import train
from kzoo.tasks.instance_segmentation import InstanceSegmentationTask, load_detection_data, make_pipelines


def test_task_selects_the_experiment_dataclass(tmp_path, tiny_mask_rcnn):
    config = config_from_dict(tiny_mask_rcnn(tmp_path))
    assert isinstance(config, MaskRCNNExperimentConfig)
    assert config.model.backbone.name == "small_convnet" and config.model.anchors.sizes == (8, 16, 32, 64, 128)
    with pytest.raises(ConfigError, match="unknown task 'detector'"):
        config_from_dict({"task": "detector"})
    with pytest.raises(ConfigError, match="model.rpn_batch"):
        config_from_dict({"task": "mask_rcnn", "model": {"rpn_batch": 3}})


@pytest.mark.parametrize("name", ["mask_rcnn_shapes", "mask_rcnn_penn_fudan"])
def test_shipped_configs_load(name):
    config = load_config(f"configs/{name}.yaml")
    assert isinstance(config, MaskRCNNExperimentConfig) and config.train.gradient_clip_norm


def test_losses_are_finite_and_reach_every_trainable_variable(tmp_path, tiny_mask_rcnn):
    config = config_from_dict(tiny_mask_rcnn(tmp_path))
    model = InstanceSegmentationTask(config).build_model(init_weights=False)
    data = load_detection_data(config)
    train, _ = make_pipelines(config, data, global_batch=2)
    batch = next(iter(train))
    with tf.GradientTape() as tape:
        losses = model.training_losses(batch, seed=tf.constant([1, 2]))
    assert set(losses) == {"rpn_objectness", "rpn_box", "classification", "box", "mask", "total"}
    for name, value in losses.items():
        assert value.shape == () and value.dtype == tf.float32 and np.isfinite(value.numpy()), name
    np.testing.assert_allclose(
        losses["total"].numpy(), sum(losses[k].numpy() for k in losses if k != "total"), rtol=1e-6
    )
    # at initialization the classifier is uniform-ish and the mask logits near 0: sane magnitudes
    assert 0.5 < losses["classification"].numpy() < 3.0 and 0.3 < losses["mask"].numpy() < 3.0
    gradients = tape.gradient(losses["total"], model.trainable_variables)
    missing = [v.path for v, g in zip(model.trainable_variables, gradients) if g is None]
    assert not missing, f"no gradient for {missing}"
    # a fixed seed samples the same anchors and RoIs
    again = model.training_losses(batch, seed=tf.constant([1, 2]))
    assert float(again["total"]) == pytest.approx(float(losses["total"]), rel=1e-6)


def test_mask_branch_runs_on_the_positives(tmp_path, tiny_mask_rcnn, monkeypatch):
    """Training's mask branch runs on as many RoIs as the image with the most positives has (outside XLA), or on
    the whole positives-first prefix (XLA, static shapes): the losses and the gradients are the same."""
    from kzoo.models import mask_rcnn as mask_rcnn_module

    positive = tf.constant([[True] * 3 + [False] * 5, [True] + [False] * 7])
    assert int(mask_rcnn_module._mask_branch_rois(positive, 8, 0.5)) == 3
    assert int(mask_rcnn_module._mask_branch_rois(tf.zeros([2, 8], tf.bool), 8, 0.5)) == 1
    under_xla = tf.function(lambda p: tf.constant(mask_rcnn_module._mask_branch_rois(p, 8, 0.5)), jit_compile=True)
    assert int(under_xla(positive)) == 4

    config = config_from_dict(tiny_mask_rcnn(tmp_path))
    model = InstanceSegmentationTask(config).build_model(init_weights=False)
    batch = next(iter(make_pipelines(config, load_detection_data(config), global_batch=2)[0]))

    def losses_and_gradients():
        with tf.GradientTape() as tape:
            losses = model.training_losses(batch, seed=tf.constant([3, 4]))
        return losses, tape.gradient(losses["total"], model.trainable_variables)

    positives, gradients = tf.function(losses_and_gradients)()
    monkeypatch.setattr(mask_rcnn_module, "_in_xla_context", lambda: True)
    prefix, prefix_gradients = tf.function(losses_and_gradients)()
    assert positives["mask"].numpy() > 0
    for name in positives:
        np.testing.assert_allclose(positives[name].numpy(), prefix[name].numpy(), rtol=1e-5, err_msg=name)
    for ours, theirs in zip(gradients, prefix_gradients):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-6)


def test_training_images_must_fit_the_canvas_rule(tmp_path, tiny_mask_rcnn):
    model = InstanceSegmentationTask(config_from_dict(tiny_mask_rcnn(tmp_path))).build_model(init_weights=False)
    batch = {
        "images": tf.zeros([1, 60, 64, 3]),
        "image_size": [[60, 64]],
        "boxes": tf.zeros([1, 1, 4]),
        "classes": [[0]],
        "valid": [[False]],
        "is_crowd": [[False]],
        "masks": tf.zeros([1, 1, 28, 28]),
    }
    with pytest.raises(ValueError, match="multiples of 32"):
        model.training_losses(batch)


@pytest.mark.slow
def test_one_step_on_two_replicas_matches_one_device(training, tmp_path, tiny_mask_rcnn):
    """The global batch of 2 split over two logical CPUs gives the weights of one device on both images."""
    config = tiny_mask_rcnn(tmp_path / "one", train={"epochs": 1}, data={"train_examples": 2})
    one = training.start("one_device", {**config, "strategy": {"kind": "one_device"}})
    mirrored_config = tiny_mask_rcnn(tmp_path / "two", data={"train_examples": 2}, train={"batch_size": 1})
    mirrored_config["strategy"] = {"kind": "mirrored", "devices": ["/cpu:0", "/cpu:1"]}
    two = training.start("mirrored", mirrored_config, logical_cpus=2)
    training.wait([one, two])
    summary_one, initial_one, final_one = one.result()
    summary_two, initial_two, final_two = two.result()
    assert summary_two["variable_copies"] == 2 and summary_two["replica_spread"] == 0.0
    assert summary_one["iterations"] == summary_two["iterations"] == 1
    for a, b in zip(initial_one, initial_two, strict=True):
        np.testing.assert_array_equal(a, b)
    assert summary_one["metrics"]["loss_total"] == pytest.approx(summary_two["metrics"]["loss_total"], rel=1e-5)
    moved = 0
    for index, (a, b, start) in enumerate(zip(final_one, final_two, initial_one, strict=True)):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5, err_msg=f"variable {index}")
        moved += int(not np.array_equal(a, start))
    assert moved > len(final_one) // 2  # the step trained the network, not a no-op


@pytest.mark.slow
def test_killed_run_resumes_and_matches_uninterrupted_run(training, tmp_path, tiny_mask_rcnn):
    sections = {
        "data": {"train_examples": 8, "horizontal_flip": True},
        "train": {"epochs": 2, "schedule": "step", "step_epochs": [1], "warmup_epochs": 0.5},
    }
    uninterrupted = training.start("uninterrupted", tiny_mask_rcnn(tmp_path / "uninterrupted", **sections))
    output = tmp_path / "interrupted"
    config = tiny_mask_rcnn(output, **sections)
    doomed = training.start("doomed", config, step_sleep=[4 + 1, 600])  # 4 steps per epoch
    deadline = time.monotonic() + 300
    while "sleeping before step 6" not in doomed.stdout:
        if doomed.process.poll() is not None or time.monotonic() > deadline:
            doomed.kill()
            pytest.fail(f"the run to kill ended or stalled (exit {doomed.process.poll()}):\n{doomed.stderr_tail()}")
        time.sleep(0.2)
    assert (output / "checkpoints" / "ckpt-1.index").exists()
    doomed.kill()
    assert not (output / "metrics.json").exists()
    resumed = training.start("resumed", config)
    training.wait([uninterrupted, resumed])
    assert "after epoch 1 of 2" in resumed.stdout
    summary, _, final = resumed.result()
    reference, _, reference_final = uninterrupted.result()
    assert summary["iterations"] == reference["iterations"] == 8
    for index, (a, b) in enumerate(zip(final, reference_final, strict=True)):
        np.testing.assert_allclose(a, b, atol=1e-6, err_msg=f"variable {index}")
    metrics = json.loads((output / "metrics.json").read_text())
    for key in ("eval_bbox_AP", "eval_segm_AP", "loss_mask", "loss_rpn_objectness"):
        assert key in metrics


def test_diverging_run_raises(tmp_path, tiny_mask_rcnn):
    from kzoo.training.loop import TrainingDivergedError

    config = config_from_dict(
        tiny_mask_rcnn(tmp_path, train={"learning_rate": 1e8, "gradient_clip_norm": None, "momentum": 0.0})
    )
    with pytest.raises(TrainingDivergedError, match="loss became"):
        train(config, verbose=0)
    assert not (tmp_path / "metrics.json").exists()


def test_cli_train_then_evaluate(tmp_path, capsys, tiny_mask_rcnn):
    import yaml

    from kzoo.cli import main

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_mask_rcnn(tmp_path / "run")))
    assert main(["train", str(path), "--quiet", "--set", "train.epochs=1"]) == 0
    out = capsys.readouterr().out
    assert "COCO AP on 4 images" in out and "AP50" in out and "segm" in out
    results = tmp_path / "results.json"
    assert main(["evaluate", str(path), "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "kzoo evaluate tiny_mask_rcnn" in out and "APl" in out
    assert any(f"AP {name}" in out for name in ("circle", "square", "triangle"))  # per-class AP rows
    assert isinstance(json.loads(results.read_text()), list)
    metrics = json.loads((tmp_path / "results_metrics.json").read_text())
    assert any(key.startswith("segm_AP/") for key in metrics)
    trained = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["bbox_AP"] == pytest.approx(trained["eval_bbox_AP"], abs=1e-9)
    assert main(["evaluate", str(path), "--weights", str(tmp_path / "missing.h5")]) == 2
    assert "weights file not found" in capsys.readouterr().err


def test_jit_compiled_train_step_with_the_gather_kernel(tmp_path, tiny_mask_rcnn):
    config = config_from_dict(
        tiny_mask_rcnn(tmp_path, model={"roi_align": {"method": "gather"}}, train={"jit_compile": True, "epochs": 1})
    )
    metrics = train(config, verbose=0)
    assert np.isfinite(metrics["loss_total"]) and metrics["eval_images"] == 4
    with pytest.raises(ValueError, match="roi_align.method: gather"):
        InstanceSegmentationTask(config_from_dict(tiny_mask_rcnn(tmp_path, train={"jit_compile": True}))).build_model(
            init_weights=False
        )


def test_demo_runs_mask_rcnn_configs(tmp_path, capsys, tiny_mask_rcnn):
    import yaml

    from kzoo.cli import main

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_mask_rcnn(tmp_path / "unused")))
    assert main(["demo", "--config", str(path), "--output-dir", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "kzoo demo: Mask R-CNN on built-in shapes" in out and "held-out bbox AP50" in out
    assert sorted(p.name for p in (tmp_path / "demo" / "samples").glob("*_detections.png")) == [
        f"sample{i}_detections.png" for i in range(4)
    ]


def test_bfloat16_mixed_precision_trains(tmp_path, tiny_mask_rcnn):
    import keras

    config = config_from_dict({**tiny_mask_rcnn(tmp_path), "precision": "bfloat16"})
    assert config.model.compute_dtype == "bfloat16"  # one setting: the model computes in bfloat16
    metrics = train(config, verbose=0)
    assert np.isfinite(metrics["loss_total"]) and metrics["eval_images"] == 4
    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(ConfigError, match="precision"):
        config_from_dict({**tiny_mask_rcnn(tmp_path), "precision": "float16"})
