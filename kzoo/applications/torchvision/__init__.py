"""torchvision's Mask R-CNN weights in kzoo: ``maskrcnn_resnet50_fpn`` (v1) state dicts -> ``MaskRCNNModel``.

* :func:`torchvision_config` (from :mod:`kzoo.models.mask_rcnn_config`): the :class:`MaskRCNNConfig` that
  computes what torchvision's ``maskrcnn_resnet50_fpn`` computes;
* :mod:`.keys`: torchvision key names and tensor layouts (:func:`canonical_torchvision_key`,
  :func:`torchvision_weight_map`);
* :mod:`.checkpoint`: ``.pth`` files read without torch by a restricted unpickler
  (:func:`read_torchvision_checkpoint`: NumPy arrays, no code in the file runs);
* :mod:`.convert`: :func:`convert_torchvision_state_dict` (into a model) and :func:`convert_torchvision_checkpoint`
  (``.pth`` -> Keras ``.weights.h5``), the ``kzoo convert torchvision`` entry point.

``MaskRCNN(weights="coco")`` downloads torchvision's COCO checkpoint (or takes a copy put in the cache) and
converts it once into the Keras cache, torch not needed:
see the ``"coco"`` entry of :mod:`kzoo.applications.weights`.
"""

from kzoo.applications.torchvision.checkpoint import CheckpointError, read_torchvision_checkpoint
from kzoo.applications.torchvision.convert import (
    TorchvisionConversionError,
    convert_torchvision_checkpoint,
    convert_torchvision_cli,
    convert_torchvision_state_dict,
)
from kzoo.applications.torchvision.keys import canonical_torchvision_key, torchvision_weight_map
from kzoo.models.mask_rcnn_config import torchvision_config

__all__ = [
    "CheckpointError",
    "TorchvisionConversionError",
    "canonical_torchvision_key",
    "convert_torchvision_checkpoint",
    "convert_torchvision_cli",
    "convert_torchvision_state_dict",
    "read_torchvision_checkpoint",
    "torchvision_config",
    "torchvision_weight_map",
]
