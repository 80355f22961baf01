"""Export of kzoo models: SavedModel in the TF Serving layout, builtin-only TFLite (NIN classifiers, Mask R-CNN).

Modules, by job: :mod:`~kzoo.export.serving` (the TF Serving layout, versions, warmup files, the ``serving_bytes``
decoder every SavedModel shares), :mod:`~kzoo.export.tflite` (the generic TFLite converter, quantization and int8
calibration, builtin ops only, loading a ``.tflite`` file into LiteRT), and one module per model family:
:mod:`~kzoo.export.classifier` (NIN) and :mod:`~kzoo.export.mask_rcnn` (Mask R-CNN), each with its SavedModel
export, its TFLite conversion and the runner of its ``.tflite`` files.

Public functions are named ``<verb>_<family>_<format>``: ``export_<family>_saved_model``,
``convert_<family>_tflite``, ``run_<family>_tflite``. The names of the previous release
(``run_tflite_classifier``, ``detect_photos_tflite``, ``write_warmup_requests``) still import from here, with a
DeprecationWarning; they go in the next release.
"""

import warnings
from typing import Any

from kzoo.export.classifier import (
    convert_classifier_tflite,
    export_classifier_saved_model,
    run_classifier_tflite,
    write_classifier_warmup_requests,
)
from kzoo.export.mask_rcnn import (
    convert_mask_rcnn_tflite,
    export_mask_rcnn_saved_model,
    letterbox,
    run_mask_rcnn_tflite,
    run_mask_rcnn_tflite_on_photos,
)
from kzoo.export.serving import latest_version_dir
from kzoo.export.tflite import QUANTIZE_MODES

__all__ = [
    "QUANTIZE_MODES",
    "convert_classifier_tflite",
    "convert_mask_rcnn_tflite",
    "export_classifier_saved_model",
    "export_mask_rcnn_saved_model",
    "latest_version_dir",
    "letterbox",
    "run_classifier_tflite",
    "run_mask_rcnn_tflite",
    "run_mask_rcnn_tflite_on_photos",
    "write_classifier_warmup_requests",
]

#: old name -> new name, for one release
DEPRECATED_NAMES = {
    "detect_photos_tflite": "run_mask_rcnn_tflite_on_photos",
    "run_tflite_classifier": "run_classifier_tflite",
    "write_warmup_requests": "write_classifier_warmup_requests",
}


def __getattr__(name: str) -> Any:
    """The new function for a name of the previous release, with a DeprecationWarning."""
    if name in DEPRECATED_NAMES:
        new = DEPRECATED_NAMES[name]
        warnings.warn(
            f"kzoo.export.{name} is deprecated and will be removed in the next release; use kzoo.export.{new} "
            "(the same function)",
            DeprecationWarning,
            stacklevel=2,
        )
        return globals()[new]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
