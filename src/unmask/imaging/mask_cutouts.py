"""Real face masks cut out of photos of people wearing them, for a test the synthetic masks cannot bias.

The project's masks come from one generator (:mod:`unmask.imaging.mask_renderer`); a model trained
on them may have learnt that generator rather than masks. This module supplies the pieces of a proxy
test that shares nothing with it: segment the mask out of a real photo of a masked face, keep it as
an RGBA cut-out in the canonical face frame of :mod:`unmask.imaging.alignment`, and paste it onto a
clean aligned face whose ground truth is known.

Frame
-----
Everything here lives in the canonical crop of :func:`unmask.imaging.alignment.align_face`
(:data:`~unmask.imaging.alignment.CANONICAL_TEMPLATE`: eyes at y = 0.444 of the side, nose tip
0.594, mouth corners 0.700). A cut-out made from one aligned crop therefore fits any other aligned
crop after a resize (:func:`paste_cutout`), optionally through the similarity that takes the
template onto that face's own landmarks and a small random jitter (:func:`paste_matrix`).

Segmentation (:func:`segment_mask`)
-----------------------------------
1. A skin model (robust mean and spread of L*, a*, b*) from the upper face: forehead, the bridge of
   the nose between the eyes (not under the eyes: masks are often worn up to the lower eyelids),
   outliers (hair, brows, glasses) dropped.
2. Below the eyes, in the zone where a mask can sit (cheek to cheek, from the lower eyelids to the
   bottom of the crop), pixels far from that model are mask candidates. A face whose skin above the
   upper lip and on the chin (not the lips: they are redder than skin) looks like the upper face's
   is bare, and rejected.
3. ``cv2.grabCut`` refines them: sure background = the upper face and everything outside the zone;
   sure foreground = the pixels above the lip and on the chin that are unlike the skin; probable
   foreground = the other candidates and the rest of that area; probable background = the rest of
   the zone. Pixels outside the photo (the crop of a tight photo reaches past its border) are sure
   background, and grabCut runs on the photo's bounding box only, so that the reflected border
   does not train its colour models.
4. The largest component, holes filled, the outline smoothed.
5. Rejected unless plausible (:class:`SegmentationRules`): area 12-55 % of the crop, covers the
   mouth, clear of the eye centres, compact (solidity), wide enough at the mouth, colour clearly
   unlike the skin, not cut by the photo's border or the crop's edge above the chin (a mask that
   runs off the photo), not cut off under the chin for more than 30 % of its outline, not
   wide on the crop's bottom row (a segmentation that leaked into the neck or the clothes).

Measured on the 1,837 ``with_mask`` photos of the shared development set (see
``benchmarks/bench_real_mask_proxy.py``): a face is found in 1,073, a mask accepted in 345 (most
rejections are tight face crops whose mask runs off the photo); by eye, about 5-7 % of the accepted
cut-outs are wrong (half the mask missed; a hand, a microphone, hair or clothes taken for part of
it; a mask pulled down under the chin) and some 10 % more have a flat side where the photo ended.

Cut-outs and pasting
--------------------
:func:`cutout_rgba` stores the crop's pixels with alpha = the mask, softened to 60 % on its
outermost pixel ring. :func:`paste_cutout` resizes it (area interpolation, premultiplied alpha),
warps it, and composites it onto a face; like the project's renderer it changes exactly the pixels
of the returned map and no other: pixels the warped alpha barely touches (< 20 %) are left alone,
the others get at least 40 % of the mask.

Splits
------
:func:`split_of` puts a photo into ``test`` or ``train`` by a hash of its file name, and
:func:`group_near_duplicates` lets a caller give near-identical photos (the same face photo under two
names or crops) one split, so the two halves share no photo.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import cv2
import numpy as np

from unmask.imaging.alignment import (
    CANONICAL_TEMPLATE,
    estimate_alignment,
    invert_alignment,
    warp_to_crop,
)

__all__ = [
    "CUTOUT_SIZE",
    "SEGMENTATION_VERSION",
    "SegmentationResult",
    "SegmentationRules",
    "assign_cutouts",
    "contact_sheet",
    "cutout_rgba",
    "dhash",
    "face_hashes",
    "group_near_duplicates",
    "jitter_matrix",
    "paste_cutout",
    "paste_matrix",
    "segment_mask",
    "skin_distance",
    "split_of",
    "valid_region",
]

#: Side of the stored cut-outs (canonical frame), pixels.
CUTOUT_SIZE = 128
#: Bump when the segmentation changes, so cached cut-outs are made again.
SEGMENTATION_VERSION = 3

# canonical landmarks, normalised (0..1 of the side)
_LEFT_EYE, _RIGHT_EYE = CANONICAL_TEMPLATE[0], CANONICAL_TEMPLATE[1]
_NOSE = CANONICAL_TEMPLATE[2]
_MOUTH_L, _MOUTH_R = CANONICAL_TEMPLATE[3], CANONICAL_TEMPLATE[4]
_MOUTH_C = (_MOUTH_L + _MOUTH_R) / 2
_EYE_Y = float(_LEFT_EYE[1])

# skin samples of the upper face: (u0, u1, v0, v1) rectangles, normalised
# (not under the eyes: many masks are worn up to the lower eyelids)
_SKIN_BOXES = (
    (0.40, 0.60, 0.28, 0.37),  # forehead
    (0.45, 0.55, 0.39, 0.47),  # bridge of the nose, between the eyes
)


@dataclasses.dataclass(frozen=True)
class SegmentationRules:
    """What :func:`segment_mask` accepts; lengths and positions are fractions of the crop side."""

    #: The mask may start this far below the eye line (the nose bridge), no higher.
    zone_top: float = 0.02
    #: Half-width of the zone, about the face's centre line (cheek to cheek, with the ear loops' roots).
    zone_half_width: float = 0.42
    #: Skin distance (in units of the skin model's spread) above which a pixel looks like a mask.
    candidate_distance: float = 3.0
    #: Median skin distance around the mouth below which the mouth counts as bare (nothing to segment).
    min_core_distance: float = 2.5
    #: Pixels around the mouth this far from the skin are sure foreground for grabCut.
    core_sure_distance: float = 1.5
    min_area: float = 0.12
    max_area: float = 0.55
    #: Each of the mouth corners and centre must be covered to this fraction (a small disc each).
    min_mouth_cover: float = 0.9
    #: No mask pixel within this distance of an eye centre.
    eye_clearance: float = 0.02
    #: Mask area over the area of its convex hull.
    min_solidity: float = 0.85
    #: Mask width on the mouth's row.
    min_width_at_mouth: float = 0.36
    #: Share of the mask's outline on the photo's border, the crop's edge or the zone's sides, above
    #: ``bottom_from`` (a mask cut off there is not a whole mask, or the segmentation leaked).
    max_edge_contact: float = 0.03
    #: Below this height the outline may run along the crop's bottom edge or the photo's border for
    #: ``max_bottom_contact`` of its length: under the chin (~0.91) a mask is cut off a little, no more.
    bottom_from: float = 0.86
    max_bottom_contact: float = 0.3
    #: Mask width on the crop's bottom row (a segmentation that leaked into the clothes is wide there).
    max_bottom_width: float = 0.45
    #: Share of the mask's outline on the zone's top line (a segmentation that runs into the eyes).
    max_top_contact: float = 0.12
    #: Share of the mask's pixels that look like skin (distance below 1.5).
    max_skin_like: float = 0.25
    #: Median skin distance of the mask's pixels.
    min_median_distance: float = 4.0
    #: Minimum skin samples (valid pixels in the upper-face boxes) for a skin model.
    min_skin_samples: int = 40


@dataclasses.dataclass(frozen=True, eq=False)
class SegmentationResult:
    """``mask`` (HxW bool) when accepted, else None; ``reason`` is ``"ok"`` or why it was rejected."""

    mask: np.ndarray | None
    reason: str
    stats: dict[str, float]

    @property
    def accepted(self) -> bool:
        return self.mask is not None


# --------------------------------------------------------------------------------------------------
# splits and duplicates


def split_of(name: str, test_fraction: float = 0.5, salt: str = "unmask-real-masks") -> str:
    """``"test"`` or ``"train"`` for a photo, from a SHA-256 of ``salt`` and its file name only."""
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    digest = hashlib.sha256(f"{salt}:{name}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2.0**64 < test_fraction else "train"


def dhash(image: np.ndarray, bits: int = 16) -> np.ndarray:
    """Difference hash: the signs of ``bits`` x ``bits`` horizontal brightness steps, packed (uint8 array)."""
    img = np.asarray(image)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    small = cv2.resize(grey, (bits + 1, bits), interpolation=cv2.INTER_AREA).astype(np.int16)
    return np.packbits((small[:, 1:] > small[:, :-1]).ravel())


def face_hashes(crop: np.ndarray) -> list[np.ndarray]:
    """:func:`dhash` of an aligned crop's face (eyes to chin, cheek to cheek) and of its mirror image.

    The part of the crop the photo's framing decides (background, reflected border) is left out, so
    two photos of one face photo, cropped or resized differently, hash alike (a few bits of 256
    apart; different faces measured 29 and more).
    """
    size = crop.shape[0]
    face = crop[int(0.3 * size):int(0.95 * size), int(0.25 * size):int(0.75 * size)]
    return [dhash(face), dhash(face[:, ::-1])]


def group_near_duplicates(hashes: Sequence[Sequence[np.ndarray]], max_distance: int = 20) -> list[int]:
    """Group items whose hashes come within ``max_distance`` bits of each other (union-find).

    ``hashes[i]`` holds item ``i``'s packed hashes (:func:`dhash`, all of one length; e.g. one per
    face and its mirror image); two items are joined when any hash of one is that close to any hash
    of the other. Returns a group number per item: the index of the group's first item.
    """
    owner = [i for i in range(len(hashes)) for _ in hashes[i]]
    values = [np.asarray(h, np.uint8) for hs in hashes for h in hs]
    parent = list(range(len(hashes)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if values:
        table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)
        packed = np.stack(values)
        for a in range(len(packed) - 1):
            distance = table[np.bitwise_xor(packed[a + 1:], packed[a])].sum(axis=1)
            for b in np.flatnonzero(distance <= max_distance) + a + 1:
                ra, rb = find(owner[a]), find(owner[int(b)])
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    return [find(i) for i in range(len(hashes))]


# --------------------------------------------------------------------------------------------------
# segmentation


def valid_region(image_shape: Sequence[int], matrix: np.ndarray, size: int) -> np.ndarray:
    """Pixels of the ``size`` crop that the photo covers (HxW bool), for the image->crop ``matrix``."""
    h, w = int(image_shape[0]), int(image_shape[1])
    inside = warp_to_crop(np.full((h, w, 3), 255, np.uint8), matrix, size, border="constant")
    return inside.min(axis=2) >= 250


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised coordinates (u, v) of the pixel centres of a ``size`` crop."""
    c = (np.arange(size, dtype=np.float64) + 0.5) / size
    return np.meshgrid(c, c)


def _box(size: int, u0: float, u1: float, v0: float, v1: float) -> tuple[slice, slice]:
    return slice(int(round(v0 * size)), int(round(v1 * size))), slice(int(round(u0 * size)), int(round(u1 * size)))


def skin_distance(crop: np.ndarray, valid: np.ndarray | None = None, min_samples: int = 40
                  ) -> tuple[np.ndarray | None, dict[str, float]]:
    """Per-pixel distance of an aligned crop's colours from the skin of its upper face.

    The skin model is the robust mean and spread of L*, a*, b* (OpenCV 8-bit Lab, lightly
    blurred) over forehead, nose bridge and under the eyes; samples more than 2.5 robust standard
    deviations from the median in any channel (hair, brows, frames) are dropped. The distance is
    ``sqrt(da^2 + db^2 + (dL / 2)^2)`` in units of the model's spread, with floors on the spreads
    (2.5 for a*, b*; 8 for L*) so that a very even skin does not turn noise into distance; L* counts
    half because shading changes it across a face. Returns ``(None, stats)`` with fewer than
    ``min_samples`` valid skin samples.
    """
    size = crop.shape[0]
    valid = np.ones(crop.shape[:2], bool) if valid is None else valid
    lab = cv2.cvtColor(cv2.GaussianBlur(crop, (0, 0), 0.8), cv2.COLOR_RGB2LAB).astype(np.float32)
    samples = np.concatenate([lab[_box(size, *b)][valid[_box(size, *b)]] for b in _SKIN_BOXES])
    if len(samples) < min_samples:
        return None, {"skin_samples": float(len(samples))}
    median = np.median(samples, axis=0)
    mad = np.median(np.abs(samples - median), axis=0) * 1.4826 + 1e-3
    kept = samples[(np.abs(samples - median) <= 2.5 * mad).all(axis=1)]
    if len(kept) < min_samples // 2:
        return None, {"skin_samples": float(len(kept))}
    mean = np.median(kept, axis=0)
    spread = np.median(np.abs(kept - mean), axis=0) * 1.4826
    spread = np.maximum(spread, np.array([6.0, 2.0, 2.0], np.float32))
    z = (lab - mean) / spread
    distance = np.sqrt(z[..., 1] ** 2 + z[..., 2] ** 2 + (z[..., 0] / 2) ** 2)
    return distance, {"skin_samples": float(len(kept)), "skin_L": float(mean[0]), "skin_a": float(mean[1]),
                      "skin_b": float(mean[2])}


def _disc(size: int, centre: np.ndarray, radius: float) -> np.ndarray:
    u, v = _grid(size)
    return (u - centre[0]) ** 2 + (v - centre[1]) ** 2 <= radius**2


def _largest_component(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4)
    if n <= 1:
        return np.zeros_like(mask, bool)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = mask
    flood = padded.copy()
    cv2.floodFill(flood, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 1)
    return mask | (flood[1:-1, 1:-1] == 0)


def _outline(mask: np.ndarray) -> np.ndarray:
    """The mask's pixels with a 4-neighbour outside it (or on the crop's edge)."""
    m = mask.astype(np.uint8)
    padded = cv2.copyMakeBorder(m, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)))[1:-1, 1:-1]
    return mask & (eroded == 0)


def segment_mask(crop: np.ndarray, valid: np.ndarray | None = None,
                 rules: SegmentationRules = SegmentationRules(), grabcut_iterations: int = 5
                 ) -> SegmentationResult:
    """Segment the face mask in an aligned crop (HxWx3 uint8 RGB, canonical frame); see the module doc.

    ``valid`` marks the crop's pixels that come from the photo (:func:`valid_region`); by default
    all of them. Deterministic: grabCut's k-means is seeded through OpenCV's global RNG, which is
    reset here.
    """
    crop = np.ascontiguousarray(crop)
    if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3 or crop.shape[0] != crop.shape[1]:
        raise ValueError(f"crop must be a square HxWx3 uint8 image, got {crop.dtype} {crop.shape}")
    size = crop.shape[0]
    valid = np.ones((size, size), bool) if valid is None else np.asarray(valid, bool)
    if valid.shape != (size, size):
        raise ValueError(f"valid has shape {valid.shape}, expected {(size, size)}")
    r = rules
    distance, stats = skin_distance(crop, valid, r.min_skin_samples)
    if distance is None:
        return SegmentationResult(None, "no skin model (upper face outside the photo)", stats)
    u, v = _grid(size)
    zone = (v >= _EYE_Y + r.zone_top) & (np.abs(u - 0.5) <= r.zone_half_width)
    candidate = (distance > r.candidate_distance) & zone & valid
    # around the mouth but not the lips themselves (redder than skin even on a bare face): above
    # the upper lip and on the chin
    philtrum = (np.abs(u - 0.5) <= 0.1) & (v >= _NOSE[1] + 0.025) & (v <= _MOUTH_C[1] - 0.03)
    chin = (np.abs(u - 0.5) <= 0.09) & (v >= _MOUTH_C[1] + 0.045) & (v <= _MOUTH_C[1] + 0.12)
    core = (philtrum | chin) & valid
    if core.sum() < 0.5 * (philtrum | chin).sum():
        return SegmentationResult(None, "mouth outside the photo", stats)
    stats["core_candidates"] = float(candidate[core].mean())
    stats["core_distance"] = float(np.median(distance[core]))
    if stats["core_distance"] < r.min_core_distance:
        return SegmentationResult(None, "mouth region looks like skin", stats)

    # the mouth is under the mask (the rules below require it): its area is foreground, its
    # pixels unlike the skin sure foreground; grabCut learns the mask's colours from them
    labels = np.full((size, size), cv2.GC_BGD, np.uint8)
    labels[zone] = cv2.GC_PR_BGD
    labels[candidate | core] = cv2.GC_PR_FGD
    labels[core & (distance > r.core_sure_distance)] = cv2.GC_FGD
    labels[~valid] = cv2.GC_BGD
    # run on the photo's part of the crop only, so that colours outside it do not train the models
    rows, cols = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    sub = np.ascontiguousarray(labels[y0:y1, x0:x1])
    cv2.setRNGSeed(0)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(np.ascontiguousarray(crop[y0:y1, x0:x1]), sub, None, bgd, fgd, grabcut_iterations,
                    cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return SegmentationResult(None, "grabCut failed", stats)
    labels[y0:y1, x0:x1] = sub
    fg = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)) & zone & valid
    fg = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    mask = _fill_holes(_largest_component(fg > 0))
    k = max(3, int(round(size * 0.04)) | 1)
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE,
                            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    smooth = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), size / 128.0)
    mask = _fill_holes(_largest_component((smooth >= 0.5) & zone & valid))
    return _judge(mask, distance, valid, zone, rules, stats)


def _judge(mask: np.ndarray, distance: np.ndarray, valid: np.ndarray, zone: np.ndarray,
           r: SegmentationRules, stats: dict[str, float]) -> SegmentationResult:
    size = mask.shape[0]
    area = float(mask.mean())
    stats["area"] = area
    if not mask.any():
        return SegmentationResult(None, "nothing segmented", stats)

    def reject(reason: str) -> SegmentationResult:
        return SegmentationResult(None, reason, stats)

    if area < r.min_area:
        return reject("area too small")
    if area > r.max_area:
        return reject("area too large")
    radius = 0.025
    cover = min(float(mask[_disc(size, p, radius)].mean()) for p in (_MOUTH_L, _MOUTH_C, _MOUTH_R))
    stats["mouth_cover"] = cover
    if cover < r.min_mouth_cover:
        return reject("mouth not covered")
    if any(mask[_disc(size, p, r.eye_clearance)].any() for p in (_LEFT_EYE, _RIGHT_EYE)):
        return reject("touches an eye")
    row = mask[int(round(_MOUTH_C[1] * size))]
    width = float(row.sum()) / size
    stats["width_at_mouth"] = width
    if width < r.min_width_at_mouth:
        return reject("too narrow at the mouth")
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.convexHull(np.concatenate(contours))
    solidity = float(mask.sum()) / max(1.0, cv2.contourArea(hull) + 0.5 * cv2.arcLength(hull, True))
    stats["solidity"] = solidity
    if solidity < r.min_solidity:
        return reject("not compact (solidity)")
    outline = _outline(mask)
    n_outline = max(1, int(outline.sum()))
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    frame = np.zeros((size, size), np.uint8)
    frame[[0, -1], :] = 1
    frame[:, [0, -1]] = 1
    edge = (cv2.dilate(((~valid) | ((~zone) & ~_top_band(size, r))).astype(np.uint8), cross) | frame) > 0
    low = _grid(size)[1] >= r.bottom_from
    edge_contact = float((outline & edge & ~low).sum()) / n_outline
    bottom_contact = float((outline & edge & low).sum()) / n_outline
    top_contact = float((outline & (cv2.dilate(_top_band(size, r).astype(np.uint8), cross) > 0)).sum()) / n_outline
    bottom_width = float(mask[-1].mean())
    stats.update(edge_contact=edge_contact, bottom_contact=bottom_contact, top_contact=top_contact,
                 bottom_width=bottom_width)
    if edge_contact > r.max_edge_contact:
        return reject("cut by the photo's border or the crop's edge")
    if bottom_contact > r.max_bottom_contact:
        return reject("cut off at the bottom")
    if bottom_width > r.max_bottom_width:
        return reject("wide at the bottom edge (clothes?)")
    if top_contact > r.max_top_contact:
        return reject("runs up to the eyes")
    d = distance[mask]
    stats["skin_like"] = float((d < 1.5).mean())
    stats["median_distance"] = float(np.median(d))
    if stats["skin_like"] > r.max_skin_like:
        return reject("partly skin")
    if stats["median_distance"] < r.min_median_distance:
        return reject("too close to the skin's colour")
    return SegmentationResult(mask, "ok", stats)


def _top_band(size: int, r: SegmentationRules) -> np.ndarray:
    """The row just above the zone (where a mask that runs into the eyes is cut off), inside its width."""
    u, v = _grid(size)
    top = _EYE_Y + r.zone_top
    return (v < top) & (v >= top - 1.0 / size) & (np.abs(u - 0.5) <= r.zone_half_width)


# --------------------------------------------------------------------------------------------------
# cut-outs and pasting


def cutout_rgba(crop: np.ndarray, mask: np.ndarray, edge_alpha: float = 0.6) -> np.ndarray:
    """An RGBA cut-out: the crop's pixels, alpha 255 on the mask, ``edge_alpha`` on its outermost ring."""
    mask = np.asarray(mask, bool)
    alpha = mask.astype(np.float32)
    alpha[_outline(mask)] = edge_alpha
    return np.dstack([crop, np.round(alpha * 255).astype(np.uint8)])


def jitter_matrix(rng: np.random.Generator, size: int, rotation_deg: float = 4.0, scale: float = 0.04,
                  shift: float = 0.015) -> np.ndarray:
    """A small random similarity about the crop's face centre (rotation, scale, shift as fractions of ``size``)."""
    angle = rng.uniform(-rotation_deg, rotation_deg)
    s = 1.0 + rng.uniform(-scale, scale)
    dx, dy = rng.uniform(-shift, shift, 2) * size
    centre = (float(_NOSE[0] * size - 0.5), float(_NOSE[1] * size - 0.5))
    m = cv2.getRotationMatrix2D(centre, angle, s)
    m[:, 2] += (dx, dy)
    return m


def paste_matrix(cutout_size: int, face_size: int, face_landmarks: np.ndarray | None = None,
                 jitter: np.ndarray | None = None) -> np.ndarray:
    """Cut-out pixels -> face-crop pixels (2x3): a resize, then template -> ``face_landmarks``, then ``jitter``.

    ``face_landmarks`` are the face's five landmarks in its own crop's pixels; without them the face
    is taken to sit exactly on the template. ``jitter`` is a 2x3 matrix in face-crop pixels.
    """
    f = face_size / cutout_size
    m = np.array([[f, 0.0, 0.5 * f - 0.5], [0.0, f, 0.5 * f - 0.5], [0.0, 0.0, 1.0]])  # pixel-centre resize
    if face_landmarks is not None:
        to_face = invert_alignment(estimate_alignment(np.asarray(face_landmarks, np.float64), face_size))
        m = np.vstack([to_face, [0.0, 0.0, 1.0]]) @ m
    if jitter is not None:
        m = np.vstack([np.asarray(jitter, np.float64), [0.0, 0.0, 1.0]]) @ m
    return m[:2]


def paste_cutout(face: np.ndarray, rgba: np.ndarray, matrix: np.ndarray | None = None,
                 min_alpha: float = 0.2, edge_alpha: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Composite an RGBA cut-out onto ``face`` (HxWx3 uint8); returns ``(masked, hidden)``.

    ``matrix`` maps cut-out pixels to face pixels (default: the plain resize of :func:`paste_matrix`).
    The cut-out is shrunk with area interpolation first (premultiplied alpha, so the colours under
    alpha 0 never bleed in), then warped bilinearly. Pixels whose warped alpha is under
    ``min_alpha`` are left exactly as they were; the others, the map ``hidden`` (HxW bool), get
    at least ``edge_alpha`` of the mask. Outside ``hidden`` the result is bit-identical to ``face``.
    """
    face = np.asarray(face)
    rgba = np.asarray(rgba)
    if face.dtype != np.uint8 or face.ndim != 3 or face.shape[2] != 3:
        raise ValueError(f"face must be HxWx3 uint8, got {face.dtype} {face.shape}")
    if rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"cut-out must be HxWx4 uint8 RGBA, got {rgba.dtype} {rgba.shape}")
    h, w = face.shape[:2]
    if h != w:
        raise ValueError(f"face must be square (an aligned crop), got {face.shape}")
    m = paste_matrix(rgba.shape[0], h) if matrix is None else np.asarray(matrix, np.float64)
    alpha = rgba[..., 3:].astype(np.float32) / 255.0
    premultiplied = np.concatenate([rgba[..., :3].astype(np.float32) * alpha, alpha], axis=2)
    # shrink to about the face's scale with area interpolation, then the remaining warp is near 1:1
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 1.0:
        n = max(1, int(round(rgba.shape[0] * scale)))
        f = n / rgba.shape[0]
        premultiplied = cv2.resize(premultiplied, (n, n), interpolation=cv2.INTER_AREA)
        undo = np.array([[1 / f, 0.0, 0.5 / f - 0.5], [0.0, 1 / f, 0.5 / f - 0.5], [0.0, 0.0, 1.0]])
        m = m @ undo
    warped = cv2.warpAffine(premultiplied, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=(0, 0, 0, 0))
    a = warped[..., 3]
    hidden = a >= min_alpha
    colour = warped[..., :3] / np.maximum(a, 1e-6)[..., None]
    a = np.where(hidden, np.clip(a, edge_alpha, 1.0), 0.0)[..., None]
    out = face.astype(np.float32) * (1.0 - a) + np.clip(colour, 0, 255) * a
    masked = face.copy()
    masked[hidden] = np.clip(np.round(out[hidden]), 0, 255).astype(np.uint8)
    return masked, hidden


def assign_cutouts(n_faces: int, n_cutouts: int, seed: int) -> np.ndarray:
    """Which cut-out each of ``n_faces`` faces wears: every cut-out once per round, rounds shuffled (seeded)."""
    if n_cutouts < 1:
        raise ValueError("need at least one cut-out")
    rng = np.random.default_rng(seed)
    rounds = -(-n_faces // n_cutouts)
    return np.concatenate([rng.permutation(n_cutouts) for _ in range(max(1, rounds))])[:n_faces]


def contact_sheet(images: Sequence[np.ndarray], columns: int = 16, labels: Sequence[str] | None = None,
                  tile: int = 96) -> np.ndarray:
    """RGB uint8 sheet of RGB or RGBA images (RGBA over a grey/white checkerboard), ``columns`` per row."""
    n = len(images)
    rows = max(1, -(-n // columns))
    sheet = np.full((rows * (tile + 2), columns * (tile + 2), 3), 40, np.uint8)
    yy, xx = np.mgrid[:tile, :tile]
    checker = np.where(((yy // 8 + xx // 8) % 2)[..., None] == 0, 200, 235).astype(np.float32)
    for k, image in enumerate(images):
        img = cv2.resize(np.asarray(image), (tile, tile), interpolation=cv2.INTER_AREA)
        if img.shape[2] == 4:
            a = img[..., 3:].astype(np.float32) / 255.0
            img = (img[..., :3] * a + checker * (1 - a)).astype(np.uint8)
        r, c = divmod(k, columns)
        y, x = r * (tile + 2) + 1, c * (tile + 2) + 1
        sheet[y:y + tile, x:x + tile] = img
        if labels is not None:
            cv2.putText(sheet, str(labels[k])[:14], (x + 2, y + tile - 4), cv2.FONT_HERSHEY_PLAIN, 0.7,
                        (255, 255, 0), 1, cv2.LINE_AA)
    return sheet
