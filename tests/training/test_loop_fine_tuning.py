"""Fine-tuning: start from weights of another class count, train the heads, then everything, resume in a phase."""

import keras
import numpy as np
import pytest

from kzoo.config import ConfigError, config_from_dict
from kzoo.tasks import train
from kzoo.tasks.instance_segmentation import InstanceSegmentationTask

HEADS = ("rpn_head/", "box_head/", "mask_head/")


def _weights(model) -> dict[str, np.ndarray]:
    return {v.path: keras.ops.convert_to_numpy(v).copy() for v in model.weights}


def test_heads_then_all_from_weights_of_another_class_count(tmp_path, tiny_mask_rcnn, capsys):
    pretrained = tiny_mask_rcnn(tmp_path / "pre")
    pretrained["model"]["num_classes"] = 7  # "pre-trained" on other classes
    source = InstanceSegmentationTask(config_from_dict(pretrained)).build_model(init_weights=False)
    source.save_weights(tmp_path / "pre.weights.h5")
    start = _weights(source)

    values = tiny_mask_rcnn(tmp_path / "run")
    values["model"]["init_weights"] = str(tmp_path / "pre.weights.h5")
    values["train"].update({"phases": [{"epochs": 1, "trainable_layers": "heads"}], "schedule": "constant"})
    task = InstanceSegmentationTask(config_from_dict(values))
    metrics = train(task.config, verbose=1)
    assert np.isfinite(metrics["loss_total"])
    assert "freshly initialized (other class count): box_head/bbox_pred, box_head/cls_score" in capsys.readouterr().out
    after_heads = _weights(task.trained_model())
    frozen = [p for p in after_heads if not any(head in p for head in HEADS)]  # backbone and FPN
    assert any("fpn/" in p for p in frozen) and any("stem_conv" in p for p in frozen)
    for path in frozen:
        np.testing.assert_array_equal(after_heads[path], start[path], err_msg=f"{path} trained during 'heads'")
    rpn = next(p for p in after_heads if "rpn_head/conv/kernel" in p)
    assert not np.array_equal(after_heads[rpn], start[rpn])

    # a second phase, "all" at a lower rate: the same run resumes inside it (epoch 2 of 2) and trains the backbone
    values["train"]["phases"].append({"epochs": 1, "trainable_layers": "all", "learning_rate": 0.001})
    config = config_from_dict(values)
    assert config.train.epochs == 2
    train(config, verbose=1)
    out = capsys.readouterr().out
    assert "after epoch 1 of 2" in out and "phase 2/2: 1 epochs, trainable layers all, learning rate 0.001" in out
    after_all = _weights(InstanceSegmentationTask(config).trained_model())
    assert any(not np.array_equal(after_all[p], after_heads[p]) for p in frozen)


def test_resnet_stage_presets(tmp_path, tiny_mask_rcnn):
    values = tiny_mask_rcnn(tmp_path)
    values["model"].update(
        {"backbone": {"name": "resnet50", "norm": "frozen", "frozen_stages": 2}, "fpn": {"channels": 16}}
    )
    task = InstanceSegmentationTask(config_from_dict(values))
    model = task.build_model()

    def trainable_prefixes():
        names = [layer.name for layer in model.backbone.layers if layer.trainable_weights]
        return sorted({name.split("_")[0] for name in names})

    task.set_trainable(model, "all")  # frozen_stages=2: the stem and layer1 stay frozen whatever the preset
    assert trainable_prefixes() == ["layer2", "layer3", "layer4"] and model.fpn.trainable_weights
    task.set_trainable(model, "4+")
    assert trainable_prefixes() == ["layer3", "layer4"] and model.fpn.trainable_weights
    task.set_trainable(model, "5+")
    assert trainable_prefixes() == ["layer4"]
    task.set_trainable(model, "heads")
    assert trainable_prefixes() == [] and not model.fpn.trainable_weights
    assert model.rpn_head.trainable_weights and model.box_head.trainable_weights and model.mask_head.trainable_weights
    task.set_trainable(model, "all")
    assert trainable_prefixes() == ["layer2", "layer3", "layer4"]


def test_stage_presets_need_a_resnet(tmp_path, tiny_mask_rcnn):
    values = tiny_mask_rcnn(tmp_path)
    values["train"]["trainable_layers"] = "4+"
    with pytest.raises(ConfigError, match="ResNet stages, but model.backbone is 'small_convnet'"):
        config_from_dict(values)
    values["train"]["trainable_layers"] = "everything"
    with pytest.raises(ConfigError, match="train.trainable_layers"):
        config_from_dict(values)
