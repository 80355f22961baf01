"""COCO AP through pycocotools' COCOeval: ground truth fed back scores 1, shifted boxes less, wrong classes 0,
no detections 0 without crashing; padding images skipped, labels mapped to (non-contiguous) category ids,
evaluation restricted to the updated images, results written as json."""

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from kzoo.data.coco_categories import CocoCategories
from kzoo.data.coco_masks import mask_to_rle, segmentation_to_mask
from kzoo.data.coco_writer import coco_dict
from kzoo.data.shapes import make_shapes_instances
from kzoo.evaluation.coco import CocoEvaluator, detections_to_coco, evaluate_coco

SIZE = 64
CATEGORIES = CocoCategories((1, 3, 7), ("circle", "square", "triangle"))  # non-contiguous ids
FIRST_ID = 10  # image ids 10, 11, ...


def _scene(seed=2):
    """4 shapes images (ids 10..13) and their COCO ground-truth dict. At 64 px every object is small."""
    examples = make_shapes_instances(num_images=4, image_size=SIZE, seed=seed)
    for index, example in enumerate(examples):
        example["image_id"] = FIRST_ID + index
    return examples, coco_dict(examples, CATEGORIES)


def _results_from_gt(examples, labels=None, shift=0.0):
    """COCO results equal to the ground truth (boxes optionally shifted right, labels optionally replaced)."""
    results = []
    for example in examples:
        classes = example["classes"] if labels is None else labels(example["classes"])
        for box, label, mask in zip(example["boxes"], classes, example["masks"]):
            ymin, xmin, ymax, xmax = (float(v) for v in box)
            results.append(
                {
                    "image_id": example["image_id"],
                    "category_id": CATEGORIES.to_category_id(int(label)),
                    "bbox": [xmin + shift, ymin, xmax - xmin, ymax - ymin],
                    "score": 1.0,
                    "segmentation": mask_to_rle(mask),
                }
            )
    return results


def _roi_mask(mask, box, size=28, sub=4):
    """The ``size x size`` RoI-space probabilities of a full-image mask in ``box`` (4 x 4 samples per cell)."""
    ymin, xmin, ymax, xmax = box
    t = (np.arange(size * sub) + 0.5) / (size * sub)
    rows = np.clip((ymin + t * (ymax - ymin)).astype(int), 0, mask.shape[0] - 1)
    cols = np.clip((xmin + t * (xmax - xmin)).astype(int), 0, mask.shape[1] - 1)
    return mask[rows][:, cols].reshape(size, sub, size, sub).mean(axis=(1, 3)).astype(np.float32)


def _model_outputs(examples, max_detections=6):
    """A batch of model outputs reproducing the ground truth (padded to ``max_detections`` with zeros)."""
    batch = len(examples)
    out = {
        "detection_boxes": np.zeros((batch, max_detections, 4), np.float32),
        "detection_scores": np.zeros((batch, max_detections), np.float32),
        "detection_classes": np.zeros((batch, max_detections), np.int32),
        "num_detections": np.zeros((batch,), np.int32),
        "detection_masks": np.zeros((batch, max_detections, 28, 28), np.float32),
    }
    for b, example in enumerate(examples):
        n = len(example["classes"])
        out["num_detections"][b] = n
        out["detection_boxes"][b, :n] = example["boxes"]
        out["detection_scores"][b, :n] = np.linspace(1.0, 0.9, n)
        out["detection_classes"][b, :n] = example["classes"]
        for i, (mask, box) in enumerate(zip(example["masks"], example["boxes"])):
            out["detection_masks"][b, i] = _roi_mask(mask, box)
    return out


def _ids(examples):
    return np.array([e["image_id"] for e in examples], np.int32)


def _sizes(examples):
    return np.array([e["masks"].shape[1:] for e in examples], np.int32)


@pytest.mark.parametrize("form", ["coco", "dict", "json"])
def test_ground_truth_as_results_scores_one(form, tmp_path):
    examples, gt = _scene()
    if form == "coco":
        gt = COCO()
        gt.dataset = coco_dict(examples, CATEGORIES)
        gt.createIndex()
    elif form == "json":
        path = tmp_path / "gt.json"
        path.write_text(json.dumps(gt))
        gt = str(path)
    metrics = evaluate_coco(gt, _results_from_gt(examples))
    for iou_type in ("bbox", "segm"):
        for name in ("AP", "AP50", "AP75", "APs"):
            assert metrics[f"{iou_type}_{name}"] == pytest.approx(1.0, abs=1e-6), (iou_type, name)
        assert metrics[f"{iou_type}_APm"] == metrics[f"{iou_type}_APl"] == -1.0  # no medium or large objects
    overall = [key for key in metrics if "/" not in key]
    assert sorted(overall) == sorted(
        f"{t}_{n}" for t in ("bbox", "segm") for n in ("AP", "AP50", "AP75", "APs", "APm", "APl")
    )
    assert sorted(set(metrics) - set(overall)) == sorted(
        f"{t}_AP/{n}" for t in ("bbox", "segm") for n in _present_names(examples)
    )


def test_evaluator_update_with_roi_masks_and_tf_tensors():
    import tensorflow as tf

    examples, gt = _scene()
    evaluator = CocoEvaluator(gt, CATEGORIES)
    outputs = _model_outputs(examples)
    first = {k: v[:2] for k, v in outputs.items()}
    second = {k: tf.constant(v[2:]) for k, v in outputs.items()}
    evaluator.update(first, _ids(examples)[:2], _sizes(examples)[:2])
    evaluator.update(second, tf.constant(_ids(examples)[2:]), tf.constant(_sizes(examples)[2:]))
    metrics = evaluator.evaluate()
    assert metrics["bbox_AP"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["segm_AP50"] == pytest.approx(1.0, abs=1e-6)  # pasted 28 x 28 masks: IoU > 0.5, not 1
    assert 0.0 < metrics["segm_AP"] < 1.0
    assert len(evaluator.results) == sum(len(e["classes"]) for e in examples)


def test_shifted_boxes_lower_ap():
    examples, gt = _scene()
    exact = evaluate_coco(gt, _results_from_gt(examples), ["bbox"])
    shifted = evaluate_coco(gt, _results_from_gt(examples, shift=3.0), ["bbox"])
    assert exact["bbox_AP"] == pytest.approx(1.0, abs=1e-6)
    assert 0.0 < shifted["bbox_AP"] < 0.9
    assert shifted["bbox_AP75"] < shifted["bbox_AP50"] <= 1.0
    assert "segm_AP" not in shifted


def test_wrong_classes_score_zero():
    examples, gt = _scene()
    metrics = evaluate_coco(gt, _results_from_gt(examples, labels=lambda classes: classes % 3 + 1))
    for iou_type in ("bbox", "segm"):
        assert metrics[f"{iou_type}_AP"] == 0.0
        assert metrics[f"{iou_type}_AP50"] == 0.0


def test_no_detections_score_zero_without_crashing():
    examples, gt = _scene()
    expected = {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "APs": 0.0, "APm": -1.0, "APl": -1.0}
    expected = {f"{t}_{n}": v for t in ("bbox", "segm") for n, v in expected.items()}
    expected.update({f"{t}_AP/{n}": 0.0 for t in ("bbox", "segm") for n in _present_names(examples)})
    assert evaluate_coco(gt, []) == expected

    evaluator = CocoEvaluator(gt, CATEGORIES)
    outputs = _model_outputs(examples)
    outputs["num_detections"][:] = 0
    evaluator.update(outputs, _ids(examples), _sizes(examples))
    assert evaluator.results == []
    assert evaluator.evaluate() == expected

    assert set(CocoEvaluator(gt).evaluate().values()) == {-1.0}  # nothing updated: nothing to score


def test_padding_images_are_skipped():
    examples, gt = _scene()
    outputs = _model_outputs(examples[:2])
    ids = np.array([-1, FIRST_ID + 1], np.int32)  # the first image is padding (its detections are garbage here)
    results = detections_to_coco(
        ids,
        outputs["detection_boxes"],
        outputs["detection_scores"],
        outputs["detection_classes"],
        outputs["num_detections"],
        None,
        _sizes(examples[:2]),
        CATEGORIES,
    )
    assert {r["image_id"] for r in results} == {FIRST_ID + 1}
    assert len(results) == len(examples[1]["classes"])

    evaluator = CocoEvaluator(gt, CATEGORIES)
    evaluator.update(outputs, ids, _sizes(examples[:2]))
    assert evaluator.image_ids == {FIRST_ID + 1}
    assert {r["image_id"] for r in evaluator.results} == {FIRST_ID + 1}


def test_labels_map_to_category_ids_and_boxes_to_xywh():
    boxes = np.array([[[1.0, 2.0, 11.0, 22.0], [5.0, 6.0, 7.0, 9.0], [0.0, 0.0, 30.0, 30.0], [0.0] * 4]])
    masks = np.zeros((1, 4, 28, 28), np.float32)
    masks[0, :3, 4:24, 4:24] = 0.9
    results = detections_to_coco(
        np.array([FIRST_ID]),
        boxes,
        np.array([[0.9, 0.8, 0.7, 0.0]]),
        np.array([[1, 2, 3, 0]]),
        np.array([3]),
        masks,
        np.array([[32, 40]]),
        CATEGORIES,
    )
    assert [r["category_id"] for r in results] == [1, 3, 7]
    assert results[0]["bbox"] == [2.0, 1.0, 20.0, 10.0]
    assert [r["score"] for r in results] == pytest.approx([0.9, 0.8, 0.7])
    for result in results:
        assert isinstance(result["segmentation"]["counts"], str)
        assert result["segmentation"]["size"] == [32, 40]
    assert json.loads(json.dumps(results)) == results
    mask = segmentation_to_mask(results[2]["segmentation"], 32, 40)
    assert mask[15, 15] == 1 and mask[0, 0] == 0 and mask[:, 31:].sum() == 0


def test_only_updated_images_are_evaluated():
    examples, gt = _scene()
    evaluator = CocoEvaluator(gt, CATEGORIES, iou_types=["bbox"])
    evaluator.update(_model_outputs(examples[:2]), _ids(examples[:2]), _sizes(examples[:2]))
    assert evaluator.evaluate()["bbox_AP"] == pytest.approx(1.0, abs=1e-6)
    everywhere = evaluate_coco(gt, evaluator.results, ["bbox"])  # the other images' objects count as missed
    assert everywhere["bbox_AP"] < 1.0


def test_bbox_iou_matches_pycocotools():
    box = np.array([[[3.25, 4.5, 20.75, 17.0]]], np.float64)  # [ymin, xmin, ymax, xmax]
    gt_box = np.array([5.0, 2.0, 22.5, 15.25], np.float64)
    (result,) = detections_to_coco(
        np.array([1]),
        box,
        np.ones((1, 1)),
        np.ones((1, 1), np.int32),
        np.array([1]),
        None,
        np.array([[32, 32]]),
        CATEGORIES,
    )
    (ymin, xmin, ymax, xmax), (gy0, gx0, gy1, gx1) = box[0, 0], gt_box
    inter = max(0.0, min(ymax, gy1) - max(ymin, gy0)) * max(0.0, min(xmax, gx1) - max(xmin, gx0))
    union = (ymax - ymin) * (xmax - xmin) + (gy1 - gy0) * (gx1 - gx0) - inter
    gt_xywh = [gx0, gy0, gx1 - gx0, gy1 - gy0]
    iou = mask_utils.iou(np.array([result["bbox"]]), np.array([gt_xywh]), [0])
    assert 0.3 < inter / union < 0.9
    assert iou[0, 0] == pytest.approx(inter / union, rel=1e-12)


def test_write_results_is_json(tmp_path):
    examples, gt = _scene()
    evaluator = CocoEvaluator(gt, CATEGORIES)
    evaluator.update(_model_outputs(examples[:1]), _ids(examples[:1]), _sizes(examples[:1]))
    path = tmp_path / "out" / "results.json"
    evaluator.write_results(str(path))
    assert json.loads(path.read_text()) == evaluator.results
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temp file left
    metrics = evaluate_coco(gt, json.loads(path.read_text()), image_ids=[FIRST_ID])
    assert metrics["bbox_AP"] == pytest.approx(1.0, abs=1e-6)


def test_quiet_unless_verbose(capsys):
    examples, gt = _scene()
    evaluate_coco(gt, _results_from_gt(examples), ["bbox"])
    assert capsys.readouterr().out == ""
    evaluate_coco(gt, _results_from_gt(examples), ["bbox"], verbose=True)
    assert "Average Precision" in capsys.readouterr().out


# -- per-class AP -------------------------------------------------------------------------------------------------


def _present_names(examples):
    """The names of the classes with ground truth in ``examples`` (the scene of seed 2 has no circle)."""
    labels = {int(c) for example in examples for c in example["classes"]}
    return [name for label, name in enumerate(CATEGORIES.names, 1) if label in labels]


def _ap_of_one_category(gt, results, iou_type, category_id):
    """AP of one category by its own COCOeval (``params.catIds = [category_id]``): the independent reference."""
    import contextlib
    import copy
    import io

    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        dt_results = [dict(r) for r in results]
        if iou_type == "segm":
            dt_results = [{k: v for k, v in r.items() if k != "bbox"} for r in dt_results]
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(dt_results), iouType=iou_type)
        coco_eval.params.catIds = [category_id]
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return float(coco_eval.stats[0])


def _mixed_results(examples):
    """Results of uneven quality per class: shifted boxes and masks, a missed object, a false positive, a wrong
    class, and scores that differ, so the classes' APs differ and lie strictly between 0 and 1."""
    results = []
    rng = np.random.default_rng(0)
    for index, result in enumerate(_results_from_gt(examples, shift=0.0)):
        shift = float(rng.uniform(0.0, 4.0))
        result["bbox"] = [result["bbox"][0] + shift] + result["bbox"][1:]
        mask = segmentation_to_mask(result["segmentation"], SIZE, SIZE)
        result["segmentation"] = mask_to_rle(np.roll(mask, int(round(shift)), axis=1))
        result["score"] = float(rng.uniform(0.1, 1.0))
        if index % 5 == 3:
            continue  # missed
        if index % 7 == 2:
            result = {**result, "category_id": CATEGORIES.ids[(CATEGORIES.ids.index(result["category_id"]) + 1) % 3]}
        results.append(result)
    # a confident false positive in an empty corner
    results.append(
        {
            "image_id": FIRST_ID,
            "category_id": CATEGORIES.ids[0],
            "bbox": [0.0, 0.0, 5.0, 5.0],
            "score": 0.99,
            "segmentation": mask_to_rle(np.pad(np.ones((5, 5), np.uint8), ((0, SIZE - 5), (0, SIZE - 5)))),
        }
    )
    return results


def test_per_class_ap_matches_one_cocoeval_per_category():
    examples, gt = _scene()
    results = _mixed_results(examples)
    metrics = evaluate_coco(gt, results)
    for iou_type in ("bbox", "segm"):
        values = []
        for category_id, name in zip(CATEGORIES.ids, CATEGORIES.names):
            reference = _ap_of_one_category(gt, results, iou_type, category_id)
            if reference == -1.0:  # no ground truth of this class: no key
                assert name not in _present_names(examples) and f"{iou_type}_AP/{name}" not in metrics
                continue
            assert abs(metrics[f"{iou_type}_AP/{name}"] - reference) <= 1e-9, (iou_type, name)
            values.append(reference)
        assert len(values) == len(_present_names(examples)) >= 2
        assert all(0.0 < v < 1.0 for v in values), values  # a real test: neither trivial 0 nor 1
        assert len(set(values)) > 1
        # COCO's AP is the mean of the APs of the classes with ground truth
        assert metrics[f"{iou_type}_AP"] == pytest.approx(np.mean(values), abs=1e-9)


def test_per_class_ap_omits_classes_without_ground_truth_and_follows_the_updated_images():
    examples, gt = _scene()
    gt["categories"] = gt["categories"] + [{"id": 9, "name": "hexagon", "supercategory": "shape"}]  # no objects
    results = _mixed_results(examples)
    metrics = evaluate_coco(gt, results, ["bbox"])
    assert "bbox_AP/hexagon" not in metrics and "segm_AP/hexagon" not in metrics
    assert {k.split("/", 1)[1] for k in metrics if "/" in k} == set(_present_names(examples))
    assert all(np.isfinite(v) for v in metrics.values()) and json.loads(json.dumps(metrics)) == metrics

    # on one image only the classes present there get a key
    present = set(_present_names(examples[1:2]))
    assert present == {"triangle"} != set(_present_names(examples))  # the second image has triangles only
    subset = evaluate_coco(gt, results, ["bbox"], image_ids=[FIRST_ID + 1])
    assert {k.split("/", 1)[1] for k in subset if "/" in k} == present
    assert evaluate_coco(gt, results, ["bbox"], image_ids=[]) == {
        f"bbox_{n}": -1.0 for n in ("AP", "AP50", "AP75", "APs", "APm", "APl")
    }


def test_evaluator_reports_per_class_ap():
    examples, gt = _scene()
    evaluator = CocoEvaluator(gt, CATEGORIES)
    evaluator.update(_model_outputs(examples), _ids(examples), _sizes(examples))
    metrics = evaluator.evaluate()
    for name in _present_names(examples):
        assert metrics[f"bbox_AP/{name}"] == pytest.approx(1.0, abs=1e-6)
        assert 0.0 < metrics[f"segm_AP/{name}"] <= 1.0
    assert list(metrics)[:6] == [f"bbox_{n}" for n in ("AP", "AP50", "AP75", "APs", "APm", "APl")]
