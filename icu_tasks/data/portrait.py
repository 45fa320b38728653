"""Procedural portraits: a deterministic synthetic "photo" per person, recognisable at low resolution.

The coarse features a 64 px view still shows, the background colour and the head shape, form a unique pair for
every index below :data:`N_COMBOS` (consecutive indices are spread over the hue wheel and the shapes by a
stride coprime with the number of pairs). Finer details (skin, hair, clothes, eyes) come from a hash of the
profile id. No photo of a real person is involved.
"""

from __future__ import annotations

import colorsys
import hashlib
import math

from PIL import Image, ImageDraw

N_HUES = 32
#: (saturation, value) variants of every hue.
TONES: tuple[tuple[float, float], ...] = ((0.55, 0.95), (0.85, 0.7), (0.35, 0.55))
#: Head shapes: ("ellipse", width, height) or ("polygon", sides, rotation in degrees).
SHAPES: tuple[tuple[str, float, float], ...] = (
    ("ellipse", 1.0, 1.0),
    ("ellipse", 0.8, 1.1),
    ("ellipse", 1.15, 0.85),
    ("polygon", 4, 45),
    ("polygon", 4, 0),
    ("polygon", 3, 90),
    ("polygon", 3, -90),
    ("polygon", 5, -90),
    ("polygon", 6, 0),
    ("polygon", 6, 90),
    ("polygon", 8, 22.5),
    ("polygon", 7, -90),
)
N_COLORS = N_HUES * len(TONES)
#: Number of distinct (background colour, head shape) pairs; portraits with indices below it never share one.
N_COMBOS = N_COLORS * len(SHAPES)
_STRIDE = 101  # coprime with N_COMBOS = 1152 = 2^7 * 3^2, so index -> combo is a bijection

SKIN: tuple[tuple[int, int, int], ...] = (
    (255, 224, 196), (241, 194, 158), (224, 172, 125), (198, 134, 93), (141, 85, 54), (96, 60, 38),
)  # fmt: skip
HAIR: tuple[tuple[int, int, int], ...] = (
    (20, 20, 20), (90, 56, 37), (160, 110, 60), (230, 200, 120), (180, 60, 30), (200, 200, 200),
)  # fmt: skip


def combo(index: int) -> tuple[int, int]:
    """The (colour index, shape index) pair of portrait ``index``; unique for ``index < N_COMBOS``."""
    c = (index * _STRIDE) % N_COMBOS
    return c % N_COLORS, c // N_COLORS


def background_color(color_index: int) -> tuple[int, int, int]:
    """RGB of colour ``color_index`` (hue-major so neighbouring profiles differ strongly)."""
    hue = (color_index % N_HUES) / N_HUES
    sat, val = TONES[color_index // N_HUES]
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return round(r * 255), round(g * 255), round(b * 255)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _head_outline(shape: tuple[str, float, float], cx: float, cy: float, r: float) -> tuple[str, list]:
    kind, a, b = shape
    if kind == "ellipse":
        return "ellipse", [cx - r * a, cy - r * b, cx + r * a, cy + r * b]
    sides, rot = int(a), math.radians(b)
    pts = [
        (
            cx + r * 1.12 * math.cos(rot + 2 * math.pi * i / sides),
            cy + r * 1.12 * math.sin(rot + 2 * math.pi * i / sides),
        )
        for i in range(sides)
    ]
    return "polygon", pts


def portrait(profile_id: str, index: int, size: int) -> Image.Image:
    """A ``size`` x ``size`` RGB avatar for the person ``profile_id`` with portrait index ``index``."""
    color_index, shape_index = combo(index)
    bg = background_color(color_index)
    h = _digest(profile_id)
    skin, hair = SKIN[h[0] % len(SKIN)], HAIR[h[1] % len(HAIR)]
    cloth = tuple(40 + (v % 170) for v in h[2:5])
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    s = size / 100.0
    # Shoulders / clothes.
    draw.ellipse([12 * s, 74 * s, 88 * s, 130 * s], fill=cloth)
    draw.rectangle([43 * s, 62 * s, 57 * s, 78 * s], fill=skin)  # neck
    # Hair behind the head (style from the hash), then the head in its indexed shape.
    cx, cy, r = 50 * s, 42 * s, 23 * s
    style = h[5] % 3
    if style == 1:
        draw.ellipse([cx - r * 1.25, cy - r * 1.3, cx + r * 1.25, cy + r * 0.9], fill=hair)
    elif style == 2:
        draw.rectangle([cx - r * 1.2, cy - r * 1.1, cx + r * 1.2, cy + r * 1.3], fill=hair)
    kind, outline = _head_outline(SHAPES[shape_index], cx, cy, r)
    getattr(draw, kind)(outline, fill=skin, outline=(40, 40, 40), width=max(1, round(s)))
    if style == 0:
        draw.chord([cx - r, cy - r * 1.15, cx + r, cy + r * 0.3], 180, 360, fill=hair)
    # Eyes and mouth.
    eye_dx, eye_r = (7 + h[6] % 4) * s, max(1.0, 2.2 * s)
    for ex in (cx - eye_dx, cx + eye_dx):
        draw.ellipse([ex - eye_r, cy - eye_r, ex + eye_r, cy + eye_r], fill=(25, 25, 25))
    mouth_w = (5 + h[7] % 5) * s
    draw.line(
        [cx - mouth_w, cy + 11 * s, cx + mouth_w, cy + 11 * s],
        fill=(120, 40, 40),
        width=max(1, round(1.5 * s)),
    )
    draw.rectangle([0, 0, size - 1, size - 1], outline=(60, 60, 60), width=max(1, round(s)))
    return img
