"""The built-in synthetic "shapes" data: geometric shapes with exact masks, generated from a seed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SHAPE_NAMES = ("circle", "square", "triangle", "cross", "ring")


def render_shape(kind: str, center: tuple[float, float], radius: float, size: tuple[int, int]) -> np.ndarray:
    """Exact binary mask of one shape.

    Args:
        kind: one of ``SHAPE_NAMES``.
        center: ``(cy, cx)`` in pixels.
        radius: half the shape's extent in pixels.
        size: ``(height, width)`` of the mask.

    Returns:
        bool ``[height, width]``: pixels whose centers lie inside the shape.
    """
    ys, xs = np.mgrid[0 : size[0], 0 : size[1]].astype(np.float64) + 0.5
    dy, dx = ys - center[0], xs - center[1]
    if kind == "circle":
        return dy**2 + dx**2 <= radius**2
    if kind == "square":
        return (np.abs(dy) <= radius) & (np.abs(dx) <= radius)
    if kind == "triangle":  # apex up, base at the bottom
        return (dy <= radius) & (dy >= -radius) & (np.abs(dx) <= (dy + radius) / 2)
    if kind == "cross":
        arm = radius / 3
        inside = (np.abs(dy) <= radius) & (np.abs(dx) <= radius)
        return inside & ((np.abs(dy) <= arm) | (np.abs(dx) <= arm))
    if kind == "ring":
        r2 = dy**2 + dx**2
        return (r2 <= radius**2) & (r2 >= (0.55 * radius) ** 2)
    raise ValueError(f"unknown shape {kind!r}; choose one of {SHAPE_NAMES}")


def _random_colors(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3)).astype(np.float64)


def make_shapes_classification(num_images: int, image_size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A classification set: one shape per image on a noisy random background.

    Shape, size, position and colors are drawn from ``seed`` (same seed, same data);
    the shape's color differs from the background by at least 80 in one channel.

    Returns:
        ``images`` uint8 ``[num_images, image_size, image_size, 3]`` and ``labels``
        int64 ``[num_images]`` indexing ``SHAPE_NAMES``.
    """
    if num_images < 1 or image_size < 16:
        raise ValueError(f"need num_images >= 1 and image_size >= 16, got {num_images}, {image_size}")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(SHAPE_NAMES), size=num_images)
    images = np.empty((num_images, image_size, image_size, 3), np.uint8)
    for i, label in enumerate(labels):
        background, color = _random_colors(rng, 2)
        while np.abs(background - color).max() < 80:
            color = _random_colors(rng, 1)[0]
        radius = rng.uniform(0.2, 0.4) * image_size
        center = rng.uniform(radius, image_size - radius, size=2)
        mask = render_shape(SHAPE_NAMES[label], (center[0], center[1]), radius, (image_size, image_size))
        image = np.where(mask[..., None], color, background)
        image += rng.normal(0, 12, size=image.shape)
        images[i] = np.clip(image, 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)


#: The classes of :func:`make_shapes_instances`: label ``k`` (1..3; 0 = background) is
#: ``SHAPES_INSTANCE_CLASSES[k - 1]``.
SHAPES_INSTANCE_CLASSES = ("circle", "square", "triangle")

#: Instances whose visible (un-occluded) area is below this many pixels are dropped.
MIN_VISIBLE_AREA = 16


def mask_to_box(mask: np.ndarray) -> np.ndarray:
    """Tight box of a binary mask: float32 ``[ymin, xmin, ymax, xmax]`` in pixel edges.

    Pixel ``(r, c)`` covers ``[r, r + 1) x [c, c + 1)``, so a mask spanning rows ``r0..r1`` and columns
    ``c0..c1`` (inclusive) has the box ``[r0, c0, r1 + 1, c1 + 1]`` (height = number of rows, as COCO's
    ``toBbox``). An empty mask gives zeros.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return np.zeros(4, np.float32)
    return np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1], np.float32)


def make_shapes_instances(
    num_images: int,
    image_size: int = 128,
    max_instances: int = 4,
    seed: int = 0,
    classes: Sequence[str] = SHAPES_INSTANCE_CLASSES,
) -> list[dict]:
    """An instance-segmentation set: the classic "shapes" scene of circles, squares and triangles (``classes``:
    any of :data:`SHAPE_NAMES`, e.g. crosses and rings for a set whose classes another model never saw).

    Each image has 1..``max_instances`` shapes of random class, size (radius 8% to 22% of the side), color
    and position (shapes may be cut by the border) on a random background, with Gaussian noise over the
    whole image. Shapes are painted in order, so later shapes occlude earlier ones; masks are the exact
    *visible* pixels, and instances whose visible area falls under ``MIN_VISIBLE_AREA`` pixels are dropped
    (the last shape is never occluded, so every image keeps at least one instance). Everything is drawn
    from ``seed``: the same seed gives the same data.

    Returns:
        ``num_images`` dicts with ``image`` uint8 ``[H, W, 3]``, ``boxes`` float32 ``[n, 4]`` (the tight
        ``[ymin, xmin, ymax, xmax]`` box of each visible mask, absolute pixel edges, see
        :func:`mask_to_box`), ``classes`` int32 ``[n]`` in 1..K (label ``k`` is ``classes[k - 1]``) and
        ``masks`` bool ``[n, H, W]``.
    """
    unknown = [name for name in classes if name not in SHAPE_NAMES]
    if unknown or not classes:
        raise ValueError(f"shape classes must be some of {SHAPE_NAMES}, got {list(classes)}")
    if num_images < 1 or image_size < 32 or max_instances < 1:
        raise ValueError(
            f"need num_images >= 1, image_size >= 32 and max_instances >= 1, "
            f"got {num_images}, {image_size}, {max_instances}"
        )
    rng = np.random.default_rng(seed)
    size = (image_size, image_size)
    examples = []
    for _ in range(num_images):
        count = int(rng.integers(1, max_instances + 1))
        background = _random_colors(rng, 1)[0]
        image = np.broadcast_to(background, (*size, 3)).copy()
        visible: list[np.ndarray] = []
        labels: list[int] = []
        for _ in range(count):
            label = int(rng.integers(1, len(classes) + 1))
            color = _random_colors(rng, 1)[0]
            while np.abs(background - color).max() < 80:
                color = _random_colors(rng, 1)[0]
            radius = rng.uniform(0.08, 0.22) * image_size
            center = rng.uniform(radius / 2, image_size - radius / 2, size=2)
            mask = render_shape(classes[label - 1], (center[0], center[1]), radius, size)
            for earlier in visible:
                earlier &= ~mask
            visible.append(mask)
            labels.append(label)
            image[mask] = color
        image += rng.normal(0, 10, size=image.shape)
        keep = [i for i, mask in enumerate(visible) if mask.sum() >= MIN_VISIBLE_AREA]
        masks = np.stack([visible[i] for i in keep]).astype(bool)
        examples.append(
            {
                "image": np.clip(image, 0, 255).astype(np.uint8),
                "boxes": np.stack([mask_to_box(mask) for mask in masks]).astype(np.float32),
                "classes": np.array([labels[i] for i in keep], np.int32),
                "masks": masks,
            }
        )
    return examples
