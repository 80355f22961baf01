"""Input pipelines: built-in synthetic sets, local files, TFDS.

Modules by job:

- choices and rules shared with :mod:`kzoo.config` (TF-free): :mod:`~kzoo.data.options`;
- classification: :mod:`~kzoo.data.classification` (sources and pipeline), :mod:`~kzoo.data.shapes`,
  :mod:`~kzoo.data.fashion_mnist`, :mod:`~kzoo.data.idx`;
- detection: :mod:`~kzoo.data.detection_sources` (every source as instance dicts, TFDS builders),
  :mod:`~kzoo.data.detection_pipeline` (resize, augment, pad, batch), :mod:`~kzoo.data.augment`,
  :mod:`~kzoo.data.decode_errors` (the undecodable image file named);
- COCO format: :mod:`~kzoo.data.coco_categories`, :mod:`~kzoo.data.coco_reader`, :mod:`~kzoo.data.coco_writer`,
  :mod:`~kzoo.data.coco_validation` (the checks), :mod:`~kzoo.data.coco_masks` (segmentations and masks);
- annotation tools, read as COCO: :mod:`~kzoo.data.annotation_tools` (the registry), :mod:`~kzoo.data.labelme`,
  :mod:`~kzoo.data.via`, :mod:`~kzoo.data.yolo`, :mod:`~kzoo.data.annotation_builder` (what they share);
- counting what readers drop: :mod:`~kzoo.data.problems`; image and video files: :mod:`~kzoo.data.images`,
  :mod:`~kzoo.data.video`.
"""
