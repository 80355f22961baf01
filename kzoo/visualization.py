"""Pictures for people (NumPy and PIL, no TF graph): detections with masks, boxes and labels; class confidence
maps over their image with a colour bar.

Everything is sized from the image, so a 20 x 20 thumbnail and a 4000 x 3000 photograph both come out legible:
label text is :data:`FONT_FRACTION` of the shorter side (at least :data:`MIN_FONT_SIZE` pixels), box lines
:data:`LINE_FRACTION` of it (at least one pixel). Labels stay inside the image, do not cover each other and,
where there is room, do not cover other objects (:func:`label_positions`). Masks are a translucent fill with a
solid outline, in a colour that stands out from the object's own pixels (:func:`contrasting_color`).
Small images (a 128 x 128 demo canvas, a 32 x 32 class map) are enlarged by a whole factor, nearest neighbour,
to at least :data:`DISPLAY_MIN_SIDE` pixels before drawing (:func:`detections_picture`, :func:`heatmap_picture`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, cast

import numpy as np

# Label text height: this fraction of the image's shorter side, never under MIN_FONT_SIZE pixels.
FONT_FRACTION = 0.025
MIN_FONT_SIZE = 10
# Box outline width: this fraction of the shorter side, never under one pixel.
LINE_FRACTION = 0.004
# Pictures written for people are enlarged (nearest neighbour, a whole factor) until the shorter side reaches this.
DISPLAY_MIN_SIDE = 512
# A mask colour closer than this (RGB distance) to the mean colour of the object it covers is replaced.
MIN_COLOR_CONTRAST = 100.0


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
    return cast(tuple[int, int, int], tuple(int(c) for c in (255 * jet_colormap(np.array(hue))).astype(np.uint8)))


#: candidates for a mask colour that must stand out from its object
_PALETTE = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (255, 255, 255),
    (0, 0, 0),
]


def contrasting_color(preferred: Sequence[int], object_rgb: Sequence[float]) -> tuple[int, int, int]:
    """``preferred`` when it differs from the object's mean colour by :data:`MIN_COLOR_CONTRAST` (RGB distance),
    else the palette colour farthest from it (a red object gets a cyan or blue mask, not a red one)."""
    target = np.asarray(object_rgb, np.float64)
    if np.linalg.norm(np.asarray(preferred, np.float64) - target) >= MIN_COLOR_CONTRAST:
        return cast(tuple[int, int, int], tuple(int(c) for c in preferred))  # an RGB colour
    distances = [np.linalg.norm(np.asarray(c, np.float64) - target) for c in _PALETTE]
    return _PALETTE[int(np.argmax(distances))]


def display_scale(height: int, width: int, min_side: int = DISPLAY_MIN_SIDE) -> int:
    """The whole factor that brings the shorter side of a ``height x width`` image to at least ``min_side``."""
    return max(1, -(-int(min_side) // max(1, min(int(height), int(width)))))


def upscale_nearest(image: np.ndarray, factor: int) -> np.ndarray:
    """``[H, W, ...]`` -> ``[factor * H, factor * W, ...]``, each pixel repeated (no blur on small images)."""
    if factor == 1:
        return np.asarray(image)
    return np.repeat(np.repeat(np.asarray(image), factor, axis=0), factor, axis=1)


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
        left, _, right, _ = cast(tuple[int, int, int, int], font.getbbox(text))  # ints for a FreeType font
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
    """Where to put each box's label: inside the image, never over an earlier box's label where there is room,
    and over as little of the other objects as it can.

    A label prefers its box's top-left corner, just above the box; when there is no room above (the box touches
    the top edge) it goes just inside the box; a label that would run past the right edge is shifted left. When
    that place covers an earlier label, or covers other boxes outside its own, the label moves within its column
    (to a height flush with an image edge, its own box's top or bottom, or an earlier label) that covers no label,
    trading the area of other boxes it covers against the distance moved. Earlier boxes (higher scores, for detections)
    get first choice. Labels wider or taller than the image are clipped to it.

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
    for index, ((y1, x1, y2, _), (label_width, label_height)) in enumerate(zip(boxes, label_sizes)):
        w, h = min(max(int(label_width), 0), width), min(max(int(label_height), 0), height)
        left = int(np.clip(np.floor(x1), 0, width - w))
        top = int(np.floor(y1)) - h
        if top < 0:  # no room above the box: just inside it
            top = int(np.floor(y1))
        top = int(np.clip(top, 0, height - h))
        if h > 0 and w > 0 and len(boxes) > 1:
            edges: list[Any] = [
                [top, 0, height - h, int(np.floor(y1)), int(np.ceil(y2))],
                placed[:, 3],
                placed[:, 1] - h,
            ]
            candidates = np.unique(np.concatenate(edges)).astype(np.int64)
            candidates = candidates[(candidates >= 0) & (candidates <= height - h)]
            candidates = candidates[np.lexsort((candidates, np.abs(candidates - top)))]
            columns_overlap = (placed[:, 0] < left + w) & (left < placed[:, 2])
            rows_overlap = (placed[None, :, 1] < candidates[:, None] + h) & (candidates[:, None] < placed[None, :, 3])
            free = ~(rows_overlap & columns_overlap[None]).any(axis=1)
            if free.any():
                candidates = candidates[free]
                # covering a neighbour's whole label area costs as much as moving the label 4 label heights
                cost = _foreign_cover(candidates, left, w, h, boxes, index) + 0.25 * w * np.abs(candidates - top)
                top = int(candidates[np.argmin(cost)])
        placed = np.concatenate([placed, [[left, top, left + w, top + h]]])
    return placed.astype(np.int64).reshape(-1, 4)


def _foreign_cover(tops: np.ndarray, left: int, w: int, h: int, boxes: np.ndarray, own: int) -> np.ndarray:
    """For labels ``[left, top, left + w, top + h]`` (one per ``tops``): the area of neighbouring boxes they
    cover outside box ``own``. Covering one's own object is fine, and so is covering a box that lies mostly
    (half its area or more) inside the own box: the same cluster, where any place near the box covers it."""

    def overlap(a0, a1, b0, b1):
        return np.clip(np.minimum(a1, b1) - np.maximum(a0, b0), 0, None)

    oy1, ox1, oy2, ox2 = boxes[own]
    others = np.delete(boxes, own, axis=0)
    shared = overlap(others[:, 0], others[:, 2], oy1, oy2) * overlap(others[:, 1], others[:, 3], ox1, ox2)
    areas = (others[:, 2] - others[:, 0]).clip(0) * (others[:, 3] - others[:, 1]).clip(0)
    others = others[shared < 0.5 * areas]
    t0, t1 = tops[:, None].astype(np.float64), tops[:, None] + float(h)
    x_all = overlap(left, left + w, others[None, :, 1], others[None, :, 3])
    y_all = overlap(t0, t1, others[None, :, 0], others[None, :, 2])
    # the part of each other box that is also inside the own box
    iy1, iy2 = np.maximum(others[:, 0], oy1), np.minimum(others[:, 2], oy2)
    ix1, ix2 = np.maximum(others[:, 1], ox1), np.minimum(others[:, 3], ox2)
    x_in = overlap(left, left + w, ix1[None], np.maximum(ix1, ix2)[None])
    y_in = overlap(t0, t1, iy1[None], np.maximum(iy1, iy2)[None])
    return (x_all * y_all - x_in * y_in).sum(axis=1)


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

    Each instance gets its own colour (:func:`instance_color`, or :func:`contrasting_color` when that is close to
    the object's own colour): its mask is alpha-blended with it (the photo stays visible underneath) and outlined
    with it (the pixels of the mask within :func:`line_width` of its edge), its box is outlined with it
    (:func:`line_width` pixels, inside the box) and its label is written on it (:func:`label_font_size` pixels
    high, placed by :func:`label_positions`). Boxes are drawn before labels, so no box line crosses a label.

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
        thickness = line_width(height, width)
        original = canvas.copy()  # colours are judged on the photo, not on masks drawn before
        for index, mask in enumerate(masks):
            weight = np.clip(np.nan_to_num(mask.astype(np.float32)), 0.0, 1.0)
            rows, cols = np.flatnonzero(weight.any(axis=1)), np.flatnonzero(weight.any(axis=0))
            if rows.size == 0:
                continue
            region = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
            inside = weight[region] >= 0.5
            if inside.any():
                colors[index] = contrasting_color(colors[index], original[region][inside].mean(axis=0))
            color = np.asarray(colors[index], np.float32)
            opacity = alpha * weight[region][..., None]
            pixels = canvas[region].astype(np.float32)
            blended = pixels + opacity * (color - pixels)
            blended[_outline(inside, thickness)] = color
            canvas[region] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)

    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    thickness = line_width(height, width)
    for (y1, x1, y2, x2), box_color in zip(boxes, colors):
        xs = np.clip([x1, x2], 0, width - 1)
        ys = np.clip([y1, y2], 0, height - 1)
        draw.rectangle(
            [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())], outline=box_color, width=thickness
        )

    font_size = label_font_size(height, width)
    labels = [
        render_label(_caption_text(int(c), float(s), class_names), font_size, color)
        for c, s, color in zip(classes, scores, colors)
    ]
    rectangles = label_positions(boxes, [label.size for label in labels], (height, width))
    for label, (x0, y0, x1, y1) in zip(labels, rectangles):
        if x1 > x0 and y1 > y0:
            picture.paste(label.crop((0, 0, int(x1 - x0), int(y1 - y0))), (int(x0), int(y0)))
    return np.asarray(picture).copy()


def _outline(inside: np.ndarray, thickness: int) -> np.ndarray:
    """The pixels of a bool mask ``[h, w]`` within ``thickness`` pixels (4-neighbour steps) of its edge."""
    eroded = inside.copy()
    for _ in range(max(1, int(thickness))):
        padded = np.pad(eroded, 1, constant_values=False)
        eroded = eroded & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return inside & ~eroded


def detections_picture(
    image: np.ndarray,
    boxes: np.ndarray,
    classes: np.ndarray,
    scores: np.ndarray,
    masks: np.ndarray | None = None,
    class_names: dict[int, str] | Sequence[str] | None = None,
    min_side: int = DISPLAY_MIN_SIDE,
) -> np.ndarray:
    """:func:`draw_detections` on the image enlarged to at least ``min_side`` pixels on its shorter side (a whole
    factor, nearest neighbour: the pixels stay sharp), so that small images give readable pictures.

    Args:
        image, boxes, classes, scores, masks, class_names: as :func:`draw_detections`, in the image's own pixels
            (``masks`` ``[N, H, W]``).
        min_side: the shorter side to reach; images at least this large are drawn at their own size.

    Returns:
        uint8 ``[s * H, s * W, 3]`` with ``s =`` :func:`display_scale` ``(H, W, min_side)``.
    """
    image = _as_rgb(image)
    scale = display_scale(image.shape[0], image.shape[1], min_side)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4) * scale
    masks = None if masks is None else upscale_nearest(np.moveaxis(np.asarray(masks), 0, -1), scale)
    masks = None if masks is None else np.moveaxis(masks, -1, 0)
    return draw_detections(upscale_nearest(image, scale), boxes, classes, scores, masks, class_names)


def heatmap_picture(
    image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5, min_side: int = DISPLAY_MIN_SIDE, title: str = ""
) -> np.ndarray:
    """A class confidence map over its image, with a colour bar: the image enlarged to at least ``min_side``
    pixels (nearest neighbour), the map resized over it smoothly (:func:`overlay_heatmap`), and on the right a
    vertical bar of the colour ramp marked with the map's maximum (top) and minimum (bottom) values.

    Args:
        image: uint8 ``[H, W, 1, 3 or 4]``.
        heatmap: float ``[h, w]`` (e.g. NIN's ``[h, w]`` class map of one class).
        alpha: weight of the map over the image.
        min_side: the shorter side to reach.
        title: a caption drawn at the top left (e.g. the class name and probability).

    Returns:
        uint8 ``[s * H, s * W + bar, 3]``: the overlay, then the bar (about a tenth of the height wide).
    """
    from PIL import Image

    rgb = _as_rgb(image)
    values = np.nan_to_num(np.asarray(heatmap, np.float32))
    enlarged = upscale_nearest(rgb, display_scale(rgb.shape[0], rgb.shape[1], min_side))
    overlay = overlay_heatmap(enlarged, values, alpha)
    height, width = overlay.shape[:2]
    font_size = label_font_size(height, width)
    bar_width = max(8, height // 40)
    ramp = jet_colormap(np.linspace(1.0, 0.0, height))  # [height, 3], top = high
    bar = np.repeat((255 * ramp[:, None, :]).astype(np.uint8), bar_width, axis=1)
    labels = [render_label(f"{v:.3g}", font_size, (255, 255, 255)) for v in (values.max(), values.min())]
    panel_width = bar_width + max(label.width for label in labels) + 4
    panel = Image.new("RGB", (panel_width, height), (255, 255, 255))
    panel.paste(Image.fromarray(bar), (0, 0))
    panel.paste(labels[0], (bar_width + 2, 0))
    panel.paste(labels[1], (bar_width + 2, max(0, height - labels[1].height)))
    picture = Image.fromarray(np.concatenate([overlay, np.asarray(panel)], axis=1))
    if title:
        caption = render_label(title, font_size, (0, 0, 0))
        picture.paste(caption.crop((0, 0, min(caption.width, width), min(caption.height, height))), (0, 0))
    return np.asarray(picture).copy()
