"""Evaluation faults: bad geometry must never reach pycocotools unchecked (it crashes the process), and a failed
evaluation during training loses no training (the epoch's checkpoint is saved first; the next run evaluates the
restored model instead of training the epoch again)."""

from __future__ import annotations

import copy
import errno
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kzoo.config import config_from_dict
from kzoo.tasks import task_for
from kzoo.training import loop
from kzoo.training.checkpoints import EPOCH_RECORD

REPO_ROOT = Path(__file__).resolve().parents[2]

# ------------------------------------------------------------------------------------------- training loop

# a deterministic tiny NIN (no dropout, batch norm or augmentation): 2 steps per epoch
TINY_NIN = {
    "name": "tiny",
    "model": {
        "variant": "custom",
        "num_classes": 5,
        "input_shape": [16, 16, 3],
        "dropout_rate": 0.0,
        "use_batch_norm": False,
        "blocks": [{"filters": [8, 8]}, {"filters": [8], "pool": False, "dropout": False}],
    },
    "data": {
        "source": "shapes",
        "train_examples": 64,
        "eval_examples": 20,
        "image_size": 16,
        "crop_padding": 0,
        "horizontal_flip": False,
    },
    "train": {
        "epochs": 2,
        "batch_size": 32,
        "learning_rate": 0.05,
        "schedule": "constant",
        "warmup_epochs": 0.0,
        "eval_every_epochs": 1,
    },
}
TIMING_KEYS = ("epoch_seconds", "train_seconds_this_run", "train_images_per_second")


def _task(output_dir: Path, fail_with: BaseException | None = None, **train):
    """The tiny NIN's task, counting its train steps and evaluations (``task.counts``); with ``fail_with``, its
    first evaluation raises that instead."""
    values = copy.deepcopy(TINY_NIN)
    values["train"].update(train)
    task = task_for(config_from_dict({**values, "output_dir": str(output_dir)}))
    task.counts = {"steps": 0, "evaluations": 0}
    make_train_step, evaluate = task.make_train_step, task.evaluate

    def counting_make_train_step(*args, **kwargs):
        step = make_train_step(*args, **kwargs)

        def counted(iterator):
            task.counts["steps"] += 1
            return step(iterator)

        return counted

    def failing_evaluate(*args, **kwargs):
        task.counts["evaluations"] += 1
        if fail_with is not None and task.counts["evaluations"] == 1:
            raise fail_with
        return evaluate(*args, **kwargs)

    task.make_train_step, task.evaluate = counting_make_train_step, failing_evaluate
    return task


def _without_timings(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in TIMING_KEYS}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """``metrics.json`` of the tiny NIN trained without a fault."""
    output = tmp_path_factory.mktemp("uninterrupted")
    task = _task(output)
    loop.train(task, verbose=0)
    assert task.counts == {"steps": 4, "evaluations": 2}
    return json.loads((output / loop.METRICS_FILE).read_text())


@pytest.mark.parametrize(
    "fault",
    [
        RuntimeError("the evaluation crashed"),
        KeyboardInterrupt(),
        OSError(errno.ENOSPC, "No space left on device"),
    ],
    ids=["error", "ctrl-c", "full-disk"],
)
def test_failed_evaluation_resumes_by_evaluating_not_retraining(fault, uninterrupted, tmp_path):
    """Epoch 1's evaluation fails: its checkpoint is there; the next run evaluates epoch 1 before training epoch 2
    (2 train steps, not 4) and ends with the uninterrupted run's metrics."""
    failing = _task(tmp_path, fail_with=fault)
    with pytest.raises(type(fault)):
        loop.train(failing, verbose=0)
    assert failing.counts == {"steps": 2, "evaluations": 1}
    assert (tmp_path / "checkpoints" / "ckpt-1.index").exists() and not (tmp_path / loop.METRICS_FILE).exists()
    record = json.loads((tmp_path / "checkpoints" / EPOCH_RECORD).read_text())
    assert record["epoch"] == 1 and record["evaluation_due"] and record["evaluation"] is None and not record["done"]

    resumed = _task(tmp_path)
    metrics = loop.train(resumed, verbose=0)
    assert resumed.counts == {"steps": 2, "evaluations": 2}  # epoch 1's evaluation, epoch 2 trained and evaluated
    stored = json.loads((tmp_path / loop.METRICS_FILE).read_text())
    assert _without_timings(stored) == _without_timings(uninterrupted)
    assert _without_timings(metrics) == _without_timings(uninterrupted)
    # epoch 1's TensorBoard summaries, evaluation included, were written by the resumed run
    import tensorflow as tf

    tags = {
        (event.step, value.tag)
        for path in (tmp_path / "logs").glob("events.*")
        for event in tf.compat.v1.train.summary_iterator(str(path))
        for value in event.summary.value
    }
    assert {(1, "train_loss"), (1, "eval_accuracy"), (2, "eval_accuracy")} <= tags, sorted(tags)


def test_failed_last_evaluation_trains_nothing_again(uninterrupted, tmp_path, capsys):
    """The last epoch's evaluation fails: the next run restores the last checkpoint, trains no step, evaluates once,
    and writes the uninterrupted run's metrics (the epoch's running metrics come from the checkpoint's record)."""
    failing = _task(tmp_path, fail_with=RuntimeError("the evaluation crashed"), eval_every_epochs=0)
    failing.counts["evaluations"] = 0
    with pytest.raises(RuntimeError, match="the evaluation crashed"):
        loop.train(failing, verbose=0)
    assert failing.counts == {"steps": 4, "evaluations": 1}
    assert (tmp_path / "checkpoints" / "ckpt-2.index").exists()

    resumed = _task(tmp_path, eval_every_epochs=0)
    metrics = loop.train(resumed, verbose=1)
    assert resumed.counts == {"steps": 0, "evaluations": 1}
    out = capsys.readouterr().out
    assert "evaluating epoch 2 first (its evaluation did not finish)" in out and "Epoch 2/2" not in out
    assert _without_timings(metrics) == _without_timings(uninterrupted)
    # finished: a third run returns the stored metrics, trains and evaluates nothing
    again = _task(tmp_path, eval_every_epochs=0)
    assert loop.train(again, verbose=0)["already_finished"] is True and again.counts == {"steps": 0, "evaluations": 0}


def test_a_record_of_an_unsaved_checkpoint_is_ignored(tmp_path):
    """Killed between writing epoch 2's record and saving its checkpoint: the run resumes from checkpoint 1 and
    trains epoch 2 again (the record, of another epoch, is not used)."""
    import keras

    from kzoo.training.checkpoints import EpochCheckpointer

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    checkpointer = EpochCheckpointer(str(tmp_path), chief=True, model=model)
    checkpointer.save(1, {"history": {"loss": 1.0}, "done": True})
    checkpointer.write_record(2, {"history": {"loss": 0.5}, "done": False})
    restored = EpochCheckpointer(str(tmp_path), chief=True, model=model)
    assert restored.restore_latest() == 1
    assert restored.read_record(1) is None and restored.read_record(2) == {"history": {"loss": 0.5}, "done": False}
    (tmp_path / EPOCH_RECORD).write_text("{not json")
    assert restored.read_record(2) is None


# ------------------------------------------------------------------------------------------- bad geometry

H, W = 40, 56
CATEGORIES = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]
SQUARE = [[10, 10, 30, 10, 30, 30, 10, 30]]
#: (annotation, what the check does with it); ids are the list positions + 1
BAD_ANNOTATIONS = [
    ({"bbox": [10, 10, 20, 20], "segmentation": SQUARE}, "kept"),
    ({"bbox": [5, 5, 51, 25], "segmentation": [[5, 5, 1e9, 5, 5, 30]]}, "clipped_segmentations"),
    ({"bbox": [5, 5, 20, 20], "segmentation": [[5, 5, float("nan"), 5, 5, 20]]}, "bad_segmentation"),
    (
        {"bbox": [5, 5, 20, 20], "segmentation": [[5, 5, 25, 5, 25, 25], [1, 1, float("inf"), 1, 1, 9]]},
        "bad_segmentation",
    ),
    ({"bbox": [5, 5, -3, 10], "segmentation": SQUARE}, "degenerate_boxes"),
    ({"bbox": [5, 5, 20, 20], "segmentation": [[5, 5, 20, 5, 20, 20, 5]]}, "bad_segmentation"),  # odd length
    ({"bbox": [36, 2, 16, 16], "segmentation": [[40, 2, 50, 2, 50, 12, 40, 12], [1, 1, 9, 9]]}, "dropped_polygons"),
    ({"bbox": [1e9, 1e9, 5, 5], "segmentation": SQUARE}, "outside_image"),
    ({"bbox": [5, 5, 20, 20], "segmentation": {"size": [10, 10], "counts": [100]}}, "bad_segmentation"),
    ({"bbox": [5, 5, 20, 20], "segmentation": {"size": [H, W], "counts": [0, 4 * H * W]}}, "bad_segmentation"),
    ({"bbox": [5, 5, 20, 20], "segmentation": {"size": [H, W], "counts": [H * W + 5, -5]}}, "bad_segmentation"),
    ({"bbox": [5, 5, 20, 20], "segmentation": "RLE_TOO_LONG"}, "bad_segmentation"),  # filled in below
    ({"bbox": [5, 5, 20, 20], "segmentation": {"size": [H, W], "counts": "\x7f\x01garbage"}}, "bad_segmentation"),
    ({"bbox": [float("nan"), 5, 20, 20], "segmentation": SQUARE}, "degenerate_boxes"),
    ({"bbox": [30, 20, 1e9, 1e9], "segmentation": [[30, 20, 1e9, 20, 1e9, 1e9, 30, 1e9]]}, "clipped_segmentations"),
    ({"bbox": [12, 24, 8, 8], "segmentation": "CROWD_RLE", "iscrowd": 1}, "kept"),  # filled in below
    ({"bbox": [5, 5, 20, 20], "segmentation": SQUARE, "image_id": 99}, "unknown_image"),
    ({"bbox": [5, 5, 20, 20], "segmentation": [[5, 5, 1e9, 5, 5, 30]], "image_id": 2}, "bad_image_size"),
    ({"bbox": [10, 10, 20, 20], "segmentation": SQUARE, "id": 1}, "duplicate_annotations"),
    ({"bbox": [10, 10, 20, 20], "segmentation": SQUARE, "category_id": 7}, "unknown_category"),
]


def _bad_coco() -> dict:
    """A COCO dict of one 40 x 56 image (id 1) and one of a negative height (id 2), with every annotation of
    :data:`BAD_ANNOTATIONS`."""
    from kzoo.data.coco_masks import mask_to_rle, mask_to_uncompressed_rle

    too_long = mask_to_rle(np.ones((2 * H, W), np.uint8))["counts"]  # runs adding up to twice the image
    crowd = np.zeros((H, W), np.uint8)
    crowd[24:32, 12:20] = 1
    annotations = []
    for index, (ann, _) in enumerate(BAD_ANNOTATIONS):
        ann = {"id": index + 1, "image_id": 1, "category_id": 1 + index % 2, "iscrowd": 0, "area": 1.0, **ann}
        if ann["segmentation"] == "RLE_TOO_LONG":
            ann["segmentation"] = {"size": [H, W], "counts": too_long}
        elif ann["segmentation"] == "CROWD_RLE":
            ann["segmentation"] = mask_to_uncompressed_rle(crowd)
        annotations.append(ann)
    images = [
        {"id": 1, "file_name": "a.png", "height": H, "width": W},
        {"id": 2, "file_name": "b.png", "height": -5, "width": W},
    ]
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}


def _expected_counts() -> dict:
    expected: dict[str, int] = {}
    for _, what in BAD_ANNOTATIONS:
        if what != "kept":
            expected[what] = expected.get(what, 0) + 1
    return expected


def _run_isolated(code: str, tmp_path: Path, timeout: float = 240, **inputs) -> dict:
    """Run ``code`` in a fresh Python (a pycocotools crash kills that process, not pytest); ``inputs`` are given
    to it as the dict ``inputs`` (through json), and it returns a json-able ``output``. Fails on any crash."""
    script = tmp_path / "isolated.py"
    (tmp_path / "inputs.json").write_text(json.dumps(inputs))
    script.write_text(
        "import json, logging, sys\nlogging.basicConfig(level=logging.WARNING)\n"
        f"inputs = json.loads(open({str(tmp_path / 'inputs.json')!r}).read())\n"
        + textwrap.dedent(code)
        + f"\nopen({str(tmp_path / 'output.json')!r}, 'w').write(json.dumps(output))\n"
    )
    env = dict(
        os.environ,
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    )
    result = subprocess.run(
        [sys.executable, str(script)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"exit {result.returncode} (a negative one is a signal):\n{result.stderr[-4000:]}"
    return {"output": json.loads((tmp_path / "output.json").read_text()), "log": result.stderr}


def test_ground_truth_is_checked_dropped_repaired_and_counted(caplog):
    from kzoo.data.coco_validation import validate_coco_dict

    data = _bad_coco()
    before = json.dumps(data)
    with caplog.at_level(logging.WARNING, logger="kzoo.data.coco_validation"):
        checked, counts = validate_coco_dict(data, "ground truth")
    assert json.dumps(data) == before  # the input is left as it is
    expected = _expected_counts()
    assert {k: v for k, v in counts.items() if v and k != "annotations"} == expected
    kept = [i + 1 for i, (_, what) in enumerate(BAD_ANNOTATIONS) if what in ("kept", *REPAIR_KINDS)]
    assert [a["id"] for a in checked["annotations"]] == kept and counts["annotations"] == len(kept)
    assert [i["id"] for i in checked["images"]] == [1]
    # one warning per kind, naming the annotations
    for key in expected:
        assert any(key_word in caplog.text for key_word in WORDS[key]), key
    assert "2 instances with polygon vertices more than a pixel outside the image" in caplog.text
    assert "the label changed" in caplog.text and "e.g. [2, 15]" in caplog.text
    by_id = {a["id"]: a for a in checked["annotations"]}
    (polygon,) = by_id[2]["segmentation"]
    assert max(polygon) == W + 1 and by_id[2]["area"] > 1.0  # the area of the clipped (changed) label
    assert by_id[15]["bbox"] == [30.0, 20.0, W - 30.0, H - 20.0]  # clipped to the image
    assert by_id[7]["segmentation"] == [[40.0, 2.0, 50.0, 2.0, 50.0, 12.0, 40.0, 12.0]]
    assert by_id[1]["area"] == 1.0  # not repaired: the json's area is kept


REPAIR_KINDS = ("clipped_segmentations", "dropped_polygons")
WORDS = {
    "clipped_segmentations": ["moved onto its border"],
    "dropped_polygons": ["lost polygons"],
    "bad_segmentation": ["malformed segmentation"],
    "degenerate_boxes": ["non-finite box"],
    "outside_image": ["box lies outside"],
    "unknown_image": ["image id the json does not list"],
    "bad_image_size": ["height/width"],
    "duplicate_annotations": ["repeating"],
    "unknown_category": ["category"],
}


def test_the_reader_counts_the_same_problems(tmp_path, caplog):
    """The training reader drops and repairs the same annotations (it sees image 2 as bad too), with the same
    warnings."""
    from kzoo.data.coco_reader import load_coco_instances

    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "a.png")
    with caplog.at_level(logging.WARNING, logger="kzoo.data.coco_reader"):
        loaded = load_coco_instances(_bad_coco(), str(tmp_path))
    expected = _expected_counts()
    assert {k: loaded.counts[k] for k in expected} == expected
    assert (
        "COCO dict: 2 instances with polygon vertices more than a pixel outside the image, moved onto its border "
        "(kept, but the label changed: the mask may now cover much of the image), e.g. [2, 15]"
    ) in caplog.text
    assert "COCO dict: 1 instances that lost polygons of under 3 points" in caplog.text
    kept = [i + 1 for i, (_, what) in enumerate(BAD_ANNOTATIONS) if what in ("kept", *REPAIR_KINDS)]
    assert list(loaded.records[0].annotation_ids) == kept
    masks = loaded.records[0].masks()  # rasterized without a crash
    assert masks.shape == (len(kept), H, W) and masks[kept.index(2)].sum() > 500  # the clipped label is big


def test_segmentation_to_mask_refuses_rle_of_the_wrong_run_lengths():
    from kzoo.data.coco_masks import mask_to_rle, segmentation_to_mask

    for segmentation in (
        {"size": [H, W], "counts": [0, 4 * H * W]},
        {"size": [H, W], "counts": [H * W + 5, -5]},
        {"size": [H, W], "counts": mask_to_rle(np.ones((2 * H, W), np.uint8))["counts"]},
        {"size": [H, W], "counts": "\x7f"},
        {"size": [H, W], "counts": "1"},
    ):
        with pytest.raises(ValueError, match="run-length"):
            segmentation_to_mask(segmentation, H, W)
    good = np.zeros((H, W), np.uint8)
    good[3:9, 4:20] = 1
    np.testing.assert_array_equal(segmentation_to_mask(mask_to_rle(good), H, W), good)


EVALUATE_BAD_GROUND_TRUTH = """
import copy
import numpy as np
from pycocotools.coco import COCO
from kzoo.data.coco_masks import mask_to_rle, segmentation_to_mask
from kzoo.data.coco_validation import validate_coco_dict
from kzoo.evaluation.coco import CocoEvaluator, evaluate_coco

data, path = inputs["data"], inputs["path"]
H, W = data["images"][0]["height"], data["images"][0]["width"]
checked, _ = validate_coco_dict(data)
results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9,
            "segmentation": mask_to_rle(segmentation_to_mask(a["segmentation"], H, W))}
           for a in checked["annotations"] if not a["iscrowd"]]
bad_results = [
    {**results[0], "score": float("nan")},
    {**results[0], "bbox": [float("nan"), 0, 5, 5], "segmentation": {"size": [H, W], "counts": [0, 4 * H * W]}},
    {**results[0], "bbox": [3, 3, -4, 5], "segmentation": {"size": [10, 10], "counts": [100]}},
    {**results[0], "segmentation": [[5, 5, 1e9, 5, 5, 1e9]], "score": 0.1},
]
raw = COCO()
raw.dataset = copy.deepcopy(data)
raw.createIndex()
output = {
    "path": evaluate_coco(path, results),
    "dict": evaluate_coco(data, results + bad_results),
    "coco": evaluate_coco(raw, results),
}
evaluator = CocoEvaluator(path)
boxes = np.array([[[10, 10, 30, 30], [np.nan, 0, 5, 5], [-1e9, -1e9, 1e9, 1e9], [5, 5, 25, 1e9]]], np.float32)
evaluator.update({"detection_boxes": boxes, "detection_scores": np.array([[0.9, 0.8, 0.7, np.inf]], np.float32),
                  "detection_classes": np.ones((1, 4), np.int32), "num_detections": np.array([4]),
                  "detection_masks": np.full((1, 4, 28, 28), 0.9, np.float32)}, [1], [[H, W]])
output["evaluator"] = evaluator.evaluate()
output["written"] = evaluator.results
"""


def test_evaluation_of_bad_geometry_does_not_crash(tmp_path):
    """Ground truth as a json path, a dict and a pycocotools COCO object, results with NaN, negative sizes, wrong
    RLE and far-away polygons, model outputs with NaN and 1e9 boxes: scored, in a process that would die of a
    pycocotools crash."""
    path = tmp_path / "instances.json"
    data = _bad_coco()
    path.write_text(json.dumps(data))
    run = _run_isolated(EVALUATE_BAD_GROUND_TRUTH, tmp_path, data=data, path=str(path))
    output, log = run["output"], run["log"]
    for form in ("path", "dict", "coco"):  # the ground truth as its own results: every score is 1
        metrics = output[form]
        assert metrics["bbox_AP"] == pytest.approx(1.0) and metrics["segm_AP"] == pytest.approx(1.0), (form, metrics)
    assert "evaluation ground truth " + str(path) in log and "moved onto its border" in log
    assert "with a missing or invalid score (dropped" in log and "invalid bbox" in log and "invalid segmentation" in log
    # model outputs: the NaN ones dropped, the 1e9 one clipped to the image, then pasted and encoded
    written = output["written"]
    assert len(written) == 2 and "detections with a non-finite box or score (dropped)" in log
    assert "reaching more than a pixel outside their image (clipped to it)" in log
    for result in written:
        x, y, w, h = result["bbox"]
        assert all(np.isfinite(result["bbox"])) and x >= 0 and y >= 0 and x + w <= W and y + h <= H
        assert result["segmentation"]["size"] == [H, W]
    assert written[1]["bbox"] == [0.0, 0.0, float(W), float(H)]
    assert -1.0 <= output["evaluator"]["bbox_AP"] <= 1.0


EVALUATE_JSON = """
from kzoo.data.coco_masks import mask_to_rle, segmentation_to_mask
from kzoo.evaluation.coco import evaluate_coco

data = json.loads(open(inputs["path"]).read())
sizes = {i["id"]: (i["height"], i["width"]) for i in data["images"]}
results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9,
            "segmentation": mask_to_rle(segmentation_to_mask(a["segmentation"], *sizes[a["image_id"]]))}
           for a in data["annotations"]]
output = evaluate_coco(inputs["path"], results)
"""


def test_converted_annotations_pass_the_checks_and_evaluate(tmp_path, caplog):
    """``kzoo convert``'s builder clips and drops bad polygons (1e9, NaN, 2 points) itself: its json needs no
    repair by the evaluation's checks, and pycocotools scores it."""
    from kzoo.data.annotation_tools import write_coco_from_tool
    from kzoo.data.coco_validation import validate_coco_dict

    (tmp_path / "ann").mkdir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "ann" / "a.png")
    shapes = [
        {"label": "cat", "points": [[5, 5], [30, 5], [30, 30], [5, 30]]},
        {"label": "cat", "points": [[10, 10], [1e9, 12], [12, 35]]},  # far outside: clipped by the builder
        {"label": "dog", "points": [[2, 2], [float("nan"), 3], [9, 9]]},  # dropped
        {"label": "dog", "points": [[2, 2], [9, 9]]},  # 2 points: dropped
        {"label": "dog", "points": [[-1e9, -1e9], [-1e9 + 5, -1e9], [-1e9, -1e9 + 5]]},  # outside: dropped
        {"label": "dog", "points": [[40, 20], [50, 20], [50, 35]]},
    ]
    (tmp_path / "ann" / "a.json").write_text(
        json.dumps(
            {
                "version": "5.5.0",
                "flags": {},
                "imagePath": "a.png",
                "imageData": None,
                "imageHeight": H,
                "imageWidth": W,
                "shapes": [{"shape_type": "polygon", "group_id": None, "flags": {}, **s} for s in shapes],
            }
        )
    )
    output = tmp_path / "instances.json"
    write_coco_from_tool("labelme", str(tmp_path / "ann"), str(output), class_names=["cat", "dog"])
    converted = json.loads(output.read_text())
    assert len(converted["annotations"]) == 3
    caplog.clear()  # the builder's own warnings
    with caplog.at_level(logging.WARNING, logger="kzoo.data.coco_validation"):
        checked, counts = validate_coco_dict(str(output))
    assert not any(v for k, v in counts.items() if k != "annotations") and not caplog.records
    assert checked["annotations"] == converted["annotations"]
    metrics = _run_isolated(EVALUATE_JSON, tmp_path, path=str(output))["output"]
    assert metrics["bbox_AP"] == pytest.approx(1.0) and metrics["segm_AP"] == pytest.approx(1.0)


def _far_outside_set(root: Path, count: int, seed: int) -> Path:
    """A COCO json of ``count`` shapes images (64 x 64, written as PNG under ``root``), polygons, plus on every
    image an instance whose polygon reaches x = 1e9 (pycocotools alone segfaults on it) and one with a NaN."""
    from kzoo.data.coco_categories import CocoCategories
    from kzoo.data.coco_writer import write_coco_json
    from kzoo.data.shapes import SHAPES_INSTANCE_CLASSES, make_shapes_instances

    root.mkdir(parents=True, exist_ok=True)
    examples = make_shapes_instances(count, 64, 3, seed=seed)
    for index, example in enumerate(examples):
        example["image_id"] = index + 1
        example["file_name"] = f"{index + 1:04d}.png"
        Image.fromarray(example["image"]).save(root / example["file_name"])
    path = root / "instances.json"
    data = write_coco_json(
        examples, CocoCategories.from_names(SHAPES_INSTANCE_CLASSES), str(path), segmentation_format="polygon"
    )
    next_id = len(data["annotations"]) + 1
    for image in data["images"]:
        for polygon in ([[4, 4, 1e9, 4, 4, 20]], [[4, 4, float("nan"), 4, 4, 20]]):
            data["annotations"].append(
                {
                    "id": next_id,
                    "image_id": image["id"],
                    "category_id": 1,
                    "iscrowd": 0,
                    "bbox": [4, 4, 60, 16],
                    "area": 1e10,
                    "segmentation": polygon,
                }
            )
            next_id += 1
    path.write_text(json.dumps(data))
    return path


@pytest.mark.slow
def test_train_and_evaluate_on_a_json_with_far_outside_polygons(tmp_path, tiny_mask_rcnn):
    """``kzoo train`` (evaluation at the end of the epoch) and ``kzoo evaluate --results`` on COCO jsons whose
    polygons reach 1e9: both finish (no segfault at the end of the epoch), say what they repaired and dropped,
    and write finite results inside the images."""
    import yaml

    train_json = _far_outside_set(tmp_path / "train", 4, seed=1)
    eval_json = _far_outside_set(tmp_path / "eval", 2, seed=2)
    config = tiny_mask_rcnn(
        tmp_path / "run",
        data={
            "source": "coco",
            "train_annotations": str(train_json),
            "train_images": str(train_json.parent),
            "eval_annotations": str(eval_json),
            "eval_images": str(eval_json.parent),
            "train_examples": 4,
            "eval_examples": 2,
        },
    )
    config["data"].pop("shapes_image_size")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = dict(
        os.environ,
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    )
    results = tmp_path / "results.json"
    for command in (["train", str(path), "--quiet"], ["evaluate", str(path), "--results", str(results)]):
        run = subprocess.run(
            [sys.executable, "-m", "kzoo.cli", *command],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        log = run.stdout + run.stderr
        assert run.returncode == 0, f"kzoo {command[0]}: exit {run.returncode}\n{log[-4000:]}"
        assert (
            f"evaluation ground truth {eval_json}: 2 instances with polygon vertices more than a pixel "
            "outside the image" in log
        ), log[-4000:]
        assert f"evaluation ground truth {eval_json}: 2 instances with a missing or malformed segmentation" in log
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert -1.0 <= metrics["eval_segm_AP"] <= 1.0 and metrics["eval_images"] == 2
    for result in json.loads(results.read_text()):
        x, y, w, h = result["bbox"]
        assert np.all(np.isfinite(result["bbox"])) and x >= 0 and y >= 0 and x + w <= 64 and y + h <= 64
        assert result["segmentation"]["size"] == [64, 64]


def test_predict_with_non_finite_and_far_outside_boxes(tmp_path, tiny_mask_rcnn, monkeypatch):
    """A broken model's NaN and 1e9 boxes: predict drops the NaN ones and clips the others before pasting masks."""
    import tensorflow as tf

    from kzoo.config import config_from_dict

    task = task_for(config_from_dict(tiny_mask_rcnn(tmp_path / "run")))
    image = tmp_path / "image.png"
    Image.fromarray(np.full((H, W, 3), 128, np.uint8)).save(image)
    boxes = np.array([[[5, 5, 20, 30], [np.nan, 0, 5, 5], [-1e9, 3, 1e9, 1e9], [2, 2, 9, 9]]], np.float32)

    def broken_model(images):
        return {
            "detection_boxes": tf.constant(boxes),
            "detection_scores": tf.constant([[0.9, 0.8, 0.7, np.nan]]),
            "detection_classes": tf.constant([[1, 2, 3, 1]]),
            "num_detections": tf.constant([4]),
            "detection_masks": tf.fill([1, 4, 28, 28], 0.9),
        }

    monkeypatch.setattr(task, "trained_model", lambda weights=None, **overrides: broken_model)
    (result,) = task.predict([str(image)], str(tmp_path / "out"))
    assert len(result["detections"]) == 2 and os.path.isfile(result["output"])
    np.testing.assert_array_equal(result["detections"][1][2], [0, 3, H, W])
