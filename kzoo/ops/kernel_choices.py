"""The names of kzoo's interchangeable kernels and rules, in pure Python.

The ops that implement them (:mod:`kzoo.ops.nms`, :mod:`kzoo.ops.roi_align_ops`, :mod:`kzoo.layers.roi_align`)
and the configs that choose them (:mod:`kzoo.models.mask_rcnn_config`) all read them from here, so a config is
checked before TensorFlow is imported (the CLI answers a bad config at once).
"""

#: NMS kernels (see :func:`kzoo.ops.nms.batched_multiclass_nms`)
NMS_METHODS = ("per_image", "padded")
DEFAULT_NMS_METHOD = "per_image"
#: RoIAlign kernels (see :class:`kzoo.layers.RoIAlign`)
ROI_ALIGN_METHODS = ("crop_and_resize", "gather")
#: what RoIAlign reads for samples just outside a feature map (see :func:`kzoo.ops.roi_align_ops.roi_align`)
ROI_ALIGN_BORDERS = ("torchvision", "zero")
#: where the FPN level rule adds its epsilon: inside the log (paper) or after it (torchvision)
LEVEL_EPS_PLACEMENTS = ("in_log", "after_log")
