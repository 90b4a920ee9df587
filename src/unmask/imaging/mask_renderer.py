"""Synthetic face masks drawn from the five landmarks of an aligned face crop.

Everything is generated procedurally (no downloaded templates). A mask is described by a
:class:`MaskSpec` sampled with :func:`sample_mask_spec` from the landmarks and a seeded
``numpy.random.Generator``; :func:`rasterize_mask` turns the spec into the binary map of hidden
pixels (cheap: polygon and polyline fills only) and :func:`render_masked_face` draws the mask onto
the crop (shading, pleats/seams, fabric texture or print, anti-aliased edges).

Geometry
--------
The mask lives in a face frame built from the landmarks: ``X`` runs along the eye line in units of
the eye distance ``d`` (eyes at ``X = -0.5`` and ``+0.5``), ``Y`` runs down the face in units of
the eye-to-mouth height ``h`` (eye line at ``Y = 0``, nose tip ~``0.6``, mouth corners ``1``, chin
~``1.8``). Every style sits like a real mask: the top edge crosses the nose bridge
(``Y`` ~ 0.2-0.35 at the centre, lower towards the cheeks, so the eyes stay free), the sides reach
the cheeks near the face outline and the bottom edge wraps under the chin following the jaw.
Each spec gets a small random tilt (about the nose) and position/size jitter.

Styles: ``surgical`` (light blue/white/black..., three horizontal pleats, hems, ear loops),
``n95`` (white/grey dome, central seam, welded rim, two head straps, sometimes a valve), ``kn95``
(fold down the middle with one half in shade, pointed top and bottom, welded edges, ear loops),
``cloth`` (random colours; solid, heather, stripes, dots or gingham checks; centre seam; ear loops)
and ``bandana`` (a folded triangle tied behind the head: flat top edge across the nose, point hanging
below the chin, drapes and a print).

Contract
--------
* The binary map returned by :func:`rasterize_mask` is the mask *body* **plus** its ear loops /
  head straps: those thin lines hide face pixels too, so they count as pixels to restore.
* :func:`render_masked_face` changes exactly the pixels of that map and no other: outside it the
  output is bit-identical to the input. Edges are anti-aliased *inside* the map (a boundary pixel
  blends the mask colour with the face underneath according to its sub-pixel coverage, never less
  than 40 % mask) and the soft shadow/ambient occlusion is drawn on the mask itself (darker towards
  its outline and at the bottom, where it turns under the chin), never on the face around it.
* Rendering is deterministic for a spec: its pseudo-random texture comes from ``spec.texture_seed``.
"""

from __future__ import annotations

import colorsys
import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

__all__ = [
    "MASK_STYLES",
    "MaskSpec",
    "face_frame",
    "image_seed",
    "mask_coverage",
    "rasterize_mask",
    "render_masked_face",
    "sample_mask_spec",
    "seeded_mask_spec",
]

#: Every style :func:`sample_mask_spec` knows how to draw.
MASK_STYLES: tuple[str, ...] = ("surgical", "n95", "kn95", "cloth", "bandana")

_SHIFT = 4  # OpenCV fixed-point bits for sub-pixel polygon coordinates
_ONE = 1 << _SHIFT
_SUPERSAMPLE = 4  # anti-aliasing: coverage is computed on a 4x4 grid per pixel
_MIN_EDGE_ALPHA = 0.4
_UNIT_UNIFORM = float(np.sqrt(12.0))  # scales uniform [-0.5, 0.5) noise to unit variance


@dataclasses.dataclass(frozen=True, eq=False)
class MaskSpec:
    """Everything needed to rasterize and render one synthetic mask on a ``size`` x ``size`` crop.

    Point coordinates are float pixels of the crop (pixel centres at integers).
    """

    style: str
    size: int
    colour: tuple[int, int, int]
    secondary_colour: tuple[int, int, int]
    strap_colour: tuple[int, int, int]
    polygon: np.ndarray  # (K, 2) outline of the mask body
    straps: tuple[np.ndarray, ...]  # open polylines (L, 2): ear loops / head straps
    strap_width: int  # line thickness in pixels (>= 1)
    origin: np.ndarray  # (2,) face-frame origin (eye centre after jitter)
    axes: np.ndarray  # (2, 2): rows are the pixel vectors of one X unit and one Y unit
    tilt: float  # degrees, positive = clockwise in the image
    jitter: tuple[float, float, float, float]  # (dx [d], dy [h], width scale, height scale)
    pattern: str  # pleats, dome, fold, print (bandana) or the cloth print: solid/heather/stripes/dots/checks
    pattern_params: dict[str, Any]
    texture_seed: int

    def scaled(self, size: int) -> MaskSpec:
        """The same mask for a crop of another side length (all geometry scaled)."""
        if size == self.size:
            return self
        f = size / self.size
        return dataclasses.replace(
            self,
            size=int(size),
            polygon=self.polygon * f,
            straps=tuple(s * f for s in self.straps),
            strap_width=max(1, int(round(self.strap_width * f))),
            origin=self.origin * f,
            axes=self.axes * f,
        )

    def to_record(self) -> dict[str, Any]:
        """Flat, table-friendly summary (colours as hex)."""
        return {
            "style": self.style,
            "colour": _hex(self.colour),
            "secondary_colour": _hex(self.secondary_colour),
            "pattern": self.pattern,
            "tilt": float(self.tilt),
        }


def _hex(rgb: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb))


# --------------------------------------------------------------------------------------------------
# face frame


def face_frame(landmarks: np.ndarray) -> dict[str, Any]:
    """Face frame of a set of landmarks: eye centre, unit axes, eye distance ``d``, height ``h``.

    ``h`` is the eye-line to mouth-line distance, clamped to ``[0.6, 1.6] * d`` for odd landmarks.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (5, 2):
        raise ValueError(f"landmarks must have shape (5, 2), got {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError(f"landmarks contain NaN or infinite values: {pts.tolist()}")
    eye_c = (pts[0] + pts[1]) / 2
    mouth_c = (pts[3] + pts[4]) / 2
    ex = pts[1] - pts[0]
    d = float(np.hypot(*ex))
    if d < 1e-3:
        raise ValueError(f"degenerate landmarks: the eyes coincide: {pts.tolist()}")
    ex = ex / d
    ey = np.array([-ex[1], ex[0]])  # image y points down, so this is "down the face"
    h = float(np.dot(mouth_c - eye_c, ey))
    h = float(np.clip(h, 0.6 * d, 1.6 * d))
    nose_x = float(np.dot(pts[2] - eye_c, ex)) / d
    return {"eye_centre": eye_c, "ex": ex, "ey": ey, "d": d, "h": h, "nose_x": nose_x}


# --------------------------------------------------------------------------------------------------
# outlines in face units (X in eye distances, Y in eye-to-mouth heights)


def _outline(
    w_top: float,
    y_top_c: float,
    y_top_s: float,
    top_exp: float,
    w_bot: float,
    y_bot_s: float,
    y_bot: float,
    bot_exp: float,
    n: int = 24,
) -> np.ndarray:
    """Closed outline: top edge ``y_top_c + (y_top_s - y_top_c) |X/w_top|^top_exp``, straight sides,
    bottom edge a super-ellipse ``(1 - |X/w_bot|^k)^(1/k)`` arc from ``y_bot_s`` down to ``y_bot``
    (``bot_exp = k``; ``k <= 1.2`` gives a pointed V)."""
    xt = np.linspace(-w_top, w_top, 2 * n + 1)
    top = np.stack([xt, y_top_c + (y_top_s - y_top_c) * np.abs(xt / w_top) ** top_exp], axis=1)
    xb = np.linspace(w_bot, -w_bot, 2 * n + 1)
    r = np.clip(1.0 - np.abs(xb / w_bot) ** bot_exp, 0.0, 1.0) ** (1.0 / bot_exp)
    bottom = np.stack([xb, y_bot_s + (y_bot - y_bot_s) * r], axis=1)
    return np.concatenate([top, bottom], axis=0)


def _qbezier(p0: Sequence[float], p1: Sequence[float], p2: Sequence[float], n: int = 12) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2 = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _ear_loops(w_top: float, y_top_s: float, w_bot: float, y_bot_s: float, rng: np.random.Generator) -> list:
    ear_x = 1.55 + rng.uniform(-0.05, 0.08)
    loops = []
    for s in (-1.0, 1.0):
        top = _qbezier((s * w_top * 0.97, y_top_s + 0.06), (s * (ear_x - 0.05), y_top_s - 0.05), (s * ear_x, 0.12))
        bottom = _qbezier(
            (s * w_bot * 0.97, y_bot_s - 0.08), (s * (ear_x + 0.05), y_bot_s - 0.15), (s * (ear_x + 0.02), 0.62)
        )
        loops += [top, bottom]
    return loops


def _geometry(style: str, rng: np.random.Generator) -> tuple[np.ndarray, list, dict[str, Any]]:
    """Outline, straps (face units) and style extras for one sample."""
    u = rng.uniform
    extras: dict[str, Any] = {}
    if style == "surgical":
        w, yts, ytc = 1.22 + u(-0.05, 0.05), 0.47 + u(-0.03, 0.05), 0.30 + u(-0.03, 0.04)
        wb, ybs, yb = 1.12 + u(-0.05, 0.04), 1.42 + u(-0.05, 0.05), 2.02 + u(-0.03, 0.06)
        poly = _outline(w, ytc, yts, 1.35, wb, ybs, yb, 2.6)
        straps = _ear_loops(w, yts, wb, ybs, rng)
        extras.update(n_pleats=3, pleat_top=0.62 + u(-0.04, 0.04), pleat_bottom=1.55 + u(-0.05, 0.05))
    elif style == "n95":
        w, yts, ytc = 1.16 + u(-0.04, 0.05), 0.88 + u(-0.05, 0.05), 0.26 + u(-0.03, 0.04)
        wb, ybs, yb = 1.12 + u(-0.04, 0.04), 1.22 + u(-0.05, 0.05), 2.04 + u(-0.03, 0.05)
        poly = _outline(w, ytc, yts, 2.0, wb, ybs, yb, 2.0)
        straps = []
        for s in (-1.0, 1.0):
            straps.append(_qbezier((s * w * 0.96, 0.80), (s * 1.7, 0.55), (s * 2.6, 0.35 + u(-0.1, 0.1))))
            straps.append(_qbezier((s * wb * 0.95, 1.55), (s * 1.7, 1.75), (s * 2.6, 1.85 + u(-0.1, 0.1))))
        if rng.random() < 0.35:
            side = float(rng.choice([-1.0, 1.0]))
            extras.update(valve=(side * (0.52 + u(-0.04, 0.04)), 1.32 + u(-0.05, 0.05)), valve_r=0.24 + u(-0.02, 0.03))
    elif style == "kn95":
        w, yts, ytc = 1.2 + u(-0.05, 0.05), 0.58 + u(-0.04, 0.05), 0.21 + u(-0.02, 0.04)
        wb, ybs, yb = 1.08 + u(-0.04, 0.04), 1.3 + u(-0.05, 0.05), 2.08 + u(-0.03, 0.06)
        poly = _outline(w, ytc, yts, 1.0, wb, ybs, yb, 1.12)
        straps = _ear_loops(w, yts, wb, ybs, rng)
        extras.update(shaded_side=float(rng.choice([-1.0, 1.0])), shade=0.78 + u(-0.06, 0.06))
    elif style == "cloth":
        w, yts, ytc = 1.22 + u(-0.05, 0.05), 0.5 + u(-0.03, 0.05), 0.27 + u(-0.02, 0.04)
        wb, ybs, yb = 1.12 + u(-0.05, 0.04), 1.45 + u(-0.06, 0.06), 2.05 + u(-0.03, 0.06)
        poly = _outline(w, ytc, yts, 1.7, wb, ybs, yb, 2.0)
        straps = _ear_loops(w, yts, wb, ybs, rng)
    elif style == "bandana":
        w, yt = 1.8 + u(-0.05, 0.15), 0.34 + u(-0.03, 0.05)
        wb, ybs, yb = 1.6 + u(-0.05, 0.1), 1.25 + u(-0.1, 0.1), 2.75 + u(-0.1, 0.15)
        poly = _outline(w, yt + 0.02, yt - 0.01, 2.0, wb, ybs, yb, 1.05)
        straps = []
        extras.update(drape_freq=2.2 + u(-0.3, 0.4), drape_phase=u(0, 2 * np.pi))
    else:  # pragma: no cover - validated by the caller
        raise ValueError(style)
    extras.update(half_width=float(w), top_c=float(ytc if style != "bandana" else yt), bottom=float(yb))
    return poly, straps, extras


# --------------------------------------------------------------------------------------------------
# colours


def _jitter_rgb(rgb: Sequence[int], rng: np.random.Generator, amount: float = 10.0) -> tuple[int, int, int]:
    v = np.asarray(rgb, dtype=np.float64) + rng.normal(0.0, amount / 2, 3) + rng.normal(0.0, amount / 2)
    return tuple(int(c) for c in np.clip(np.round(v), 0, 255))  # type: ignore[return-value]


def _pick(rng: np.random.Generator, options: Sequence[tuple[tuple[int, int, int], float]]) -> tuple[int, int, int]:
    weights = np.array([w for _, w in options], dtype=np.float64)
    i = int(rng.choice(len(options), p=weights / weights.sum()))
    return options[i][0]


def _hsv_rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return (int(round(r * 255)), int(round(g * 255)), int(round(b * 255)))


def _colours(style: str, rng: np.random.Generator) -> tuple[tuple, tuple, tuple, str, dict[str, Any]]:
    """(colour, secondary colour, strap colour, pattern, pattern params)."""
    white = (236, 238, 238)
    params: dict[str, Any] = {}
    if style == "surgical":
        base = _pick(
            rng,
            [((150, 200, 228), 0.55), (white, 0.2), ((42, 43, 48), 0.12), ((168, 214, 196), 0.07),
             ((236, 188, 204), 0.06)],
        )
        colour = _jitter_rgb(base, rng)
        secondary = _jitter_rgb(white if base != white else (214, 218, 222), rng, 6)
        strap = _jitter_rgb(white if base != (42, 43, 48) else (40, 40, 44), rng, 6)
        return colour, secondary, strap, "pleats", params
    if style == "n95":
        base = _pick(rng, [((238, 238, 234), 0.5), ((214, 214, 212), 0.25), ((232, 226, 210), 0.25)])
        colour = _jitter_rgb(base, rng, 6)
        secondary = _jitter_rgb((150, 150, 152), rng, 10)  # valve
        strap = _pick(
            rng, [((230, 205, 70), 0.3), ((70, 110, 190), 0.25), ((235, 235, 235), 0.25), ((220, 120, 50), 0.2)]
        )
        return colour, secondary, _jitter_rgb(strap, rng, 8), "dome", params
    if style == "kn95":
        base = _pick(
            rng,
            [((240, 240, 238), 0.45), ((38, 38, 42), 0.2), ((150, 150, 155), 0.12), ((160, 200, 230), 0.12),
             ((236, 190, 205), 0.11)],
        )
        colour = _jitter_rgb(base, rng, 6)
        return colour, colour, _jitter_rgb(colour, rng, 6), "fold", params
    if style == "cloth":
        colour = _hsv_rgb(rng.random(), rng.uniform(0.15, 0.85), rng.uniform(0.2, 0.92))
        if rng.random() < 0.5:
            secondary = _pick(rng, [((238, 236, 230), 0.6), ((30, 30, 32), 0.4)])
        else:
            secondary = _hsv_rgb(rng.random(), rng.uniform(0.2, 0.9), rng.uniform(0.3, 0.95))
        pattern = str(rng.choice(["solid", "heather", "stripes", "dots", "checks"], p=[0.2, 0.15, 0.25, 0.2, 0.2]))
        params.update(
            period=float(rng.uniform(0.12, 0.3)),  # in eye distances
            angle=float(rng.choice([0.0, 90.0, 45.0, -45.0]) + rng.uniform(-8, 8)),
            radius=float(rng.uniform(0.22, 0.38)),  # dots, fraction of the period
        )
        strap = colour if rng.random() < 0.7 else (30, 30, 32)
        return colour, _jitter_rgb(secondary, rng, 6), _jitter_rgb(strap, rng, 6), pattern, params
    if style == "bandana":
        colour = _jitter_rgb(
            _pick(
                rng,
                [((178, 30, 36), 0.35), ((30, 42, 92), 0.25), ((26, 26, 28), 0.15), ((44, 112, 64), 0.1),
                 ((44, 84, 164), 0.15)],
            ),
            rng,
        )
        secondary = _jitter_rgb((236, 232, 222), rng, 6)
        params.update(period=float(rng.uniform(0.28, 0.42)), angle=float(rng.uniform(-20, 20)))
        return colour, secondary, colour, "print", params
    raise ValueError(style)  # pragma: no cover


# --------------------------------------------------------------------------------------------------
# public API


def sample_mask_spec(
    landmarks: np.ndarray,
    size: int,
    rng: np.random.Generator,
    styles: Sequence[str] | None = None,
) -> MaskSpec:
    """Sample a random mask for a ``size`` x ``size`` crop whose landmarks are ``landmarks``.

    ``styles`` restricts the style drawn (uniformly) from; default :data:`MASK_STYLES`.
    Raises ``ValueError`` for unknown styles or degenerate landmarks.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    choices = list(MASK_STYLES if styles is None else styles)
    if not choices:
        raise ValueError(f"styles must name at least one of {list(MASK_STYLES)}")
    unknown = [s for s in choices if s not in MASK_STYLES]
    if unknown:
        raise ValueError(f"unknown mask style(s) {unknown}; valid styles are {list(MASK_STYLES)}")
    frame = face_frame(landmarks)
    style = str(choices[int(rng.integers(len(choices)))])

    tilt = float(rng.uniform(-5.0, 5.0))
    dx, dy = float(rng.uniform(-0.05, 0.05)), float(rng.uniform(-0.05, 0.05))
    sx, sy = float(rng.uniform(0.94, 1.06)), float(rng.uniform(0.96, 1.05))
    poly_u, straps_u, extras = _geometry(style, rng)
    colour, secondary, strap_colour, pattern, params = _colours(style, rng)
    params.update(extras)

    d, h = frame["d"], frame["h"]
    theta = np.deg2rad(tilt)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    ex, ey = rot @ frame["ex"], rot @ frame["ey"]
    axes = np.stack([ex * d * sx, ey * h * sy])
    # follow a turned head a little: shift towards the nose
    shift_x = dx + 0.4 * float(np.clip(frame["nose_x"], -0.4, 0.4))
    origin = frame["eye_centre"] + shift_x * d * frame["ex"] + dy * h * frame["ey"]
    # tilt about the nose tip rather than the eye centre
    pivot = frame["eye_centre"] + 0.6 * h * frame["ey"]
    origin = pivot + rot @ (origin - pivot)

    def to_px(points: np.ndarray) -> np.ndarray:
        return (origin + np.asarray(points) @ axes).astype(np.float32)

    return MaskSpec(
        style=style,
        size=int(size),
        colour=colour,
        secondary_colour=secondary,
        strap_colour=strap_colour,
        polygon=to_px(poly_u),
        straps=tuple(to_px(s) for s in straps_u),
        strap_width=max(1, int(round((0.055 if style == "n95" else 0.032) * d))),
        origin=origin.astype(np.float64),
        axes=axes.astype(np.float64),
        tilt=tilt,
        jitter=(dx, dy, sx, sy),
        pattern=pattern,
        pattern_params=params,
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )


def seeded_mask_spec(landmarks: np.ndarray, size: int, spec_seed: int, styles: Sequence[str]) -> MaskSpec:
    """The mask a seed stands for: :func:`sample_mask_spec` with ``numpy.random.default_rng(spec_seed)``.

    The masks pipeline (stored masks, ``mask_metadata.spec_seed``) and training's fresh masks both
    draw through here, so one seed means one mask everywhere.
    """
    return sample_mask_spec(landmarks, size, np.random.default_rng(spec_seed), list(styles))


def _fixed(points: np.ndarray, scale: float = 1.0) -> np.ndarray:
    # pixel centre x maps to (x + 0.5) * scale - 0.5 at ``scale`` times the resolution
    p = (np.asarray(points, dtype=np.float64) + 0.5) * scale - 0.5
    return np.round(p * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _draw_body(canvas: np.ndarray, spec: MaskSpec, scale: float = 1.0, offset: np.ndarray | None = None) -> None:
    pts = spec.polygon if offset is None else spec.polygon - offset
    cv2.fillPoly(canvas, [_fixed(pts, scale)], 1, lineType=cv2.LINE_8, shift=_SHIFT)


def _draw_straps(canvas: np.ndarray, spec: MaskSpec, scale: float = 1.0, offset: np.ndarray | None = None) -> None:
    if not spec.straps:
        return
    lines = [_fixed(s if offset is None else s - offset, scale) for s in spec.straps]
    thickness = max(1, int(round(spec.strap_width * scale)))
    cv2.polylines(canvas, lines, False, 1, thickness=thickness, lineType=cv2.LINE_8, shift=_SHIFT)


def rasterize_mask(spec: MaskSpec, size: int | None = None) -> np.ndarray:
    """Binary map (``size`` x ``size`` uint8 in {0, 1}) of every pixel the mask hides.

    It is the filled body polygon plus the ear loops / head straps drawn as ``spec.strap_width``
    pixel lines (they hide the face too). ``size`` defaults to ``spec.size``; another size scales
    the geometry. Exactly the pixels :func:`render_masked_face` changes.
    """
    size = spec.size if size is None else int(size)
    spec = spec.scaled(size)
    out = np.zeros((size, size), dtype=np.uint8)
    _draw_body(out, spec)
    _draw_straps(out, spec)
    return out


def image_seed(seed: int, image_id: str, variant: int = 0) -> int:
    """Per-image seed (0 <= value < 2**63) derived from the run seed, the image id and a variant.

    Numeric ids (CelebA's ``000001``) use ``[seed, int(id)]`` as entropy; other ids a stable
    BLAKE2 hash of the id (Python's ``hash`` is salted per process, so it is not used). Variant 0
    is the mask the masks pipeline stores; variant ``k > 0`` is another, independent mask for the
    same face (training draws a fresh one per epoch).
    """
    image_id = str(image_id)
    key = int(image_id) if image_id.isdigit() else int.from_bytes(
        hashlib.blake2b(image_id.encode("utf-8"), digest_size=8).digest(), "little"
    )
    entropy = [int(seed), key] if variant == 0 else [int(seed), key, int(variant)]
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))


def mask_coverage(mask: np.ndarray) -> float:
    """Fraction of pixels covered by a binary mask (any non-zero value counts as covered)."""
    m = np.asarray(mask)
    if m.size == 0:
        return 0.0
    return float(np.count_nonzero(m)) / float(m.size)


def _coverage(spec: MaskSpec, x0: int, y0: int, w: int, h: int, straps: bool) -> np.ndarray:
    """Sub-pixel coverage of the body or the straps on a ROI, by supersampling: uint8 counts of
    covered sub-pixels, 0 to ``_SUPERSAMPLE**2`` (divide by that for the fraction)."""
    ss = _SUPERSAMPLE
    canvas = np.zeros((h * ss, w * ss), dtype=np.uint8)
    offset = np.array([x0, y0], dtype=np.float64)
    (_draw_straps if straps else _draw_body)(canvas, spec, float(ss), offset)
    canvas *= np.uint8(ss * ss)
    # the mean of an ss x ss block of 0 / ss**2 values is the exact count: no float canvas needed;
    # two 2x area reductions give the same counts as one 4x, 6x faster (OpenCV's SIMD 2x path)
    half = cv2.resize(canvas, (2 * w, 2 * h), interpolation=cv2.INTER_AREA)
    return cv2.resize(half, (w, h), interpolation=cv2.INTER_AREA)


def _shading(spec: MaskSpec, X: np.ndarray, Y: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Luminance multiplier and a 0..1 'secondary colour' weight for the mask body."""
    p = spec.pattern_params
    d_px = float(np.hypot(*spec.axes[0]))
    half_w = p["half_width"]
    top_c, bottom = p["top_c"], p["bottom"]
    xn = np.clip(X / half_w, -1.2, 1.2)
    # the mask wraps around the face: the cheeks turn away from the light
    lum = 1.0 - 0.28 * xn**2
    # light from above: darker towards the chin and under it
    yv = np.clip((Y - top_c) / max(bottom - top_c, 1e-3), 0.0, 1.0)
    lum *= 1.0 - 0.22 * yv**2.2
    # bulge over the nose
    lum *= 1.0 + 0.08 * np.exp(-(X**2) / 0.06 - (Y - 0.7) ** 2 / 0.12)
    # soft contact shadow / ambient occlusion along the outline
    edge = dist / max(0.12 * d_px, 1.0)
    lum *= 1.0 - 0.22 * np.exp(-edge)
    second = np.zeros_like(X)
    style = spec.style
    if style == "surgical":
        n, y0, y1 = p["n_pleats"], p["pleat_top"], p["pleat_bottom"]
        # pleats bunch up towards the side bindings
        yc = (y0 + y1) / 2
        squeeze = 1.0 - 0.25 * xn**2
        t = ((Y - yc) / squeeze + (y1 - y0) / 2) / (y1 - y0) * n
        inside = (t > 0) & (t < n)
        frac = t - np.floor(t)
        lum *= np.where(inside, 1.04 - 0.14 * frac**1.5, 1.0)
        pleat_px = (y1 - y0) / n * float(np.hypot(*spec.axes[1]))
        gap = (1.0 - frac) * pleat_px  # pixels above the fold line at the bottom of a pleat
        lum *= np.where(inside, 1.0 - 0.22 * np.exp(-(gap**2) / 1.5), 1.0)
        lum *= np.where(inside & (frac < 0.12), 1.06, 1.0)  # highlight where the next pleat starts
        # hems: a border band with a stitch line
        band = max(0.09 * d_px, 1.0)
        hem = dist < band
        lum *= np.where(hem, 1.03, 1.0)
        stitch = np.abs(dist - band) < max(0.35, 0.012 * d_px)
        lum *= np.where(stitch, 0.9, 1.0)
    elif style == "n95":
        lum *= 1.0 - 0.12 * (xn**2) * 1.0
        seam = np.exp(-((X * d_px) ** 2) / max(0.6, (0.012 * d_px) ** 2))
        lum *= 1.0 - 0.22 * seam * (Y > top_c + 0.08)
        rim = max(0.08 * d_px, 1.0)
        lum *= np.where(dist < rim, 1.06, 1.0)
        weld = (np.abs(dist - rim) < max(0.4, 0.012 * d_px)) & (np.sin((X * 9 + Y * 9) * np.pi) > -0.2)
        lum *= np.where(weld, 0.88, 1.0)
        if "valve" in p:
            vx, vy = p["valve"]
            r_px = np.hypot((X - vx) * d_px, (Y - vy) * float(np.hypot(*spec.axes[1])))
            vr = p["valve_r"] * d_px
            second = (r_px < vr).astype(np.float32)
            ring = np.abs(r_px - 0.72 * vr) < max(0.5, 0.05 * vr)
            lum = np.where(r_px < vr, 1.0 - 0.25 * (r_px / vr) ** 2, lum)
            lum = np.where(ring, lum * 0.75, lum)
    elif style == "kn95":
        shaded = (X * p["shaded_side"]) > 0
        lum *= np.where(shaded, p["shade"], 1.02)
        seam = np.abs(X * d_px) < max(0.5, 0.012 * d_px)
        lum *= np.where(seam, 0.8, 1.0)
        rim = max(0.07 * d_px, 1.0)
        weld = (np.abs(dist - rim) < max(0.4, 0.01 * d_px)) & (np.sin(Y * 40.0 + X * 40.0) > 0.0)
        lum *= np.where(weld, 0.86, 1.0)
    elif style == "cloth":
        u = np.arcsin(np.clip(X / (half_w * 1.15), -0.999, 0.999)) * half_w  # fabric wraps the face
        period = p["period"]
        a = np.deg2rad(p["angle"])
        h_over_d = float(np.hypot(*spec.axes[1])) / d_px
        v = Y * h_over_d
        c1 = (u * np.cos(a) + v * np.sin(a)) / period
        c2 = (-u * np.sin(a) + v * np.cos(a)) / period
        if spec.pattern == "stripes":
            second = (np.sin(2 * np.pi * c1) > 0.2).astype(np.float32)
        elif spec.pattern == "dots":
            r = np.hypot(c1 - np.round(c1), c2 - np.round(c2))
            second = np.clip((p["radius"] - r) * 8.0 + 0.5, 0.0, 1.0)
        elif spec.pattern == "checks":
            s1 = (np.sin(2 * np.pi * c1) > 0).astype(np.float32)
            s2 = (np.sin(2 * np.pi * c2) > 0).astype(np.float32)
            second = 1.0 - 0.5 * (s1 + s2)
        seam = np.abs(X * d_px) < max(0.5, 0.01 * d_px)
        lum *= np.where(seam, 0.85, 1.0)
    elif style == "bandana":
        f = p["drape_freq"]
        hang = np.clip(Y - 0.6, 0.0, None)
        wave = np.sin(2 * np.pi * f * X / (0.7 + 0.6 * hang) + p["drape_phase"])
        lum *= 1.0 - np.clip(0.22 * hang, 0.0, 0.25) * (0.5 + 0.5 * wave) ** 2
        period = p["period"]
        a = np.deg2rad(p["angle"])
        h_over_d = float(np.hypot(*spec.axes[1])) / d_px
        c1 = (X * np.cos(a) + Y * h_over_d * np.sin(a)) / period
        c2 = (-X * np.sin(a) + Y * h_over_d * np.cos(a)) / period
        # paisley-ish print: dots on one lattice, rings on the offset lattice
        r1 = np.hypot(c1 - np.round(c1), c2 - np.round(c2))
        r2 = np.hypot(c1 + 0.5 - np.round(c1 + 0.5), c2 + 0.5 - np.round(c2 + 0.5))
        dots = np.clip((0.12 - r1) * 10 + 0.5, 0, 1)
        rings = np.clip((0.05 - np.abs(r2 - 0.2)) * 12 + 0.5, 0, 1)
        # a printed border along the hanging edges (not along the folded top edge)
        bw = max(0.7, 0.03 * d_px)
        border = (np.abs(dist - 0.14 * d_px) < bw) & (Y > p["top_c"] + 0.3)
        inner = dist < 0.14 * d_px - bw
        second = np.where(inner, 0.0, np.maximum(dots, rings))
        second = np.maximum(second, border.astype(np.float32))
    return lum.astype(np.float32), second.astype(np.float32)


def render_masked_face(image: np.ndarray, spec: MaskSpec) -> np.ndarray:
    """Draw the mask described by ``spec`` onto ``image`` (``size`` x ``size`` x 3 uint8 RGB).

    Returns a new array; only the pixels of :func:`rasterize_mask` ``(spec, size)`` differ from
    the input, all others are bit-identical.
    """
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or img.shape[0] != img.shape[1]:
        raise ValueError(f"image must be a square HxWx3 uint8 RGB array, got {img.shape} {img.dtype}")
    size = img.shape[0]
    spec = spec.scaled(size)
    mask = rasterize_mask(spec, size)
    out = img.copy()
    x0, y0, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return out
    # grow the ROI by 1 px so the distance transform sees the outline (the crop border is not one)
    x1, y1 = min(size, x0 + w + 1), min(size, y0 + h + 1)
    x0, y0 = max(0, x0 - 1), max(0, y0 - 1)
    w, h = x1 - x0, y1 - y0
    # Everything below works on the list of masked pixels only (about half of the ROI, whose
    # corners and the space between the ear loops are face): 3x faster than whole-ROI arrays.
    idx = np.flatnonzero(mask[y0:y1, x0:x1])
    ys, xs = np.divmod(idx, w)

    body = np.zeros((h, w), dtype=np.uint8)
    _draw_body(body, spec, 1.0, np.array([x0, y0], dtype=np.float64))
    dist = cv2.distanceTransform(body, cv2.DIST_L2, 3).take(idx)

    # face-frame coordinates of every masked pixel
    inv = np.linalg.inv(spec.axes.T).astype(np.float32)
    rx = (xs + x0).astype(np.float32) - np.float32(spec.origin[0])
    ry = (ys + y0).astype(np.float32) - np.float32(spec.origin[1])
    X = inv[0, 0] * rx + inv[0, 1] * ry
    Y = inv[1, 0] * rx + inv[1, 1] * ry

    lum, second = _shading(spec, X, Y, dist)
    rng = np.random.default_rng(spec.texture_seed)
    d_px = float(np.hypot(*spec.axes[0]))
    # zero-mean, unit-variance uniform noise: 4x cheaper to draw than normal, and once blurred
    # into grain it is as good as Gaussian
    field = (rng.random((h, w), dtype=np.float32) - np.float32(0.5)) * np.float32(_UNIT_UNIFORM)
    noise = field.take(idx)
    if spec.style == "cloth" and spec.pattern == "heather":
        grain = cv2.GaussianBlur(field, (0, 0), 0.8).take(idx)
        second = np.clip(grain * 0.6 + 0.2, 0.0, 1.0) * 0.5
        lum *= 1.0 + 0.05 * noise
    else:
        amp = {"surgical": 0.025, "n95": 0.035, "kn95": 0.02, "cloth": 0.045, "bandana": 0.04}[spec.style]
        grain = cv2.GaussianBlur(field, (0, 0), 0.7).take(idx) if d_px > 20 else noise * 0.5
        lum *= 1.0 + amp * grain
    colour = np.asarray(spec.colour, dtype=np.float32)
    colour2 = np.asarray(spec.secondary_colour, dtype=np.float32)
    # (colour + (colour2 - colour) * second) * lum, in place: (N, 3) temporaries are the cost here
    rgb = np.multiply.outer(second, colour2 - colour)
    rgb += colour
    rgb *= lum[:, None]

    inv_ss2 = np.float32(1.0 / _SUPERSAMPLE**2)
    alpha = _coverage(spec, x0, y0, w, h, straps=False).take(idx) * inv_ss2
    if spec.straps:
        a_strap = _coverage(spec, x0, y0, w, h, straps=True).take(idx) * inv_ss2
        strap_lum = (1.0 - 0.2 * np.clip(np.abs(X) / 2.0, 0, 1)) * (1.0 + 0.03 * noise)
        strap_rgb = np.multiply.outer(strap_lum, np.asarray(spec.strap_colour, dtype=np.float32))
        on_strap = a_strap > 0
        if on_strap.any():
            # straps over the body: un-premultiply the two layers
            a_s, a_b = a_strap[on_strap], alpha[on_strap]
            weight_b = a_b * (1.0 - a_s)
            total = a_s + weight_b
            rgb[on_strap] = (strap_rgb[on_strap] * a_s[:, None] + rgb[on_strap] * weight_b[:, None]) / total[:, None]
            alpha[on_strap] = total
        # a pixel of the binary map with no sub-pixel coverage at all takes its own layer's colour
        bare = ~on_strap & (alpha <= 1e-3) & ~body.take(idx).astype(bool)
        rgb[bare] = strap_rgb[bare]
    np.clip(alpha, _MIN_EDGE_ALPHA, 1.0, out=alpha)
    pixels = out.reshape(-1, 3)
    where = (ys + y0) * size + (xs + x0)
    face = pixels.take(where, axis=0).astype(np.float32)
    # face + (rgb - face) * alpha, rounded, in place
    rgb -= face
    rgb *= alpha[:, None]
    rgb += face
    np.rint(rgb, out=rgb)
    np.clip(rgb, 0, 255, out=rgb)
    pixels[where] = rgb.astype(np.uint8)
    return out
