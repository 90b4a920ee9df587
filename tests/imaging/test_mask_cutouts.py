"""Real-mask cut-outs: splits, duplicate grouping, segmentation, cut-outs and pasting, on synthetic images only."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from unmask.imaging.alignment import align_face, template_points
from unmask.imaging.mask_cutouts import (
    SegmentationRules,
    assign_cutouts,
    contact_sheet,
    cutout_rgba,
    dhash,
    face_hashes,
    group_near_duplicates,
    jitter_matrix,
    paste_cutout,
    paste_matrix,
    segment_mask,
    split_of,
    valid_region,
)

SIZE = 128
#: the synthetic mask's outline, normalised: nose bridge to under the chin, cheek to cheek
MASK_POLYGON = np.array([[0.27, 0.53], [0.40, 0.51], [0.50, 0.50], [0.60, 0.51], [0.73, 0.53], [0.76, 0.70],
                         [0.68, 0.84], [0.50, 0.91], [0.32, 0.84], [0.24, 0.70]])


def _face(size: int = SIZE, seed: int = 0, mask_colour: tuple[int, int, int] | None = (120, 170, 215),
          polygon: np.ndarray = MASK_POLYGON) -> tuple[np.ndarray, np.ndarray]:
    """An aligned synthetic face (canonical frame) and the map of its mask (empty without one)."""
    rng = np.random.default_rng(seed)
    s = size / 128.0
    img = np.empty((size, size, 3), np.float32)
    img[:] = (70, 95, 80)  # background
    cv2.ellipse(img, (int(0.5 * size), int(0.58 * size)), (int(0.29 * size), int(0.42 * size)), 0, 0, 360,
                (205, 150, 125), -1)  # skin
    cv2.ellipse(img, (int(0.5 * size), int(0.12 * size)), (int(0.36 * size), int(0.16 * size)), 0, 0, 360,
                (45, 35, 30), -1)  # hair
    eyes = template_points(size)
    for x, y in eyes[:2]:
        cv2.ellipse(img, (int(round(x)), int(round(y))), (max(1, int(5 * s)), max(1, int(2.5 * s))), 0, 0, 360,
                    (40, 30, 30), -1)
        cv2.line(img, (int(x - 7 * s), int(y - 8 * s)), (int(x + 7 * s), int(y - 9 * s)), (70, 50, 40),
                 max(1, int(2 * s)))
    mouth = eyes[3:].mean(axis=0)
    cv2.ellipse(img, (int(mouth[0]), int(mouth[1])), (int(12 * s), max(1, int(3 * s))), 0, 0, 360, (170, 80, 80), -1)
    hidden = np.zeros((size, size), np.uint8)
    if mask_colour is not None:
        pts = np.round(polygon * size - 0.5).astype(np.int32)
        cv2.fillPoly(hidden, [pts], 1)
        shade = np.linspace(1.05, 0.85, size, dtype=np.float32)[:, None, None]
        img = np.where(hidden[..., None] > 0, np.array(mask_colour, np.float32) * shade, img)
        for k in range(3):  # pleats
            y = int((0.62 + 0.08 * k) * size)
            row = hidden[y] > 0
            img[y, row] *= 0.85
    img += rng.normal(0, 3, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), hidden > 0


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / float((a | b).sum())


# ------------------------------------------------------------------------------------------ splits


def test_split_is_a_deterministic_half_by_name() -> None:
    names = [f"photo_{i}.jpg" for i in range(2000)]
    splits = [split_of(n) for n in names]
    assert set(splits) == {"test", "train"}
    assert 0.45 < splits.count("test") / len(splits) < 0.55
    assert splits == [split_of(n) for n in names]  # no state, no randomness
    assert all(split_of(n, test_fraction=0.0) == "train" for n in names[:50])
    assert all(split_of(n, test_fraction=1.0) == "test" for n in names[:50])
    assert sum(split_of(n, 0.5, salt="other") != s for n, s in zip(names, splits)) > 500  # the salt matters
    with pytest.raises(ValueError):
        split_of("x.jpg", test_fraction=1.5)


def test_near_duplicates_are_grouped_and_different_faces_are_not() -> None:
    rng = np.random.default_rng(5)
    # smooth random "photos": structure at the scale of the hash's cells, like a face's features
    photos = [cv2.GaussianBlur(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8), (0, 0), 4) for _ in range(6)]
    photos = [cv2.normalize(p, None, 0, 255, cv2.NORM_MINMAX) for p in photos]
    copy = cv2.resize(cv2.resize(photos[0], (90, 90), interpolation=cv2.INTER_AREA), (SIZE, SIZE))  # resized again
    mirrored = np.ascontiguousarray(photos[1][:, ::-1])
    items = [face_hashes(p) for p in photos] + [face_hashes(copy), face_hashes(mirrored)]
    groups = group_near_duplicates(items, max_distance=20)
    assert groups[6] == groups[0] and groups[7] == groups[1]  # the copy and the mirror image join their originals
    assert groups[:6] == [0, 1, 2, 3, 4, 5]  # different photos stay apart
    assert dhash(photos[0]).shape == (32,) and dhash(photos[0]).dtype == np.uint8  # 256 bits
    assert group_near_duplicates([]) == [] and group_near_duplicates([[], []]) == [0, 1]


# ------------------------------------------------------------------------------------------ segmentation


@pytest.mark.parametrize("colour", [(120, 170, 215), (25, 25, 30), (235, 235, 240), (150, 40, 50)])
def test_a_mask_is_segmented_to_its_outline(colour: tuple[int, int, int]) -> None:
    crop, truth = _face(mask_colour=colour)
    result = segment_mask(crop)
    assert result.accepted, (result.reason, result.stats)
    assert result.reason == "ok"
    assert _iou(result.mask, truth) > 0.9, result.stats
    assert 0.12 < result.stats["area"] < 0.55


def test_segmentation_is_deterministic() -> None:
    crop, _ = _face(seed=3)
    assert np.array_equal(segment_mask(crop).mask, segment_mask(crop).mask)


def test_a_bare_face_is_rejected() -> None:
    crop, _ = _face(mask_colour=None)
    result = segment_mask(crop)
    assert not result.accepted and result.mask is None
    assert result.reason == "mouth region looks like skin"


def test_a_mask_over_the_eyes_is_rejected() -> None:
    high = MASK_POLYGON.copy()
    high[:5, 1] = 0.40  # the top edge over the eyes
    crop, _ = _face(polygon=high)
    result = segment_mask(crop)
    assert not result.accepted and result.reason in ("touches an eye", "runs up to the eyes")


def test_a_mask_cut_by_the_photo_border_is_rejected() -> None:
    crop, _ = _face()
    valid = np.ones((SIZE, SIZE), bool)
    valid[int(0.78 * SIZE):] = False  # the photo ends under the mouth: the mask's lower part is missing
    result = segment_mask(crop, valid)
    assert not result.accepted
    assert result.reason in ("cut by the photo's border or the crop's edge", "area too small")
    # ... but a photo ending just under the chin costs the mask little and is accepted
    valid[:] = True
    valid[int(0.89 * SIZE):] = False
    assert segment_mask(crop, valid).accepted


def test_small_or_skin_coloured_masks_are_rejected() -> None:
    small = np.array([[0.42, 0.64], [0.58, 0.64], [0.58, 0.76], [0.42, 0.76]])
    crop, _ = _face(polygon=small)
    assert segment_mask(crop).reason in ("area too small", "too narrow at the mouth")
    crop, _ = _face(mask_colour=(200, 148, 122))  # the skin's own colour: nothing to find
    assert not segment_mask(crop).accepted
    strict = SegmentationRules(min_area=0.5)
    crop, _ = _face()
    assert segment_mask(crop, rules=strict).reason == "area too small"


def test_segment_mask_checks_its_input() -> None:
    with pytest.raises(ValueError):
        segment_mask(np.zeros((64, 80, 3), np.uint8))
    with pytest.raises(ValueError):
        segment_mask(np.zeros((64, 64, 3), np.uint8), np.ones((32, 32), bool))
    # no skin to model (upper face outside the photo): rejected, not an error
    valid = np.zeros((SIZE, SIZE), bool)
    valid[int(0.6 * SIZE):] = True
    assert segment_mask(_face()[0], valid).reason.startswith("no skin model")


def test_valid_region_marks_the_photo_inside_the_crop() -> None:
    photo = np.full((100, 80, 3), 128, np.uint8)
    landmarks = template_points(64) * 1.2 + np.array([2.0, -5.0])  # a face that fills the photo
    _, _, matrix = align_face(photo, landmarks, 64)
    valid = valid_region(photo.shape, matrix, 64)
    assert valid.shape == (64, 64) and valid.dtype == bool
    assert valid[32, 32] and 0.3 < valid.mean() < 1.0
    assert not valid[0, 0] or not valid[-1, -1]


# ------------------------------------------------------------------------------------------ cut-outs and pasting


def test_cutout_alpha_is_the_mask_with_a_soft_outer_ring() -> None:
    crop, truth = _face()
    rgba = cutout_rgba(crop, truth)
    assert rgba.shape == (SIZE, SIZE, 4) and rgba.dtype == np.uint8
    assert np.array_equal(rgba[..., :3], crop)
    alpha = rgba[..., 3]
    assert np.array_equal(alpha > 0, truth)
    assert set(np.unique(alpha)) == {0, 153, 255}
    inner = cv2.erode(truth.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert (alpha[inner] == 255).all()


def test_paste_changes_exactly_the_returned_map() -> None:
    crop, truth = _face()
    rgba = cutout_rgba(crop, truth)
    target, _ = _face(seed=9, mask_colour=None)
    # same size, no warp: the map is the cut-out's alpha and the colours its pixels
    masked, hidden = paste_cutout(target, rgba)
    assert np.array_equal(hidden, truth)
    assert np.array_equal(masked[~hidden], target[~hidden])
    inner = cv2.erode(truth.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert np.abs(masked[inner].astype(int) - crop[inner].astype(int)).max() <= 1
    # onto a 64 px face, jittered: every changed pixel is in the map, the map has about a quarter of the pixels
    small, _ = _face(size=64, seed=4, mask_colour=None)
    matrix = paste_matrix(SIZE, 64, jitter=jitter_matrix(np.random.default_rng(1), 64))
    masked, hidden = paste_cutout(small, rgba, matrix)
    assert masked.shape == small.shape and hidden.shape == (64, 64)
    assert np.array_equal(masked[~hidden], small[~hidden])
    assert (masked[hidden] != small[hidden]).any(axis=1).mean() > 0.95
    assert abs(hidden.sum() - truth.sum() / 4) < 0.15 * truth.sum() / 4


def test_paste_matrix_resizes_and_follows_the_face_landmarks() -> None:
    plain = paste_matrix(128, 64)
    centre = np.array([63.5, 63.5, 1.0])  # the cut-out's centre lands on the face crop's centre
    assert np.allclose(plain @ centre, [31.5, 31.5])
    assert np.allclose(paste_matrix(128, 64, template_points(64)), plain)  # a face on the template: no change
    shifted = template_points(64) + np.array([2.0, 1.0])
    assert np.allclose(paste_matrix(128, 64, shifted) @ centre, [33.5, 32.5])
    assert np.allclose(paste_matrix(128, 64, jitter=np.array([[1.0, 0, 0], [0, 1.0, 0]])), plain)


def test_jitter_is_small_and_seeded() -> None:
    a = jitter_matrix(np.random.default_rng(3), 64)
    assert np.allclose(a, jitter_matrix(np.random.default_rng(3), 64))
    linear = a[:, :2]
    scale = np.sqrt(abs(np.linalg.det(linear)))
    assert 0.95 < scale < 1.05 and abs(np.degrees(np.arctan2(linear[1, 0], linear[0, 0]))) <= 4.0
    assert np.allclose(jitter_matrix(np.random.default_rng(3), 64, 0.0, 0.0, 0.0), [[1, 0, 0], [0, 1, 0]])


def test_paste_checks_its_inputs() -> None:
    face, _ = _face(size=64, mask_colour=None)
    with pytest.raises(ValueError):
        paste_cutout(face, face)  # RGB, not RGBA
    with pytest.raises(ValueError):
        paste_cutout(face[:, :40], np.zeros((128, 128, 4), np.uint8))  # not square
    masked, hidden = paste_cutout(face, np.zeros((128, 128, 4), np.uint8))  # fully transparent
    assert not hidden.any() and np.array_equal(masked, face)


def test_assignment_uses_every_cutout_evenly_and_is_seeded() -> None:
    a = assign_cutouts(1000, 37, seed=0)
    counts = np.bincount(a, minlength=37)
    assert len(a) == 1000 and counts.min() >= 27 and counts.max() <= 28
    assert np.array_equal(a, assign_cutouts(1000, 37, seed=0))
    assert not np.array_equal(a, assign_cutouts(1000, 37, seed=1))
    assert np.array_equal(assign_cutouts(10, 37, seed=0), a[:10])  # --limit takes a prefix of the same draw
    assert len(assign_cutouts(5, 100, seed=2)) == 5 and len(set(assign_cutouts(5, 100, seed=2))) == 5
    with pytest.raises(ValueError):
        assign_cutouts(3, 0, seed=0)


def test_contact_sheet_lays_out_rgb_and_rgba_tiles() -> None:
    crop, truth = _face()
    sheet = contact_sheet([crop, cutout_rgba(crop, truth), crop], columns=2, tile=32, labels=["a", "b", "c"])
    assert sheet.shape == (2 * 34, 2 * 34, 3) and sheet.dtype == np.uint8
