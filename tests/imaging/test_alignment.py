"""Face alignment: template, similarity fit, warping, borders and inversion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from unmask.imaging.alignment import (
    BORDER_MODES,
    CANONICAL_TEMPLATE,
    align_face,
    estimate_alignment,
    invert_alignment,
    template_points,
    transform_points,
    warp_to_crop,
)

# mean landmarks of aligned CelebA (178 x 218)
CELEBA_MEAN = np.array([[69, 111], [108, 111], [89, 135], [72, 152], [106, 152]], dtype=np.float64)


def similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array(
        [[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]], dtype=np.float64
    )


def image_landmarks_for(size: int, image_from_crop: np.ndarray) -> np.ndarray:
    """Landmarks an image must have so that the crop->image map ``image_from_crop`` is exact."""
    return transform_points(template_points(size), image_from_crop)


def blob_image(shape: tuple[int, int], points: np.ndarray, radius: float) -> np.ndarray:
    """Dark grey image with a bright Gaussian blob, of a distinct colour channel pattern, per point."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.full((h, w, 3), 30.0)
    for i, (x, y) in enumerate(points):
        g = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * radius**2))
        img[..., i % 3] += 200.0 * g
        img[..., (i + 1) % 3] += (i // 3 + 1) * 10.0 * g
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def blob_centroid(img: np.ndarray, centre: np.ndarray, window: int) -> np.ndarray:
    """Intensity-weighted centroid (above background) around ``centre``."""
    lum = img.astype(np.float64).sum(axis=2)
    x0, y0 = (np.round(centre).astype(int) - window).clip(0)
    patch = lum[y0 : y0 + 2 * window + 1, x0 : x0 + 2 * window + 1]
    patch = np.clip(patch - np.median(lum), 0, None)
    yy, xx = np.mgrid[0 : patch.shape[0], 0 : patch.shape[1]]
    return np.array([(xx * patch).sum() / patch.sum() + x0, (yy * patch).sum() / patch.sum() + y0])


def test_template_is_a_plausible_symmetric_face_layout():
    t = CANONICAL_TEMPLATE
    assert t.shape == (5, 2) and np.all((t > 0) & (t < 1))
    assert t[0, 0] + t[1, 0] == pytest.approx(1.0) and t[3, 0] + t[4, 0] == pytest.approx(1.0)
    assert t[0, 1] == t[1, 1] < t[2, 1] < t[3, 1] == t[4, 1]
    # it is the 160x160 window at (9, 40) of the mean aligned CelebA layout (symmetrised)
    window = (CELEBA_MEAN - [9, 40]) / 160
    assert np.abs(window - t).max() < 0.01
    # the chin (y ~ 185 in aligned CelebA) stays inside the crop with a margin
    assert 0.85 < (185 - 40) / 160 < 0.95
    np.testing.assert_allclose(template_points(100), t * 100 - 0.5)


@pytest.mark.parametrize("size", [16, 64, 256])
@pytest.mark.parametrize(
    "angle, scale, tx, ty",
    [(0, 1, 0, 0), (17, 0.7, 40, -12), (-35, 2.5, 300, 80), (90, 0.3, 10, 10), (179, 1.3, 5, 400)],
)
def test_known_similarity_is_recovered(size, angle, scale, tx, ty):
    image_from_crop = similarity(angle, scale, tx, ty)
    points = image_landmarks_for(size, image_from_crop)
    matrix = estimate_alignment(points, size)
    assert matrix.shape == (2, 3)
    aligned = transform_points(points, matrix)
    assert np.abs(aligned - template_points(size)).max() < 0.5
    np.testing.assert_allclose(matrix, invert_alignment(image_from_crop), atol=1e-8)


def test_least_squares_fit_with_noisy_landmarks_is_a_similarity():
    rng = np.random.default_rng(3)
    points = image_landmarks_for(64, similarity(12, 1.4, 20, 30)) + rng.normal(0, 0.8, (5, 2))
    m = estimate_alignment(points, 64)
    a, b = m[:, 0], m[:, 1]
    assert np.dot(a, b) == pytest.approx(0.0, abs=1e-9)  # no shear
    assert np.linalg.norm(a) == pytest.approx(np.linalg.norm(b))  # uniform scale
    assert np.linalg.det(m[:, :2]) > 0  # no reflection
    residual = np.linalg.norm(transform_points(points, m) - template_points(64), axis=1)
    assert residual.mean() < 1.5
    assert np.array_equal(m, estimate_alignment(points, 64))  # deterministic


@pytest.mark.parametrize(
    "points",
    [
        np.full((5, 2), np.nan),
        np.where(np.eye(5, 2, dtype=bool), np.nan, CELEBA_MEAN),
        np.vstack([[50.0, 50.0], [50.0, 50.0], CELEBA_MEAN[2:]]),
        np.zeros((5, 2)),
        CELEBA_MEAN[:4],
        np.array([[np.inf, 0.0]] * 5),
    ],
    ids=["all-nan", "one-nan", "coincident-eyes", "collapsed", "four-points", "inf"],
)
def test_degenerate_landmarks_are_rejected(points):
    with pytest.raises(ValueError):
        estimate_alignment(points, 64)


@pytest.mark.parametrize("size", [0, 1, -5, 2.5, "64", True])
def test_bad_size_is_rejected(size):
    with pytest.raises(ValueError, match="size"):
        estimate_alignment(CELEBA_MEAN, size)


@pytest.mark.parametrize("angle, scale", [(0, 1.6), (23, 0.8), (-41, 1.1), (160, 0.6)])
def test_align_face_puts_the_landmark_blobs_on_the_template(angle, scale):
    size = 96
    image_from_crop = similarity(angle, scale, 0, 0)
    corners = transform_points(np.array([[0, 0], [size, 0], [0, size], [size, size]]), image_from_crop)
    image_from_crop[:, 2] = 20 - corners.min(axis=0)
    points = image_landmarks_for(size, image_from_crop)
    h, w = (np.ceil(transform_points(np.array([[size, size], [0, size], [size, 0]]), image_from_crop).max(axis=0))
            .astype(int)[::-1] + 20)
    image = blob_image((int(h), int(w)), points, radius=2.5 * scale)
    crop, crop_points, matrix = align_face(image, points, size)
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
    assert crop_points.shape == (5, 2) and crop_points.dtype == np.float32
    np.testing.assert_allclose(crop_points, template_points(size), atol=1e-3)
    for target in template_points(size):
        assert np.linalg.norm(blob_centroid(crop, target, 5) - target) < 0.5


def test_aligning_a_celeba_image_needs_no_padding():
    size = 256
    matrix = estimate_alignment(CELEBA_MEAN, size)
    corners = transform_points(
        np.array([[-0.5, -0.5], [size - 0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5]]),
        invert_alignment(matrix),
    )
    assert corners.min() > -0.5 and corners[:, 0].max() < 178 and corners[:, 1].max() < 218
    assert np.sqrt(np.linalg.det(matrix[:, :2])) == pytest.approx(1.6, rel=0.02)


def test_strong_downscaling_is_antialiased():
    # a 1-pixel checkerboard averages to flat grey; aliasing would leave stripes or noise
    yy, xx = np.mgrid[0:900, 0:900]
    board = (((xx + yy) % 2) * 255).astype(np.uint8)
    image = np.repeat(board[:, :, None], 3, axis=2)
    points = image_landmarks_for(32, similarity(7, 20.0, 100, 100))
    crop, _, matrix = align_face(image, points, 32, border="replicate")
    assert np.sqrt(np.linalg.det(matrix[:, :2])) < 0.1
    inner = crop[4:-4, 4:-4].astype(np.float64)
    assert abs(inner.mean() - 127.5) < 6 and inner.std() < 6


def test_downscaled_landmarks_still_land_on_the_template():
    size = 32
    image_from_crop = similarity(-12, 6.0, 150, 120)
    points = image_landmarks_for(size, image_from_crop)
    image = blob_image((500, 500), points, radius=10.0)
    crop, _, _ = align_face(image, points, size)
    for target in template_points(size):
        assert np.linalg.norm(blob_centroid(crop, target, 3) - target) < 0.75


def test_border_modes():
    rng = np.random.default_rng(0)
    image = rng.integers(60, 200, (40, 40, 3), dtype=np.uint8)
    # a tiny face near the corner: most of the crop lies outside the image
    points = image_landmarks_for(64, similarity(0, 0.5, -10, -10))
    constant, _, _ = align_face(image, points, 64, border="constant")
    reflect, _, _ = align_face(image, points, 64)
    replicate, _, _ = align_face(image, points, 64, border="replicate")
    assert (constant == 0).all(axis=2).mean() > 0.2
    assert reflect.min() >= 20 and replicate.min() >= 20  # (bicubic may overshoot a little)
    assert not np.array_equal(reflect, replicate)
    assert set(BORDER_MODES) == {"reflect", "replicate", "constant"}
    with pytest.raises(ValueError, match="border"):
        align_face(image, points, 64, border="wrap")


def test_invert_alignment_round_trips():
    m = estimate_alignment(CELEBA_MEAN, 128)
    inv = invert_alignment(m)
    pts = np.random.default_rng(1).uniform(0, 200, (20, 2))
    np.testing.assert_allclose(transform_points(transform_points(pts, m), inv), pts, atol=1e-9)
    np.testing.assert_allclose(inv, cv2.invertAffineTransform(m), atol=1e-9)
    with pytest.raises(ValueError):
        invert_alignment(np.zeros((2, 3)))
    with pytest.raises(ValueError):
        invert_alignment(np.eye(3))


def test_restored_crop_maps_back_into_the_photo():
    rng = np.random.default_rng(2)
    photo = cv2.GaussianBlur(rng.integers(0, 255, (218, 178, 3), dtype=np.uint8), (0, 0), 3)
    crop, _, m = align_face(photo, CELEBA_MEAN, 128)
    back = cv2.warpAffine(crop, invert_alignment(m), (178, 218), flags=cv2.INTER_LINEAR)
    inner = (slice(60, 180), slice(30, 150))
    assert np.abs(back[inner].astype(int) - photo[inner].astype(int)).mean() < 3


def test_grey_and_rgba_inputs_are_accepted_and_bad_ones_rejected():
    grey = np.full((218, 178), 99, np.uint8)
    crop, _, _ = align_face(grey, CELEBA_MEAN, 32)
    assert crop.shape == (32, 32, 3) and (crop == 99).all()
    rgba = np.full((218, 178, 4), 7, np.uint8)
    assert align_face(rgba, CELEBA_MEAN, 32)[0].shape == (32, 32, 3)
    with pytest.raises(ValueError, match="uint8"):
        align_face(grey.astype(np.float32), CELEBA_MEAN, 32)
    with pytest.raises(ValueError):
        warp_to_crop(np.zeros((10, 10, 2), np.uint8), np.eye(2, 3), 16)
