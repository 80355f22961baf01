"""Export of kzoo models: SavedModel in the TF Serving layout, builtin-only TFLite (NIN classifiers, Mask R-CNN).

Modules: :mod:`~kzoo.export.common` (TF Serving layout, warmup files), :mod:`~kzoo.export.saved_model` and
:mod:`~kzoo.export.mask_rcnn_saved_model` (SavedModels), :mod:`~kzoo.export.tflite` (the generic TFLite converter
and quantization settings), :mod:`~kzoo.export.classifier_tflite` and :mod:`~kzoo.export.mask_rcnn_tflite` (model
conversions), :mod:`~kzoo.export.litert` (running ``.tflite`` files, letterboxing photographs).
"""

from kzoo.export.classifier_tflite import convert_classifier_tflite
from kzoo.export.common import latest_version_dir
from kzoo.export.litert import detect_photos_tflite, letterbox, run_mask_rcnn_tflite, run_tflite_classifier
from kzoo.export.mask_rcnn_saved_model import export_mask_rcnn_saved_model
from kzoo.export.mask_rcnn_tflite import convert_mask_rcnn_tflite
from kzoo.export.saved_model import export_classifier_saved_model, write_warmup_requests
from kzoo.export.tflite import QUANTIZE_MODES

__all__ = [
    "QUANTIZE_MODES",
    "convert_classifier_tflite",
    "convert_mask_rcnn_tflite",
    "detect_photos_tflite",
    "export_classifier_saved_model",
    "export_mask_rcnn_saved_model",
    "latest_version_dir",
    "letterbox",
    "run_mask_rcnn_tflite",
    "run_tflite_classifier",
    "write_warmup_requests",
]
