"""Keras layers of kzoo, one concept per module."""

from kzoo.layers.box_head import BoxHead
from kzoo.layers.conv3x3 import Conv2D3x3
from kzoo.layers.detection_generator import DetectionGenerator
from kzoo.layers.fpn import FeaturePyramidNetwork
from kzoo.layers.frozen_batch_norm import FrozenBatchNormalization
from kzoo.layers.gap_head import GlobalAveragePoolingHead
from kzoo.layers.mask_head import MaskHead
from kzoo.layers.mlpconv import Mlpconv
from kzoo.layers.proposal_generator import ProposalGenerator
from kzoo.layers.roi_align import RoIAlign
from kzoo.layers.rpn_head import RPNHead

__all__ = [
    "BoxHead",
    "Conv2D3x3",
    "DetectionGenerator",
    "FeaturePyramidNetwork",
    "FrozenBatchNormalization",
    "GlobalAveragePoolingHead",
    "MaskHead",
    "Mlpconv",
    "ProposalGenerator",
    "RPNHead",
    "RoIAlign",
]
