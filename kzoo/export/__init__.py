"""Export of kzoo models: SavedModel in the TF Serving layout, builtin-only TFLite (NIN classifiers, Mask R-CNN)."""

from kzoo.export.common import QUANTIZE_MODES, latest_version_dir
from kzoo.export.mask_rcnn_saved_model import export_mask_rcnn_saved_model
from kzoo.export.mask_rcnn_tflite import convert_mask_rcnn_tflite, detect_photos_tflite, letterbox, run_mask_rcnn_tflite
from kzoo.export.saved_model import export_classifier_saved_model, write_warmup_requests
from kzoo.export.tflite import convert_classifier_tflite, run_tflite_classifier

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
