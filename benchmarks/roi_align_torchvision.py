"""torchvision's RoIAlign timed on the arrays ``benchmarks/roi_align.py`` saved (run by it in its own process:
torch and TensorFlow do not compute in one process here). Prints ``RESULT {json}`` of milliseconds.

    python roi_align_torchvision.py CASES.npz IMAGE SAMPLING_RATIO WARMUP REPEATS SIZE [SIZE ...]
"""

from __future__ import annotations

import json
import sys

import numpy as np
from common import median_seconds


def torchvision_worker(
    npz_path: str, image: int, sampling_ratio: int, warmup: int, repeats: int, sizes: list[int]
) -> None:
    """Time torchvision's RoIAlign on the saved cases; print ``RESULT {json}`` (run in its own process)."""
    import torch
    from torchvision.ops import MultiScaleRoIAlign, roi_align

    torch.set_grad_enabled(False)
    data = np.load(npz_path)
    results = {}
    for case in ("single", "pyramid"):
        features = [
            torch.from_numpy(np.ascontiguousarray(data[k].transpose(0, 3, 1, 2)))
            for k in sorted(data.files)
            if k.startswith(f"{case}_feature")
        ]
        yxyx = data[f"{case}_boxes"][0]
        boxes = torch.from_numpy(np.ascontiguousarray(yxyx[:, [1, 0, 3, 2]]))
        for size in sizes:
            if case == "single":

                def fn(size=size, features=features, boxes=boxes):
                    return roi_align(features[0], [boxes], size, spatial_scale=0.25, sampling_ratio=sampling_ratio)
            else:
                pooler = MultiScaleRoIAlign(["0", "1", "2", "3"], size, sampling_ratio)
                named = dict(zip(["0", "1", "2", "3"], features))

                def fn(pooler=pooler, named=named, boxes=boxes):
                    return pooler(named, [boxes], [(image, image)])

            results[f"{case}_{size}"] = 1000 * median_seconds(fn, repeats, warmup)
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    path, image, ratio, warmup, repeats, *sizes = sys.argv[1:]
    torchvision_worker(path, int(image), int(ratio), int(warmup), int(repeats), [int(s) for s in sizes])
