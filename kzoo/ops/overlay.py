"""Drawing helpers on NumPy images (no TF graph): heat-map overlays, detections with masks, boxes and labels.

Everything is sized from the image, so a 20 x 20 thumbnail and a 4000 x 3000 photograph both come out legible:
label text is :data:`FONT_FRACTION` of the shorter side (at least :data:`MIN_FONT_SIZE` pixels), box lines
:data:`LINE_FRACTION` of it (at least one pixel). Labels stay inside the image and do not cover each other
(:func:`label_positions`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

# Label text height: this fraction of the image's shorter side, never under MIN_FONT_SIZE pixels.
FONT_FRACTION = 0.025
MIN_FONT_SIZE = 10
# Box outline width: this fraction of the shorter side, never under one pixel.
LINE_FRACTION = 0.004


def jet_colormap(values: np.ndarray) -> np.ndarray:
    """Map values in ``[0, 1]`` to RGB with the "jet" ramp (blue, cyan, yellow, red).

    Args:
        values: float array of any shape.

    Returns:
        float32 array ``values.shape + (3,)`` in ``[0, 1]``.
    """
    v = np.clip(np.asarray(values, np.float32), 0.0, 1.0)[..., None]
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return np.concatenate([r, g, b], axis=-1)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W, 1, 3 or 4]`` -> ``[H, W, 3]`` (gray repeated, alpha dropped)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"image must be [H, W, 1, 3 or 4], got {image.shape}")
    if image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    return image[..., :3]


def upsample_heatmap(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a small float map to ``height x width`` smoothly (bilinear, pixel centers aligned).

    Args:
        heatmap: float ``[h, w]`` (or ``[h, w, 1]``); non-finite values read as 0.

    Returns:
        float32 ``[height, width]``, within the map's range.
    """
    from PIL import Image

    heatmap = np.asarray(heatmap)
    if heatmap.ndim == 3 and heatmap.shape[-1] == 1:
        heatmap = heatmap[..., 0]
    if heatmap.ndim != 2 or heatmap.size == 0:
        raise ValueError(f"heatmap must be a non-empty [h, w], got {heatmap.shape}")
    values = np.ascontiguousarray(np.nan_to_num(heatmap.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0))
    resized = Image.fromarray(values).resize((int(width), int(height)), Image.Resampling.BILINEAR)
    return np.asarray(resized, np.float32).reshape(int(height), int(width))


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Lay a heat map (e.g. a class activation map) over an image.

    Args:
        image: uint8 ``[H, W, 1, 3 or 4]`` (alpha is dropped).
        heatmap: float ``[h, w]``, any range; resized to ``H x W`` bilinearly (:func:`upsample_heatmap`),
            then min-max normalized and coloured with :func:`jet_colormap`.
        alpha: weight of the heat map.

    Returns:
        uint8 ``[H, W, 3]``.
    """
    rgb = _as_rgb(image)
    heatmap = np.asarray(heatmap)
    if not (heatmap.ndim == 2 or (heatmap.ndim == 3 and heatmap.shape[-1] == 1)):
        raise ValueError(f"heatmap must be [h, w], got {heatmap.shape}")
    height, width = rgb.shape[:2]
    resized = upsample_heatmap(heatmap, height, width)
    span = float(resized.max() - resized.min())
    normalized = (resized - resized.min()) / span if span > 0 else np.zeros_like(resized)
    blended = (1 - alpha) * rgb.astype(np.float32) + alpha * 255.0 * jet_colormap(normalized)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def instance_color(index: int) -> tuple[int, int, int]:
    """A distinct, bright RGB colour per instance index (golden-ratio steps along the jet ramp)."""
    hue = (index * 0.618033988749895) % 1.0
    return tuple(int(c) for c in (255 * jet_colormap(np.array(hue))).astype(np.uint8))


def label_font_size(height: int, width: int) -> int:
    """Label text size in pixels for an image: :data:`FONT_FRACTION` of the shorter side, >= :data:`MIN_FONT_SIZE`."""
    return max(MIN_FONT_SIZE, int(round(min(height, width) * FONT_FRACTION)))


def line_width(height: int, width: int) -> int:
    """Box outline width in pixels for an image: :data:`LINE_FRACTION` of the shorter side, at least 1."""
    return max(1, int(round(min(height, width) * LINE_FRACTION)))


@functools.lru_cache(maxsize=32)
def _font(size: int):
    """A scalable font of ``size`` pixels, or Pillow's fixed bitmap font when no FreeType font can be had."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: the bundled Aileron, through FreeType
    except TypeError:  # Pillow < 10.1: no size argument
        pass
    for name in ("DejaVuSans.ttf", "Arial.ttf", "Helvetica.ttc"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()


def render_label(text: str, font_size: int, background: Sequence[int], foreground: Sequence[int] | None = None):
    """A caption as a small PIL image: ``text`` on a ``background`` rectangle, about ``font_size`` pixels of text.

    The height depends on the font size only (ascent + descent + padding), not on the letters, so labels line up.
    Without a FreeType font Pillow's bitmap font is drawn and enlarged by a whole factor.

    Args:
        foreground: text colour; black or white, whichever contrasts with ``background``, when None.
    """
    from PIL import Image, ImageDraw, ImageFont

    background = tuple(int(c) for c in background)
    if foreground is None:
        luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
        foreground = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    foreground = tuple(int(c) for c in foreground)
    font = _font(int(font_size))
    pad = max(1, int(font_size) // 6)
    if isinstance(font, ImageFont.FreeTypeFont):
        ascent, descent = font.getmetrics()
        left, _, right, _ = font.getbbox(text)
        label = Image.new("RGB", (max(right - left, 1) + 2 * pad, ascent + descent + 2 * pad), background)
        ImageDraw.Draw(label).text((pad - left, pad), text, font=font, fill=foreground)
        return label
    left, top, right, bottom = font.getbbox(text)
    text_height = max(bottom - top, 1)
    small = Image.new("RGB", (max(right - left, 1) + 2, text_height + 2), background)
    ImageDraw.Draw(small).text((1 - left, 1 - top), text, font=font, fill=foreground)
    scale = max(1, int(round(font_size / text_height)))
    return small.resize((small.width * scale, small.height * scale), Image.Resampling.NEAREST)


def label_positions(
    boxes: np.ndarray, label_sizes: Sequence[tuple[int, int]], image_size: tuple[int, int]
) -> np.ndarray:
    """Where to put each box's label: inside the image, and not over an earlier box's label where there is room.

    A label sits on its box's top-left corner, just above the box; when there is no room above (the box touches
    the top edge) it goes just inside the box; a label that would run past the right edge is shifted left.
    When it would cover an earlier label it moves to the nearest free height (down or up) in its column.
    Earlier boxes (higher scores, for detections) get first choice. Labels wider or taller than the image are
    clipped to it.

    Args:
        boxes: ``[N, 4]`` ``[ymin, xmin, ymax, xmax]`` in pixels.
        label_sizes: ``N`` ``(width, height)`` of the labels in pixels.
        image_size: ``(height, width)``.

    Returns:
        int ``[N, 4]`` label rectangles ``[x0, y0, x1, y1]``, half-open (pixels ``x0 .. x1 - 1``), all within
        ``[0, width] x [0, height]``.
    """
    height, width = (int(v) for v in image_size)
    boxes = np.nan_to_num(np.asarray(boxes, np.float64).reshape(-1, 4))
    if len(label_sizes) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes but {len(label_sizes)} label sizes")
    placed = np.zeros((0, 4), np.int64)
    for (y1, x1, _, _), (label_width, label_height) in zip(boxes, label_sizes):
        w, h = min(max(int(label_width), 0), width), min(max(int(label_height), 0), height)
        left = int(np.clip(np.floor(x1), 0, width - w))
        top = int(np.floor(y1)) - h
        if top < 0:  # no room above the box: just inside it
            top = int(np.floor(y1))
        top = int(np.clip(top, 0, height - h))
        if len(placed) and h > 0 and w > 0:
            # candidate tops: the preferred one, the image edges, and flush below / above every earlier label
            candidates = np.unique(np.concatenate([[top, 0, height - h], placed[:, 3], placed[:, 1] - h]))
            candidates = candidates[(candidates >= 0) & (candidates <= height - h)]
            candidates = candidates[np.lexsort((candidates, np.abs(candidates - top)))]
            columns_overlap = (placed[:, 0] < left + w) & (left < placed[:, 2])
            rows_overlap = (placed[None, :, 1] < candidates[:, None] + h) & (candidates[:, None] < placed[None, :, 3])
            free = ~(rows_overlap & columns_overlap[None]).any(axis=1)
            if free.any():
                top = int(candidates[np.argmax(free)])
        placed = np.concatenate([placed, [[left, top, left + w, top + h]]])
    return placed.astype(np.int64).reshape(-1, 4)


def _caption_text(cls: int, score: float, class_names: dict[int, str] | Sequence[str] | None) -> str:
    if isinstance(class_names, dict):
        name = class_names.get(cls, str(cls))
    elif class_names is not None and 0 <= cls < len(class_names):
        name = class_names[cls]
    else:
        name = str(cls)
    return f"{name} {score:.2f}"


def draw_detections(
    image: np.ndarray,
    boxes: np.ndarray,
    classes: np.ndarray,
    scores: np.ndarray,
    masks: np.ndarray | None = None,
    class_names: dict[int, str] | Sequence[str] | None = None,
    alpha: float = 0.45,
) -> np.ndarray:
    """Draw instance masks, boxes and ``label score`` captions over an image, legibly at any image size.

    Each instance gets its own colour (:func:`instance_color`): its mask is alpha-blended with it (the photo stays
    visible underneath), its box is outlined with it (:func:`line_width` pixels, inside the box) and its label is
    written on it (:func:`label_font_size` pixels high, placed by :func:`label_positions`). Boxes are drawn before
    labels, so no box line crosses a label.

    Args:
        image: uint8 ``[H, W, 3]`` (or ``[H, W, 1]``, or ``[H, W, 4]`` whose alpha is dropped).
        boxes: ``[N, 4]`` ``[ymin, xmin, ymax, xmax]`` in image pixels (clipped to the image for drawing).
        classes: int ``[N]`` class ids; ``scores``: float ``[N]``. Earlier detections get first choice of label
            position, so pass them by descending score.
        masks: optional ``[N, H, W]`` full-image masks (:func:`kzoo.ops.masks.paste_masks`): bool, or float
            probabilities in ``[0, 1]`` which scale the blending.
        class_names: id -> name (a list indexed by id, or a dict); ids without a name are printed as numbers.
        alpha: opacity of the masks.

    Returns:
        uint8 ``[H, W, 3]``.
    """
    from PIL import Image, ImageDraw

    canvas = np.array(_as_rgb(image), dtype=np.uint8)  # a copy
    height, width = canvas.shape[:2]
    boxes = np.nan_to_num(np.asarray(boxes, np.float64).reshape(-1, 4))
    classes = np.asarray(classes).reshape(-1)
    scores = np.asarray(scores, np.float64).reshape(-1)
    count = len(boxes)
    if len(classes) != count or len(scores) != count:
        raise ValueError(f"{count} boxes, {len(classes)} classes and {len(scores)} scores: they must match")
    colors = [instance_color(i) for i in range(count)]

    if masks is not None:
        masks = np.asarray(masks)
        if masks.shape != (count, height, width):
            raise ValueError(f"masks must be [N, H, W] = {(count, height, width)}, got {masks.shape}")
        for mask, color in zip(masks, colors):
            weight = np.clip(mask.astype(np.float32), 0.0, 1.0)
            rows, cols = np.flatnonzero(weight.any(axis=1)), np.flatnonzero(weight.any(axis=0))
            if rows.size == 0:
                continue
            region = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
            opacity = alpha * weight[region][..., None]
            pixels = canvas[region].astype(np.float32)
            blended = pixels + opacity * (np.asarray(color, np.float32) - pixels)
            canvas[region] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)

    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    thickness = line_width(height, width)
    for (y1, x1, y2, x2), color in zip(boxes, colors):
        xs = np.clip([x1, x2], 0, width - 1)
        ys = np.clip([y1, y2], 0, height - 1)
        draw.rectangle([float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())], outline=color,
                       width=thickness)  # fmt: skip

    font_size = label_font_size(height, width)
    labels = [render_label(_caption_text(int(c), float(s), class_names), font_size, color)
              for c, s, color in zip(classes, scores, colors)]  # fmt: skip
    rectangles = label_positions(boxes, [label.size for label in labels], (height, width))
    for label, (x0, y0, x1, y1) in zip(labels, rectangles):
        if x1 > x0 and y1 > y0:
            picture.paste(label.crop((0, 0, int(x1 - x0), int(y1 - y0))), (int(x0), int(y0)))
    return np.asarray(picture).copy()
