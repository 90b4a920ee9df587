"""Putting a restored crop back: the changed region, the feathered weight and the inverse warp."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from unmask.imaging.alignment import estimate_alignment, template_points, warp_to_crop
from unmask.imaging.blending import blend_weight, paste_crop, paste_region, restored_region


def _smooth(size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([0.3 + 0.5 * yy, 0.6 - 0.3 * xx, 0.5 + 0.2 * xx * yy], axis=-1) + 0.05 * rng.random(3)
    return np.clip(255 * base, 0, 255).astype(np.uint8)


def test_region_is_the_changed_patch_without_specks_or_holes():
    size = 64
    masked = _smooth(size)
    restored = masked.copy()
    restored[36:56, 16:48] = 255 - restored[36:56, 16:48]  # the "mask" the model removed
    restored[40:44, 28:32] = masked[40:44, 28:32]  # a hole: the model left these pixels alone
    restored[5, 5] = 0  # a speck
    noise = np.random.default_rng(1).integers(-4, 5, masked.shape)  # what a model changes everywhere
    restored = np.clip(restored.astype(int) + noise, 0, 255).astype(np.uint8)
    region = restored_region(masked, restored)
    assert region[36:56, 16:48].all()  # the patch, its hole filled
    assert not region[:20].any() and not region[:, :8].any()  # no speck, nothing far away
    assert region.sum() < 2.2 * 20 * 32  # grown by a few pixels only


def test_unchanged_crop_gives_an_empty_region_and_zero_weight():
    crop = _smooth(32)
    region = restored_region(crop, crop)
    assert not region.any()
    assert not blend_weight(region).any()


def test_weight_is_feathered_and_zero_at_the_crop_border():
    region = np.zeros((64, 64), bool)
    region[8:56, 8:56] = True
    weight = blend_weight(region)
    assert weight.dtype == np.float32 and 0 <= weight.min() and weight.max() <= 1
    assert weight[32, 32] > 0.99
    assert weight[0].max() < 0.1 and weight[:, -1].max() < 0.1
    assert 0.2 < weight[32, 8] < 0.8  # soft at the region's edge


def _photo_and_matrix():
    photo = _smooth(200, seed=3)
    landmarks = template_points(64) * 1.5 + [40, 30]  # a face 1.5x the crop, rotated by nothing
    angle = np.deg2rad(12)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = (landmarks - 90) @ rot.T + 90
    return photo, estimate_alignment(landmarks, 64)


def test_pixels_outside_the_crop_footprint_are_bit_identical():
    photo, matrix = _photo_and_matrix()
    crop = np.zeros((64, 64, 3), np.uint8)  # as different from the photo as it gets
    out = paste_crop(photo, crop, matrix, np.ones((64, 64), np.float32))
    covered = paste_region(photo.shape, np.ones((64, 64), bool), matrix)
    footprint = cv2.dilate(covered.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)  # + the soft edge
    changed = (out != photo).any(axis=2)
    assert changed[covered].mean() > 0.95 and not (changed & ~footprint).any()
    assert not changed[:, :20].any() and not changed[-20:].any()
    assert out.shape == photo.shape and out.dtype == np.uint8


def test_zero_weight_changes_nothing_and_round_trip_restores_the_photo():
    photo, matrix = _photo_and_matrix()
    crop = warp_to_crop(photo, matrix, 64)
    assert np.array_equal(paste_crop(photo, 255 - crop, matrix, np.zeros((64, 64), np.float32)), photo)
    inner = np.zeros((64, 64), np.float32)
    inner[8:56, 8:56] = 1
    back = paste_crop(photo, crop, matrix, inner)
    region = paste_region(photo.shape, inner > 0, matrix)
    # the crop is a 1/1.5 downscale of a smooth photo: warping it back is close to the original
    assert np.abs(back.astype(int) - photo.astype(int))[region].mean() < 2.0


def test_crop_off_the_photo_and_bad_shapes():
    photo = _smooth(50)
    far = estimate_alignment(template_points(32) + 1000, 32)
    assert np.array_equal(paste_crop(photo, np.zeros((32, 32, 3), np.uint8), far, np.ones((32, 32))), photo)
    assert not paste_region(photo.shape, np.ones((32, 32), bool), far).any()
    with pytest.raises(ValueError):
        paste_crop(photo, np.zeros((32, 30, 3), np.uint8), far, np.ones((32, 32)))
    with pytest.raises(ValueError):
        restored_region(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.float32))


def _grainy_face_photo(noise: float) -> tuple[np.ndarray, np.ndarray]:
    """A 400 px photo of smooth gradients plus sensor noise, and a matrix to a 64 px crop 4x smaller."""
    rng = np.random.default_rng(3)
    photo = _smooth(400).astype(np.float32) + rng.normal(0, noise, (400, 400, 3)).astype(np.float32)
    matrix = estimate_alignment(template_points(64) * 4.0 + 40.0, 64)
    return np.clip(np.rint(photo), 0, 255).astype(np.uint8), matrix


@pytest.mark.parametrize("noise", [3.0, 8.0])
def test_grain_gives_a_scaled_up_crop_the_photos_own_grain(noise: float):
    photo, matrix = _grainy_face_photo(noise)
    crop = cv2.GaussianBlur(warp_to_crop(photo, matrix, 64), (0, 0), 1.0)  # a restoration: clean and smooth
    weight = np.zeros((64, 64), np.float32)
    weight[20:50, 12:52] = 1
    region = paste_region(photo.shape, weight > 0, matrix)
    inner = cv2.erode(region.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)

    def grain(image: np.ndarray) -> float:
        high = image.astype(np.float32) - cv2.GaussianBlur(image.astype(np.float32), (0, 0), 1.0)
        return float(np.median(np.abs(high[inner] - np.median(high[inner]))) * 1.4826)

    plain = paste_crop(photo, crop, matrix, weight)
    matched = paste_crop(photo, crop, matrix, weight, grain=True)
    assert grain(plain) < 0.4 * grain(photo)  # scaled up, the restoration is far too clean ...
    assert grain(matched) == pytest.approx(grain(photo), rel=0.2)  # ... and grain brings the photo's back
    near = cv2.dilate(region.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)  # + the soft edge
    assert np.array_equal(matched[~near], plain[~near])  # only where the crop is pasted
    assert np.array_equal(matched, paste_crop(photo, crop, matrix, weight, grain=True))  # seeded
