"""Procedural demo faces written in CelebA's exact on-disk layout.

CelebA cannot be shipped or downloaded here, so ``generate_demo_celeba`` draws a small, seeded
set of synthetic "aligned CelebA" portraits with OpenCV and writes them with the same file names
and annotation files as the real dataset (``img_align_celeba/000001.jpg``,
``list_landmarks_align_celeba.txt``, ``list_eval_partition.txt``, ``identity_CelebA.txt``).
The rest of the project reads them through exactly the same code path as real CelebA.

Every face is drawn in a canonical frame on a 2x super-sampled canvas, then a small similarity
transform (the "pose": rotation, scale, shift) is applied and the canvas is reduced to
178 x 218. The five landmarks are known exactly from the drawing geometry and go through the same
transform, so the annotation file is exact up to CelebA's integer rounding.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from unmask.imaging.landmarks import LANDMARK_COLUMNS

logger = logging.getLogger(__name__)

#: Bump when the drawing changes so that cached demos are regenerated.
GENERATOR_VERSION = 1

#: Aligned CelebA image size (width, height).
IMAGE_WIDTH, IMAGE_HEIGHT = 178, 218
IMAGE_FOLDER = "img_align_celeba"
LANDMARKS_FILE = "list_landmarks_align_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IDENTITY_FILE = "identity_CelebA.txt"
MANIFEST_FILE = "demo_manifest.json"
JPEG_QUALITY = 95

#: CelebA's train/val/test shares (162770 / 19867 / 19962 of 202599 images).
PARTITION_SHARES = (0.8034, 0.0981, 0.0985)

# Drawing resolution: 2x super-sampling, sub-pixel coordinates with 4 fractional bits.
_SS = 2
_SHIFT = 4
_FRAC = 1 << _SHIFT
_CW, _CH = IMAGE_WIDTH * _SS, IMAGE_HEIGHT * _SS
_CX = (IMAGE_WIDTH - 1) / 2  # 88.5: horizontal centre of the face in the canonical frame
_POSE_CENTRE = (_CX, 128.0)

_SKIN_TONES = np.array(
    [
        (255, 226, 204), (247, 210, 182), (240, 196, 166), (226, 178, 142), (214, 160, 122),
        (196, 140, 100), (172, 118, 84), (141, 93, 62), (112, 72, 48), (88, 57, 40),
    ],
    dtype=np.float64,
)
_HAIR_COLOURS = np.array(
    [
        (22, 18, 16), (30, 24, 20), (52, 36, 26), (78, 52, 34), (110, 76, 48), (150, 108, 68),
        (196, 160, 104), (224, 196, 138), (140, 62, 30), (168, 164, 158), (92, 90, 88),
    ],
    dtype=np.float64,
)
_EYE_COLOURS = np.array(
    [(54, 34, 20), (86, 54, 30), (118, 80, 40), (120, 104, 52), (70, 112, 72), (66, 108, 164),
     (96, 140, 180), (104, 118, 128)],
    dtype=np.float64,
)
_LIPSTICKS = np.array([(176, 52, 66), (196, 86, 100), (150, 44, 58), (204, 110, 112)], dtype=np.float64)


@dataclass(frozen=True)
class _Identity:
    """Traits fixed for one person."""

    male: bool
    skin: np.ndarray
    hair: np.ndarray
    hair_style: str
    hair_volume: float
    hairline: float
    part_side: float
    eye_colour: np.ndarray
    face_half_width: float
    face_top: float
    face_taper: float
    jaw_square: float
    chin_length: float
    iod: float
    eye_dy: float
    eye_width: float
    eye_height: float
    eye_tilt: float
    brow_thickness: float
    brow_arch: float
    brow_colour: np.ndarray
    nose_length: float
    nose_width: float
    mouth_dy: float
    mouth_half_width: float
    lip_upper: float
    lip_lower: float
    lip_colour: np.ndarray
    ear_size: float
    glasses: str | None
    glasses_colour: np.ndarray
    beard: str | None
    clothes: np.ndarray


# ----------------------------------------------------------------------------------- geometry --


def _pts(xy, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Canonical 1x coordinates -> fixed-point 2x canvas coordinates for OpenCV's ``shift``.

    ``offset`` (canvas pixels) is added here: OpenCV applies its own ``offset`` argument in
    fixed-point units when ``shift`` is used.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    xy = xy * _SS + ((_SS - 1) / 2 + np.asarray(offset, dtype=np.float64))
    return np.round(xy * _FRAC).astype(np.int32).reshape(-1, 1, 2)


def _colour(c) -> tuple:
    if np.isscalar(c):
        return (float(min(max(c, 0), 255)),)
    return tuple(min(max(float(v), 0.0), 255.0) for v in c)


def _fill(img: np.ndarray, xy, colour, offset: tuple[int, int] = (0, 0)) -> None:
    """Anti-aliased filled polygon (``img`` must be uint8: OpenCV only anti-aliases 8-bit images)."""
    cv2.fillPoly(img, [_pts(xy, offset)], _colour(colour), cv2.LINE_AA, _SHIFT)


def _stroke(img: np.ndarray, xy, colour, thickness: float, closed: bool = False,
            offset: tuple[int, int] = (0, 0)) -> None:
    width = max(1, int(round(thickness * _SS)))
    cv2.polylines(img, [_pts(xy, offset)], closed, _colour(colour), width, cv2.LINE_AA, _SHIFT)


def _ellipse(cx: float, cy: float, ax: float, ay: float, angle: float = 0.0, n: int = 48,
             t0: float = 0.0, t1: float | None = None) -> np.ndarray:
    """Points of an ellipse (full when ``t1`` is None) or of an arc from ``t0`` to ``t1``."""
    t = (np.linspace(0, 2 * np.pi, n, endpoint=False) if t1 is None else np.linspace(t0, t1, n))
    x, y = ax * np.cos(t), ay * np.sin(t)
    if angle:
        a = np.deg2rad(angle)
        x, y = x * np.cos(a) - y * np.sin(a), x * np.sin(a) + y * np.cos(a)
    return np.stack([cx + x, cy + y], axis=1)


_T = {n: np.linspace(0, 1, n, endpoint=False)[:, None] for n in range(2, 17)}


def _spline(ctrl, n: int = 8) -> np.ndarray:
    """Catmull-Rom curve through the control points (open), ``n`` points per segment."""
    p = np.asarray(ctrl, dtype=np.float64)
    p = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    t = _T[n]
    t2, t3 = t * t, t * t * t
    p0, p1, p2, p3 = p[:-3, None], p[1:-2, None], p[2:-1, None], p[3:, None]
    seg = 0.5 * ((2 * p1) + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2
                 + (3 * p1 - p0 - 3 * p2 + p3) * t3)
    return np.vstack([seg.reshape(-1, 2), p[-2][None]])


def _band(centre: np.ndarray, widths) -> np.ndarray:
    """Polygon of a stroke of varying width along a centre line."""
    d = np.gradient(centre, axis=0)
    d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-9
    normal = np.stack([-d[:, 1], d[:, 0]], axis=1) * (np.asarray(widths, dtype=np.float64).reshape(-1, 1) / 2)
    return np.vstack([centre + normal, (centre - normal)[::-1]])


def _mix(a, b, t) -> np.ndarray:
    return np.asarray(a, dtype=np.float64) * (1 - t) + np.asarray(b, dtype=np.float64) * t


def _roi(xy, margin: float = 3.0) -> tuple[int, int, int, int]:
    """Canvas pixel box (x0, y0, x1, y1) around canonical points, clipped to the canvas."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2) * _SS
    x0, y0 = np.floor(xy.min(0) - margin * _SS).astype(int)
    x1, y1 = np.ceil(xy.max(0) + margin * _SS).astype(int) + 1
    return max(x0, 0), max(y0, 0), min(x1, _CW), min(y1, _CH)


def _blend_region(img: np.ndarray, xy, colour, strength: float, blur: float = 0.0,
                  hole=None) -> np.ndarray:
    """Blend ``colour`` into ``img`` inside polygon ``xy`` (minus ``hole``); return the full-size mask."""
    x0, y0, x1, y1 = _roi(xy, margin=3 + 3 * blur)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    _fill(mask, xy, 255, offset=(-x0, -y0))
    if hole is not None:
        _fill(mask, hole, 0, offset=(-x0, -y0))
    if blur:
        mask = cv2.GaussianBlur(mask, (0, 0), blur * _SS)
    alpha = mask.astype(np.float32)[..., None] * (strength / 255)
    roi = img[y0:y1, x0:x1]
    roi[:] = np.clip(roi * (1 - alpha) + np.float32(_colour(colour)) * alpha + 0.5, 0, 255).astype(np.uint8)
    full = np.zeros((_CH, _CW), np.uint8)
    full[y0:y1, x0:x1] = mask
    return full


def _soft(layer: np.ndarray, sigma: float) -> np.ndarray:
    """Cheap wide Gaussian blur of a uint8 layer (blur at quarter size), as float32 in [0, 1]."""
    small = cv2.resize(layer, (_CW // 4, _CH // 4), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / 4)
    return cv2.resize(small, (_CW, _CH), interpolation=cv2.INTER_LINEAR).astype(np.float32) * (1 / 255)


# ----------------------------------------------------------------------------------- identity --


def _make_identity(rng: np.random.Generator) -> _Identity:
    male = bool(rng.random() < 0.5)
    i = rng.integers(len(_SKIN_TONES) - 1)
    skin = _mix(_SKIN_TONES[i], _SKIN_TONES[i + 1], rng.random()) + rng.normal(0, 4, 3)
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * rng.uniform(0.85, 1.15)
    if male:
        style = rng.choice(["short", "short", "buzz", "medium", "bald", "long"],
                           p=[0.3, 0.2, 0.15, 0.2, 0.05, 0.1])
    else:
        style = rng.choice(["long", "long", "medium", "bun", "short", "fringe"],
                           p=[0.3, 0.2, 0.15, 0.12, 0.08, 0.15])
    eye_colour = _EYE_COLOURS[rng.integers(len(_EYE_COLOURS))] * rng.uniform(0.85, 1.15)
    brow_colour = _mix(hair, (30, 22, 18), 0.35 if hair.mean() > 120 else 0.1)
    natural_lip = _mix(skin, (170, 70, 70), 0.45) * 0.92
    lip_colour = (_LIPSTICKS[rng.integers(len(_LIPSTICKS))] if (not male and rng.random() < 0.5)
                  else natural_lip)
    glasses = rng.choice(["round", "square"]) if rng.random() < 0.15 else None
    beard = (rng.choice(["stubble", "full", "goatee"]) if male and rng.random() < 0.35 else None)
    return _Identity(
        male=male, skin=skin, hair=hair, hair_style=str(style),
        hair_volume=rng.uniform(4, 12), hairline=rng.uniform(-4, 5), part_side=rng.uniform(-1, 1),
        eye_colour=eye_colour,
        face_half_width=rng.uniform(41.5, 46.5) + (1.5 if male else 0),
        face_top=rng.uniform(60, 68), face_taper=rng.uniform(0.18, 0.34) - (0.06 if male else 0),
        jaw_square=rng.uniform(0.75, 1.0) - (0.1 if male else 0), chin_length=rng.uniform(26, 32),
        iod=rng.uniform(36.5, 41.5), eye_dy=rng.uniform(-2, 2), eye_width=rng.uniform(22, 26),
        eye_height=rng.uniform(8.0, 10.5), eye_tilt=rng.uniform(-1.2, 1.2),
        brow_thickness=rng.uniform(2.6, 4.0) + (1.0 if male else 0), brow_arch=rng.uniform(1, 4),
        brow_colour=brow_colour,
        nose_length=rng.uniform(22.5, 27.5), nose_width=rng.uniform(9, 12.5),
        mouth_dy=rng.uniform(40, 45), mouth_half_width=rng.uniform(15, 18.5),
        lip_upper=rng.uniform(3.0, 4.5), lip_lower=rng.uniform(4.0, 6.5) + (0 if male else 0.8),
        lip_colour=lip_colour, ear_size=rng.uniform(0.9, 1.1), glasses=glasses,
        glasses_colour=rng.choice([20.0, 60.0, 150.0]) * np.array([1.0, 0.9, 0.8]),
        beard=beard, clothes=rng.uniform(20, 230, 3),
    )


# ------------------------------------------------------------------------------------ drawing --


def _background(rng: np.random.Generator) -> np.ndarray:
    """Smooth varied background: two-colour gradient (or studio vignette) plus soft blobs."""
    small_w, small_h = 24, 30
    c1, c2 = rng.uniform(20, 240, 3), rng.uniform(20, 240, 3)
    if rng.random() < 0.3:  # studio: one colour, darker towards one side
        c2 = c1 * rng.uniform(0.5, 0.8)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:small_h, 0:small_w].astype(np.float64)
    t = ((xx / small_w - 0.5) * np.cos(angle) + (yy / small_h - 0.5) * np.sin(angle)) + 0.5
    small = _mix(c1, c2, np.clip(t, 0, 1)[..., None])
    for _ in range(int(rng.integers(0, 6))):
        colour = rng.uniform(0, 255, 3)
        cx, cy, r = rng.uniform(0, small_w), rng.uniform(0, small_h), rng.uniform(2, 9)
        w = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None] * rng.uniform(0.4, 0.9)
        small = small * (1 - w) + colour * w
    small = np.clip(small + 0.5, 0, 255).astype(np.uint8)
    return cv2.resize(small, (_CW, _CH), interpolation=cv2.INTER_CUBIC)


def _face_outline(cx: float, cy: float, ident: _Identity, chin_y: float, n: int = 72) -> np.ndarray:
    """Egg-shaped face contour: round cranium, tapering jaw, chin at ``chin_y``."""
    a, top = ident.face_half_width, ident.face_top
    bottom = chin_y - cy
    t = np.linspace(-np.pi, np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    lower = s > 0
    x = a * np.sign(c) * np.abs(c) ** np.where(lower, ident.jaw_square, 1.0)
    x = x * np.where(lower, 1 - ident.face_taper * s**2, 1.0)
    y = np.where(lower, bottom * s, top * s)
    return np.stack([cx + x, cy + y], axis=1)


def _draw_face(ident: _Identity, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw one portrait on the 2x canvas; return (float32 RGB canvas, landmarks (5, 2) canonical)."""
    img = _background(rng)
    shadow = np.zeros((_CH, _CW), np.uint8)
    light = np.zeros((_CH, _CW), np.uint8)
    hair_mask = np.zeros((_CH, _CW), np.uint8)

    # --- per-image variation: yaw-like shifts, expression, small jitter of the geometry
    yaw = float(np.clip(rng.normal(0, 0.45), -1.2, 1.2))
    smile = float(rng.uniform(0, 1))
    mouth_open = float(rng.uniform(1.5, 6.0)) if rng.random() < 0.3 else 0.0
    gaze = rng.normal(0, 0.8, 2)
    eye_y = 110.0 + ident.eye_dy + rng.normal(0, 0.6)
    iod = ident.iod + rng.normal(0, 0.5)
    face_cx = _CX - 2.5 * yaw
    eyes = np.array([[_CX - iod / 2 + 0.8 * yaw, eye_y + ident.eye_tilt * 0.3],
                     [_CX + iod / 2 + 0.8 * yaw, eye_y - ident.eye_tilt * 0.3]])
    nose = np.array([_CX + 7.0 * yaw, eye_y + ident.nose_length + rng.normal(0, 0.5)])
    mouth_y = eye_y + ident.mouth_dy + 0.6 * mouth_open
    mhw = ident.mouth_half_width + 2.5 * smile + rng.normal(0, 0.4)
    mouth_cx = _CX + 4.0 * yaw
    corner_y = mouth_y - 2.2 * smile
    mouth = np.array([[mouth_cx - mhw, corner_y], [mouth_cx + mhw, corner_y]])
    chin_y = mouth_y + ident.chin_length + 0.5 * mouth_open
    face_cy = eye_y + 6.0
    skin = ident.skin
    outline = _face_outline(face_cx, face_cy, ident, chin_y)
    hair = ident.hair * rng.uniform(0.95, 1.05)
    a = ident.face_half_width
    crown_y = face_cy - ident.face_top
    hv = ident.hair_volume
    style = ident.hair_style

    # --- clothes and shoulders
    sh_y = chin_y + 20 + rng.normal(0, 2)
    _fill(img, _ellipse(face_cx + rng.normal(0, 2), sh_y + 62, 98, 70), ident.clothes)
    _stroke(shadow, _ellipse(face_cx, sh_y + 62, 98, 70, t0=np.pi * 1.1, t1=np.pi * 1.9), 130, 3)

    # --- hair behind the head
    side_r = a + (1.5 if style == "buzz" else hv * 0.6)
    top_r = ident.face_top + (2.0 if style == "buzz" else hv * 0.7)
    if style in ("long", "medium", "fringe"):
        bottom = {"long": IMAGE_HEIGHT + 10, "medium": chin_y + 6, "fringe": chin_y + 26}[style]
        back = np.vstack([
            _ellipse(face_cx, face_cy - 4, a + hv, ident.face_top + hv, n=40, t0=np.pi, t1=2 * np.pi),
            _spline([[face_cx + a + hv, face_cy - 4], [face_cx + a + hv + 6, face_cy + 40],
                     [face_cx + a + hv + 10, bottom]], 10),
            _spline([[face_cx - a - hv - 10, bottom], [face_cx - a - hv - 6, face_cy + 40],
                     [face_cx - a - hv, face_cy - 4]], 10),
        ])
    elif style != "bald":  # short hair: cranium down to the ears
        back = np.vstack([_ellipse(face_cx, face_cy - 2, side_r, top_r, n=40, t0=np.pi, t1=2 * np.pi),
                          [[face_cx + side_r - 1, eye_y + 4], [face_cx - side_r + 1, eye_y + 4]]])
    else:
        back = None
    back_colour = _mix(hair, skin, 0.45) if style == "buzz" else hair * 0.8
    if back is not None:
        _fill(img, back, back_colour)
        _fill(hair_mask, back, 0 if style == "buzz" else 255)
    if style == "bun":
        bun = _ellipse(face_cx + rng.normal(0, 2), crown_y - 8, 20, 15)
        _fill(img, bun, hair * 0.85)
        _fill(hair_mask, bun, 255)

    # --- neck
    nw = a * 0.52
    neck = np.vstack([[[face_cx + nw, chin_y - 30], [face_cx - nw, chin_y - 30]],
                      _spline([[face_cx - nw - 1, sh_y - 2], [face_cx - nw * 0.6, sh_y + 10],
                               [face_cx, sh_y + 14], [face_cx + nw * 0.6, sh_y + 10],
                               [face_cx + nw + 1, sh_y - 2]], 6)])
    _fill(img, neck, skin * 0.86)
    _fill(hair_mask, neck, 0)
    _fill(shadow, _ellipse(face_cx, chin_y + 3, a * 0.6, 10), 190)

    # --- ears
    for side in (-1, 1):
        ex, ey, s = face_cx + side * (a + 2.0), eye_y + 12, ident.ear_size
        ear = _ellipse(ex, ey, 6.5 * s, 14 * s, angle=side * 8)
        _fill(img, ear, skin * 0.93)
        _fill(hair_mask, ear, 0)
        t0 = -np.pi / 2 if side > 0 else np.pi / 2
        _stroke(img, _ellipse(ex + side * 0.5, ey, 3.5 * s, 9.5 * s, angle=side * 8, t0=t0, t1=t0 + np.pi),
                skin * 0.7, 1.4)

    # --- face
    _fill(img, outline, skin)
    _fill(hair_mask, outline, 0)
    _stroke(shadow, outline, 120, 9, closed=True)  # roundness: darker towards the contour

    # --- hair on top of the head
    if style not in ("bald",):
        hl = crown_y + 22 + ident.hairline + (8 if style == "fringe" else 0)
        temple_y = eye_y - 14 + ident.hairline * 0.5
        p = ident.part_side
        cap_top = _ellipse(face_cx, face_cy - 2, side_r, top_r, n=40, t0=np.pi * 1.02, t1=np.pi * 1.98)
        if style == "fringe":
            xs = np.linspace(face_cx + a - 4, face_cx - a + 4, 9)
            ys = hl + 4 + np.where(np.arange(9) % 2, 3.0, 0.0) + rng.normal(0, 0.6, 9)
            edge = np.vstack([[[face_cx + side_r, temple_y + 8]], np.stack([xs, ys], 1),
                              [[face_cx - side_r, temple_y + 8]]])
        else:
            edge = _spline([[face_cx + side_r, temple_y + 6], [face_cx + a - 3, temple_y - 4],
                            [face_cx + a * 0.55, hl + 3 - 6 * p], [face_cx + a * 0.25 * p, hl + 1 + 2 * abs(p)],
                            [face_cx - a * 0.55, hl + 3 + 6 * p], [face_cx - a + 3, temple_y - 4],
                            [face_cx - side_r, temple_y + 6]], 6)
        cap = np.vstack([cap_top, edge])
        if style == "buzz":
            _fill(img, cap, _mix(hair, skin, 0.45))
        else:
            _fill(img, cap, hair)
            _fill(hair_mask, cap, 255)
            _stroke(shadow, _spline([[face_cx + a * 0.3 * p, crown_y + 2], [face_cx + a * 0.25 * p, hl]], 6),
                    140, 1.2)  # parting
        if style in ("long", "medium"):
            for side in (-1, 1):  # locks framing the face
                x0 = face_cx + side * (a - 5)
                lock = np.vstack([
                    _spline([[face_cx + side * a * 0.5, hl + 2], [x0 - side * 2, temple_y + 10],
                             [x0 + side * 1, eye_y + 30], [x0 + side * 6, chin_y - 6]], 8),
                    _spline([[x0 + side * 16, chin_y - 4], [face_cx + side * (a + hv), eye_y + 10],
                             [face_cx + side * (a + hv * 0.6), temple_y - 10]], 8),
                ])
                _fill(img, lock, hair * 0.95)
                _fill(hair_mask, lock, 255)

    # --- beard
    if ident.beard is not None:
        hole = _ellipse(mouth_cx, mouth_y, mhw * 0.95, 6.5, n=24)
        if ident.beard == "goatee":
            region = np.vstack([_ellipse(mouth_cx, mouth_y + 2, mhw + 3, 10, n=24, t0=np.pi, t1=2 * np.pi),
                                _ellipse(mouth_cx, mouth_y + 2, mhw * 0.7, chin_y - mouth_y + 1, n=24,
                                         t0=0, t1=np.pi)])
        else:
            low = outline[outline[:, 1] > nose[1] + 6]
            low = low[np.argsort(np.arctan2(low[:, 1] - face_cy, low[:, 0] - face_cx))]
            region = np.vstack([low, _spline([[face_cx - a * 0.8, nose[1] + 4], [mouth_cx, nose[1] + 9],
                                              [face_cx + a * 0.8, nose[1] + 4]], 8)[::-1]])
        strength = {"stubble": 0.2, "full": 0.88, "goatee": 0.8}[ident.beard]
        mask = _blend_region(img, region, _mix(hair * 0.8, skin * 0.5, 0.3 if ident.beard == "stubble" else 0),
                             strength, blur=1.5 if ident.beard == "stubble" else 0.8, hole=hole)
        hair_mask = np.maximum(hair_mask, mask // 3 if ident.beard == "stubble" else mask)

    # --- eyebrows
    for k, side in enumerate((-1, 1)):
        ex, ey = eyes[k]
        inner = [ex - side * (ident.eye_width * 0.55), ey - 10.5]
        peak = [ex + side * 3, ey - 13.5 - ident.brow_arch]
        outer = [ex + side * (ident.eye_width * 0.68), ey - 10.5 - ident.brow_arch * 0.4]
        centre = _spline([inner, peak, outer], 10)
        widths = ident.brow_thickness * np.linspace(1.0, 0.45, len(centre)) ** 0.7
        _fill(img, _band(centre, widths), ident.brow_colour)

    # --- eyes: almond-shaped white, iris clipped by the lids, pupil, catch-light, lashes
    for k, side in enumerate((-1, 1)):
        ex, ey = eyes[k]
        w, h = ident.eye_width / 2, ident.eye_height / 2
        inner = [ex - side * w, ey + 0.6]
        outer = [ex + side * w, ey - ident.eye_tilt * 0.4]
        upper = _spline([inner, [ex - side * w * 0.35, ey - h * 1.05], [ex + side * w * 0.3, ey - h], outer], 8)
        lower = _spline([outer, [ex + side * w * 0.2, ey + h * 0.85], [ex - side * w * 0.4, ey + h * 0.8],
                         inner], 8)
        almond = np.vstack([upper, lower])
        _fill(shadow, _ellipse(ex, ey - 2, w * 1.2, h * 1.8), 110)  # eye socket
        x0, y0, x1, y1 = _roi(almond, 2)
        off = (-x0, -y0)
        roi = img[y0:y1, x0:x1]
        layer = roi.copy()
        _fill(layer, almond, (238, 234, 228), off)
        ic = (ex + gaze[0], ey + 0.4 + gaze[1] * 0.4)
        ir = ident.eye_height * 0.6
        iris = _ellipse(*ic, ir, ir, n=32)
        _fill(layer, iris, ident.eye_colour, off)
        _stroke(layer, iris, ident.eye_colour * 0.55, 0.8, closed=True, offset=off)
        _fill(layer, _ellipse(*ic, ir * 0.45, ir * 0.45, n=24), (14, 10, 10), off)
        _fill(layer, _ellipse(ic[0] + 1.2, ic[1] - 1.3, ir * 0.2, ir * 0.2, n=12), (250, 250, 250), off)
        clip = np.zeros(roi.shape[:2], np.uint8)
        _fill(clip, almond, 255, off)
        m = clip.astype(np.float32)[..., None] * (1 / 255)
        roi[:] = (roi * (1 - m) + layer * m + 0.5).astype(np.uint8)
        _stroke(img, upper, (34, 24, 22), 1.3 + (0 if ident.male else 0.5))  # lashes / upper lid
        _stroke(img, lower, skin * 0.62, 0.6)
        crease = _spline([[inner[0] + side * 1, inner[1] - 3], [ex, ey - h - 3.2],
                          [outer[0] - side * 1, outer[1] - 3.5]], 8)
        _stroke(img, crease, skin * 0.72, 0.8)

    # --- nose: bridge shading, tip highlight, alae and nostrils
    nx, ny = nose
    nwid = ident.nose_width
    for k, side in enumerate((-1, 1)):
        bridge = _spline([[eyes[k][0] - side * ident.eye_width * 0.45, eye_y - 3],
                          [nx + side * 4.5, eye_y + 10], [nx + side * nwid * 0.55, ny - 2]], 8)
        _stroke(shadow, bridge, 120, 2.5)
        ala = _spline([[nx + side * nwid * 0.35, ny - 5], [nx + side * nwid * 0.62, ny - 0.5],
                       [nx + side * nwid * 0.55, ny + 3.5], [nx + side * nwid * 0.2, ny + 4.5]], 6)
        _stroke(img, ala, skin * 0.7, 1.0)
        _fill(img, _ellipse(nx + side * nwid * 0.3, ny + 3.3, 2.3, 1.3, angle=side * 20, n=16), skin * 0.35)
    _fill(shadow, _ellipse(nx, ny + 5.5, nwid * 0.55, 3.0), 150)
    _fill(light, _ellipse(nx - 0.5, ny - 2.0, 2.8, 3.2), 200)
    _fill(light, _ellipse(nx, eye_y + 10, 2.0, 8), 90)

    # --- mouth: upper and lower lip, seam, optional open mouth with teeth
    mx, seam_y = mouth_cx, mouth_y
    lc, rc = mouth[0], mouth[1]
    up, lo, op = ident.lip_upper, ident.lip_lower, mouth_open / 2
    upper_top = _spline([lc, [mx - mhw * 0.45, seam_y - up * 0.85], [mx - 2.5, seam_y - up - 0.6],
                         [mx, seam_y - up + 0.7], [mx + 2.5, seam_y - up - 0.6],
                         [mx + mhw * 0.45, seam_y - up * 0.85], rc], 6)
    seam_top = _spline([rc, [mx + mhw * 0.5, seam_y - op + 0.3], [mx, seam_y - op + 0.6],
                        [mx - mhw * 0.5, seam_y - op + 0.3], lc], 6)
    seam_bot = _spline([lc, [mx - mhw * 0.5, seam_y + op + 0.3], [mx, seam_y + op + 0.5],
                        [mx + mhw * 0.5, seam_y + op + 0.3], rc], 6)
    lower_bot = _spline([rc, [mx + mhw * 0.55, seam_y + op + lo * 0.8], [mx, seam_y + op + lo + 0.4],
                         [mx - mhw * 0.55, seam_y + op + lo * 0.8], lc], 6)
    _fill(shadow, _ellipse(mx, seam_y + op + lo + 3.5, mhw * 0.45, 2.5), 120)
    if mouth_open > 0:
        _fill(img, np.vstack([seam_bot, seam_top]), (70, 24, 30))
        teeth = _spline([[mx - mhw * 0.55, seam_y - op + 0.4], [mx, seam_y - op + 0.8],
                         [mx + mhw * 0.55, seam_y - op + 0.4]], 6)
        _stroke(img, teeth, (236, 232, 222), min(2.4, mouth_open * 0.45))
    _fill(img, np.vstack([upper_top, seam_top]), ident.lip_colour * 0.88)
    _fill(img, np.vstack([seam_bot, lower_bot]), ident.lip_colour)
    _fill(light, _ellipse(mx, seam_y + op + lo * 0.45, mhw * 0.35, lo * 0.2), 110)
    _stroke(img, seam_top, ident.lip_colour * 0.45, 0.9)
    if mouth_open > 0:
        _stroke(img, seam_bot, ident.lip_colour * 0.45, 0.9)
    if ident.beard in ("full", "stubble"):  # moustache
        must = _band(_spline([[lc[0] - 2, lc[1] + 2], [mx, seam_y - up - 3.0], [rc[0] + 2, rc[1] + 2]], 10),
                     4.5 if ident.beard == "full" else 3.0)
        _blend_region(img, must, hair * 0.75, 0.85 if ident.beard == "full" else 0.3, blur=0.6)

    # --- cheeks, chin and forehead highlights
    for side in (-1, 1):
        _fill(light, _ellipse(face_cx + side * a * 0.55, eye_y + 18, 8, 5), 70)
    _fill(light, _ellipse(mouth_cx, chin_y - 9, 7, 4), 70)
    _fill(light, _ellipse(face_cx, crown_y + 30, 14, 7), 60)

    # --- glasses
    if ident.glasses is not None:
        gw, gh = ident.eye_width * 0.78, 9.0
        for k, side in enumerate((-1, 1)):
            ex, ey = eyes[k]
            if ident.glasses == "round":
                lens = _ellipse(ex, ey + 1, gw, gh + 1, n=40)
            else:
                t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
                c, s = np.cos(t), np.sin(t)
                lens = np.stack([ex + gw * np.sign(c) * np.abs(c) ** 0.4,
                                 ey + 1 + gh * np.sign(s) * np.abs(s) ** 0.4], 1)
            _stroke(img, lens, ident.glasses_colour, 1.4, closed=True)
            _stroke(img, [[ex + side * gw, ey - 2], [face_cx + side * (a + 2), ey + 1]], ident.glasses_colour, 1.3)
        _stroke(img, _spline([[eyes[0][0] + gw, eye_y - 1], [_CX + 0.5 * yaw, eye_y - 3],
                              [eyes[1][0] - gw, eye_y - 1]], 6), ident.glasses_colour, 1.3)

    # --- shading layers and hair texture (vertical streaks inside the hair), in float
    out = img.astype(np.float32)
    bx, by, bw, bh = cv2.boundingRect(hair_mask)
    if bw > 4 and bh > 4:
        noise = rng.standard_normal((bh // 2 + 1, bw // 2 + 1), dtype=np.float32)
        noise = cv2.resize(noise, (bw, bh), interpolation=cv2.INTER_LINEAR)
        noise = cv2.blur(noise, (1, 15)) * 14
        hm = hair_mask[by:by + bh, bx:bx + bw].astype(np.float32) * (1 / 255)
        out[by:by + bh, bx:bx + bw] += (noise * hm)[..., None]
    sh = _soft(shadow, 4.0)
    li = _soft(light, 3.5)
    # darken by the shadow layer, then move towards white by the light layer, in one pass
    li *= 0.28
    gain = (1 - 0.35 * sh) * (1 - li)
    out = out * cv2.merge([gain, gain, gain]) + cv2.merge([li, li, li]) * 255

    landmarks = np.vstack([eyes, nose[None], mouth])
    return out, landmarks


def _pose_matrix(rng: np.random.Generator) -> np.ndarray:
    """Similarity transform (canonical 1x -> posed 1x), like the residual jitter of aligned CelebA."""
    angle = float(np.clip(rng.normal(0, 2.5), -7, 7))
    scale = float(np.clip(rng.normal(1.0, 0.03), 0.92, 1.08))
    m = cv2.getRotationMatrix2D(_POSE_CENTRE, angle, scale)
    m[:, 2] += rng.normal(0, 1.3, 2)
    return m


_S2 = np.array([[_SS, 0, (_SS - 1) / 2], [0, _SS, (_SS - 1) / 2], [0, 0, 1]])
_GRID_Y, _GRID_X = np.mgrid[0:IMAGE_HEIGHT, 0:IMAGE_WIDTH].astype(np.float32)


def _render(ident: _Identity, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One 178x218 uint8 RGB image and its exact landmarks (5, 2) in image pixel coordinates."""
    canvas, canonical = _draw_face(ident, rng)
    pose = _pose_matrix(rng)
    # the same transform on the 2x canvas, whose pixel centres are at x2 = SS * x1 + (SS - 1) / 2
    m2 = (_S2 @ np.vstack([pose, [0, 0, 1]]) @ np.linalg.inv(_S2))[:2]
    warped = cv2.warpAffine(canvas, m2, (_CW, _CH), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    small = cv2.resize(warped, (IMAGE_WIDTH, IMAGE_HEIGHT), interpolation=cv2.INTER_AREA)

    # lighting: directional gradient, exposure and colour temperature; then mild blur and sensor noise
    d = rng.uniform(0, 2 * np.pi)
    grad = ((_GRID_X - _CX) * np.cos(d) + (_GRID_Y - 120) * np.sin(d)) * (1 / 120)
    gain = np.float32(rng.uniform(0.88, 1.12)) * (1 + np.float32(rng.uniform(0.0, 0.3)) * grad)
    tint = (1 + rng.normal(0, 0.035, 3)).astype(np.float32)
    small = small * gain[..., None] * tint
    small = cv2.GaussianBlur(small, (0, 0), rng.uniform(0.35, 0.6))
    small += rng.standard_normal(small.shape, dtype=np.float32) * np.float32(rng.uniform(1.0, 3.0))
    image = np.clip(small + 0.5, 0, 255).astype(np.uint8)

    landmarks = canonical @ pose[:, :2].T + pose[:, 2]
    return image, landmarks


# ----------------------------------------------------------------------------------- dataset --


def _plan(n_images: int, n_identities: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Identity (1-based) and partition of each image, ordered like CelebA (train, val, test)."""
    rng = np.random.default_rng([seed, 0])
    n_identities = max(1, min(n_identities, n_images))
    # identity-disjoint partitions, as in CelebA
    ids = rng.permutation(n_identities) + 1
    n_val = int(round(n_identities * PARTITION_SHARES[1])) if n_identities >= 3 else 0
    n_test = int(round(n_identities * PARTITION_SHARES[2])) if n_identities >= 3 else 0
    n_val, n_test = max(n_val, 1 if n_identities >= 3 else 0), max(n_test, 1 if n_identities >= 3 else 0)
    groups = [ids[: n_identities - n_val - n_test], ids[n_identities - n_val - n_test: n_identities - n_test],
              ids[n_identities - n_test:]]
    # every identity gets at least one image; the rest are spread unevenly, as in CelebA
    weights = rng.gamma(2.0, 1.0, n_identities)
    counts = np.ones(n_identities, dtype=int)
    extra = rng.multinomial(n_images - n_identities, weights / weights.sum())
    counts += extra
    count_of = dict(zip(range(1, n_identities + 1), counts))
    identity, partition = [], []
    for part, group in enumerate(groups):
        images = np.concatenate([np.full(count_of[i], i) for i in group]) if len(group) else np.array([], int)
        identity.append(rng.permutation(images))
        partition.append(np.full(len(images), part))
    return np.concatenate(identity).astype(int), np.concatenate(partition).astype(int)


def _manifest(n_images: int, n_identities: int, seed: int) -> dict:
    return {
        "generator": "unmask.imaging.demo_faces",
        "version": GENERATOR_VERSION,
        "n_images": int(n_images),
        "n_identities": int(n_identities),
        "seed": int(seed),
        "image_size": [IMAGE_WIDTH, IMAGE_HEIGHT],
    }


def _is_complete(root: Path, manifest: dict) -> bool:
    try:
        found = json.loads((root / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return False
    if found != manifest:
        return False
    if not all((root / f).is_file() for f in (LANDMARKS_FILE, PARTITION_FILE, IDENTITY_FILE)):
        return False
    folder = root / IMAGE_FOLDER
    if not folder.is_dir():
        return False
    with os.scandir(folder) as it:
        n = sum(1 for e in it if e.name.endswith(".jpg"))
    return n == manifest["n_images"]


def render_demo_face(identity_seed: int, image_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one face: (uint8 RGB 218x178x3, landmarks (5, 2) float in CelebA order)."""
    ident = _make_identity(np.random.default_rng(identity_seed))
    return _render(ident, np.random.default_rng(image_seed))


def _write_dataset(folder: Path, n_images: int, n_identities: int, seed: int) -> None:
    identity, partition = _plan(n_images, n_identities, seed)
    images = folder / IMAGE_FOLDER
    images.mkdir(parents=True)
    traits = {i: _make_identity(np.random.default_rng([seed, 1, int(i)])) for i in np.unique(identity)}
    lm_lines = [str(n_images), " ".join(LANDMARK_COLUMNS)]
    part_lines, id_lines = [], []
    params = [int(cv2.IMWRITE_JPEG_QUALITY), JPEG_QUALITY]
    for k in range(n_images):
        name = f"{k + 1:06d}.jpg"
        image, lm = _render(traits[identity[k]], np.random.default_rng([seed, 2, k]))
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
        if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
            raise RuntimeError(f"could not encode {name}")
        (images / name).write_bytes(buf.tobytes())
        coords = np.rint(lm).astype(int).reshape(-1)
        lm_lines.append(f"{name} " + "".join(f"{v:>5d}" for v in coords))
        part_lines.append(f"{name} {partition[k]}")
        id_lines.append(f"{name} {identity[k]}")
    for name, lines in ((LANDMARKS_FILE, lm_lines), (PARTITION_FILE, part_lines), (IDENTITY_FILE, id_lines)):
        (folder / name).write_text("\n".join(lines) + "\n", encoding="ascii", newline="\n")


def _sibling(root: Path, kind: str) -> Path:
    """A new empty hidden folder next to ``root`` (plain mkdir: honours the umask, unlike mkdtemp)."""
    path = root.parent / f".{root.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def _remove_stale_siblings(root: Path) -> None:
    """Delete temporary folders left next to ``root`` by generations that were killed."""
    for path in list(root.parent.glob(f".{root.name}.tmp-*")) + list(root.parent.glob(f".{root.name}.old-*")):
        try:
            pid = int(path.name.rsplit("-", 2)[-2])
            os.kill(pid, 0)  # still running: leave it alone
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (ValueError, IndexError, PermissionError, OSError):
            continue


def generate_demo_celeba(root: str | Path, n_images: int = 400, n_identities: int = 80, seed: int = 0) -> Path:
    """Write a procedural demo in CelebA's on-disk format into ``root`` and return ``root``.

    Deterministic for given parameters (identical bytes). When ``root`` already holds a complete
    demo made with the same parameters and generator version, nothing is regenerated. The data
    is generated in a temporary sibling folder and renamed into place, so an interrupted run never
    leaves a half-written dataset. A ``root`` that holds something other than a demo is refused.
    """
    root = Path(root)
    if n_images < 1 or n_identities < 1:
        raise ValueError(f"n_images and n_identities must be >= 1, got {n_images} and {n_identities}")
    manifest = _manifest(n_images, n_identities, seed)
    if _is_complete(root, manifest):
        logger.info("Demo CelebA already at %s (%d images, seed %d)", root, n_images, seed)
        return root
    if root.exists() and (not root.is_dir() or (any(root.iterdir()) and not (root / MANIFEST_FILE).exists())):
        raise FileExistsError(
            f"{root} exists and is not a demo dataset made by this generator; refusing to overwrite it. "
            "Choose another demo_path or remove it.")
    root.parent.mkdir(parents=True, exist_ok=True)
    logger.info("Generating demo CelebA: %d images of %d identities (seed %d) in %s",
                n_images, n_identities, seed, root)
    _remove_stale_siblings(root)
    tmp = _sibling(root, "tmp")
    try:
        _write_dataset(tmp, n_images, n_identities, seed)
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="ascii", newline="\n")
        if root.exists():  # an older or different demo: move it aside, then swap
            old = _sibling(root, "old")
            os.rename(root, old / "data")
            try:
                os.rename(tmp, root)
            except OSError:
                if not root.exists():
                    os.rename(old / "data", root)
                raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.rename(tmp, root)
            except OSError:
                if not _is_complete(root, manifest):  # lost a race to something else
                    raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root
