import numpy as np
import pytest

from kzoo.ops import anchors as A

TORCHVISION_SIZES = (32, 64, 128, 256, 512)
TORCHVISION_STRIDES = (4, 8, 16, 32, 64)


def test_base_anchors_torchvision_rounding():
    # ratio 0.5: h = sqrt(0.5) * 32 = 22.63 -> half 11.31 -> 11; w = 32 / sqrt(0.5) = 45.25 -> half 22.63 -> 23
    np.testing.assert_array_equal(
        A.base_anchors([32], [0.5, 1.0, 2.0]),
        [[-11, -23, 11, 23], [-16, -16, 16, 16], [-23, -11, 23, 11]],
    )
    # torchvision's cell anchors for 64..512 (xyxy) are e.g. [-45, -23, 45, 23], [-91, -45, 91, 45],
    # [-181, -91, 181, 91], [-362, -181, 362, 181] for ratio 0.5; ours are the same in yxyx
    for size, (half_w, half_h) in zip(TORCHVISION_SIZES, [(23, 11), (45, 23), (91, 45), (181, 91), (362, 181)]):
        np.testing.assert_array_equal(A.base_anchors([size], [0.5])[0], [-half_h, -half_w, half_h, half_w])
    # several sizes: ratio outer, size inner
    np.testing.assert_array_equal(A.base_anchors([32, 64], [1.0, 2.0])[:, 2], [16, 32, 23, 45])


def test_counts_and_order_per_level():
    shapes = [(4, 6), (2, 3)]
    anchors = A.generate_anchors(shapes, [4, 8], [32, 64], [0.5, 1.0, 2.0])
    assert anchors.shape == (4 * 6 * 3 + 2 * 3 * 3, 4) and anchors.dtype == np.float32
    assert A.num_anchors_per_location([32, 64], [0.5, 1.0, 2.0]) == [3, 3]
    base0 = A.base_anchors([32], [0.5, 1.0, 2.0])
    base1 = A.base_anchors([64], [0.5, 1.0, 2.0])
    # level 0, position (i=1, j=2): center (1*4, 2*4) = (4, 8)
    for a in range(3):
        np.testing.assert_array_equal(anchors[(1 * 6 + 2) * 3 + a], base0[a] + [4, 8, 4, 8])
    # level 1 starts after 72 rows; position (1, 0): center (8, 0)
    np.testing.assert_array_equal(anchors[72 + (1 * 3 + 0) * 3 + 2], base1[2] + [8, 0, 8, 0])
    np.testing.assert_array_equal(anchors[0], [-11, -23, 11, 23])


def test_order_matches_rpn_head_reshape():
    h, w, sizes, ratios, stride = 3, 5, [16, 24], [0.5, 1.0, 2.0], (8, 4)
    base = A.base_anchors(sizes, ratios)
    num = len(base)
    # what an RPN head's [1, h, w, A * 4] map holds at (i, j, a) when it predicts each anchor itself
    grid = np.zeros([1, h, w, num * 4], np.float32)
    for i in range(h):
        for j in range(w):
            for a in range(num):
                grid[0, i, j, 4 * a : 4 * a + 4] = base[a] + [i * 8, j * 4, i * 8, j * 4]
    np.testing.assert_array_equal(
        A.generate_anchors([(h, w)], [stride], [sizes], ratios), grid.reshape(1, h * w * num, 4)[0]
    )


def test_offset_half_stride_centers():
    anchors = A.generate_anchors([(2, 2)], [16], [16], [1.0], offset=0.5)
    np.testing.assert_array_equal(anchors, [[0, 0, 16, 16], [0, 16, 16, 32], [16, 0, 32, 16], [16, 16, 32, 32]])
    centers = (anchors[:, :2] + anchors[:, 2:]) / 2
    np.testing.assert_array_equal(centers, [[8, 8], [8, 24], [24, 8], [24, 24]])


def test_per_level_sizes_and_ratios():
    anchors = A.generate_anchors([(1, 1), (1, 1)], [4, 8], [(32, 64), (128,)], [[1.0], [0.5, 2.0]])
    assert A.num_anchors_per_location([(32, 64), (128,)], [[1.0], [0.5, 2.0]]) == [2, 2]
    np.testing.assert_array_equal(
        anchors, [[-16, -16, 16, 16], [-32, -32, 32, 32], [-45, -91, 45, 91], [-91, -45, 91, 45]]
    )


def test_torchvision_pyramid_on_800x1216():
    shapes = A.feature_shapes_for_image((800, 1216), TORCHVISION_STRIDES)
    assert shapes == [(200, 304), (100, 152), (50, 76), (25, 38), (13, 19)]
    anchors = A.generate_anchors(shapes, TORCHVISION_STRIDES, TORCHVISION_SIZES, (0.5, 1.0, 2.0))
    assert anchors.shape == (3 * sum(h * w for h, w in shapes), 4)
    # last anchor: level P6 (stride 64), position (12, 18), ratio 2 -> [-362, -181, 362, 181] + (768, 1152)
    np.testing.assert_array_equal(anchors[-1], [768 - 362, 1152 - 181, 768 + 362, 1152 + 181])


def test_feature_shapes_ceil_division():
    assert A.feature_shapes_for_image((33, 65), [32, (4, 8)]) == [(2, 3), (9, 9)]


def test_bad_arguments():
    with pytest.raises(ValueError, match="strides"):
        A.generate_anchors([(2, 2)], [4, 8], [32], [1.0])
    with pytest.raises(ValueError, match="sizes"):
        A.generate_anchors([(2, 2), (1, 1)], [4, 8], [32], [1.0])
