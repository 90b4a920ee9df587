"""Synthetic mask renderer: geometry on the face, the binary map contract, determinism, speed."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from unmask.imaging.alignment import template_points, transform_points
from unmask.imaging.mask_renderer import (
    MASK_STYLES,
    MaskSpec,
    face_frame,
    mask_coverage,
    rasterize_mask,
    render_masked_face,
    sample_mask_spec,
)

SEEDS = range(40)


def drawn_face(size: int, landmarks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A simple cartoon face drawn around ``landmarks`` (default: the template), and the landmarks."""
    lm = template_points(size) if landmarks is None else np.asarray(landmarks, dtype=np.float64)
    f = face_frame(lm)
    d, h, ex, ey = f["d"], f["h"], f["ex"], f["ey"]
    img = np.zeros((size, size, 3), np.uint8)
    img[:] = (90, 120, 150)
    centre = f["eye_centre"] + 0.75 * h * ey
    angle = float(np.degrees(np.arctan2(ex[1], ex[0])))
    cv2.ellipse(img, tuple(np.round(centre).astype(int)), (int(1.15 * d), int(1.15 * h * 1.6)), angle, 0, 360,
                (224, 180, 150), -1)
    for eye in lm[:2]:
        cv2.ellipse(img, tuple(np.round(eye).astype(int)), (max(1, int(0.2 * d)), max(1, int(0.08 * d))), angle, 0,
                    360, (50, 40, 40), -1)
    cv2.circle(img, tuple(np.round(lm[2]).astype(int)), max(1, int(0.08 * d)), (190, 130, 110), -1)
    cv2.line(img, tuple(np.round(lm[3]).astype(int)), tuple(np.round(lm[4]).astype(int)), (150, 60, 60),
             max(1, int(0.05 * d)))
    return img, lm


def noise_image(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def chin_point(lm: np.ndarray) -> np.ndarray:
    """The chin, estimated 0.8 eye-to-mouth heights below the mouth centre (CelebA average)."""
    f = face_frame(lm)
    return (lm[3] + lm[4]) / 2 + 0.8 * f["h"] * f["ey"]


def disk(size: int, centre: np.ndarray, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius**2


def assert_sits_like_a_mask(mask: np.ndarray, lm: np.ndarray) -> None:
    size = mask.shape[0]
    d = face_frame(lm)["d"]
    covered = mask.astype(bool)
    for name, point in [("nose", lm[2]), ("left mouth", lm[3]), ("right mouth", lm[4]), ("chin", chin_point(lm))]:
        assert covered[disk(size, point, max(0.5, 0.06 * d))].all(), f"{name} is not covered"
    for name, point in [("left eye", lm[0]), ("right eye", lm[1])]:
        assert not covered[disk(size, point, 0.15 * d)].any(), f"{name} is covered"


@pytest.mark.parametrize("style", MASK_STYLES)
@pytest.mark.parametrize("size", [64, 256])
def test_every_style_covers_nose_mouth_and_chin_but_not_the_eyes(style, size):
    lm = template_points(size)
    for seed in SEEDS:
        spec = sample_mask_spec(lm, size, np.random.default_rng(seed), [style])
        assert spec.style == style
        mask = rasterize_mask(spec, size)
        assert_sits_like_a_mask(mask, lm)
        assert 0.12 < mask_coverage(mask) < 0.45


@pytest.mark.parametrize("style", MASK_STYLES)
def test_the_mask_follows_a_rotated_and_shifted_face(style):
    size = 96
    centre = np.array([size / 2, size / 2])
    a = np.deg2rad(25)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * 0.85
    m = np.hstack([rot, (centre - rot @ centre + [4, -3])[:, None]])
    lm = transform_points(template_points(size), m)
    for seed in range(15):
        mask = rasterize_mask(sample_mask_spec(lm, size, np.random.default_rng(seed), [style]), size)
        assert_sits_like_a_mask(mask, lm)


@pytest.mark.parametrize("style", MASK_STYLES)
def test_only_pixels_of_the_binary_mask_change(style):
    size = 64
    image = noise_image(size, 1)
    before = image.copy()
    for seed in range(10):
        spec = sample_mask_spec(template_points(size), size, np.random.default_rng(seed), [style])
        mask = rasterize_mask(spec, size)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
        out = render_masked_face(image, spec)
        assert out.shape == image.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(out[mask == 0], image[mask == 0])  # bit-exact outside
        changed = (out != image).any(axis=2)
        assert not changed[mask == 0].any()
        assert changed[mask == 1].mean() > 0.97  # (a few pixels may match the noise by chance)
        np.testing.assert_array_equal(image, before)  # the input is not modified


@pytest.mark.parametrize("style", MASK_STYLES)
def test_masked_pixels_look_like_the_mask_not_the_face(style):
    size = 128
    face, lm = drawn_face(size)
    spec = sample_mask_spec(lm, size, np.random.default_rng(5), [style])
    out = render_masked_face(face, spec).astype(np.float64)
    mask = rasterize_mask(spec, size).astype(bool)
    # away from the outline the colour is the mask's (shaded, patterned), unrelated to the face
    core = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    palette = np.array([spec.colour, spec.secondary_colour], dtype=np.float64)
    dist = np.abs(out[core][:, None, :] - palette[None]).max(axis=2).min(axis=1)
    assert np.median(dist) < 60
    # and the render is not flat: shading / pleats / print vary over the mask
    assert out[core].std(axis=0).max() > 3


def test_anti_aliased_edges_blend_inside_the_mask():
    size = 128
    image = np.zeros((size, size, 3), np.uint8)
    spec = sample_mask_spec(template_points(size), size, np.random.default_rng(0), ["kn95"])
    out = render_masked_face(image, spec)
    mask = rasterize_mask(spec, size).astype(bool)
    edge = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    core = cv2.erode(mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    # boundary pixels are partially blended with the (black) face: darker than the inside
    assert out[edge].mean() < 0.9 * out[core].mean()
    assert (out[edge].max(axis=1) > 0).all()


@pytest.mark.parametrize("style", MASK_STYLES)
def test_sampling_and_rendering_are_deterministic(style):
    size = 64
    lm, image = template_points(size), noise_image(size, 2)
    a = sample_mask_spec(lm, size, np.random.default_rng(11), [style])
    b = sample_mask_spec(lm, size, np.random.default_rng(11), [style])
    np.testing.assert_array_equal(a.polygon, b.polygon)
    assert a.to_record() == b.to_record() and a.texture_seed == b.texture_seed
    np.testing.assert_array_equal(rasterize_mask(a, size), rasterize_mask(b, size))
    np.testing.assert_array_equal(render_masked_face(image, a), render_masked_face(image, b))
    np.testing.assert_array_equal(render_masked_face(image, a), render_masked_face(image, a))
    others = [rasterize_mask(sample_mask_spec(lm, size, np.random.default_rng(s), [style]), size) for s in range(5)]
    assert len({m.tobytes() for m in others}) > 1  # position / size jitter


def test_all_styles_occur_and_styles_restrict_the_choice():
    lm = template_points(64)
    seen = {sample_mask_spec(lm, 64, np.random.default_rng(s)).style for s in range(100)}
    assert seen == set(MASK_STYLES)
    assert {sample_mask_spec(lm, 64, np.random.default_rng(s), ["n95", "cloth"]).style for s in range(30)} == {
        "n95",
        "cloth",
    }


def test_colours_patterns_and_tilt_vary():
    lm = template_points(64)
    specs = [sample_mask_spec(lm, 64, np.random.default_rng(s), ["cloth"]) for s in range(60)]
    assert len({s.colour for s in specs}) > 40
    assert {s.pattern for s in specs} == {"solid", "heather", "stripes", "dots", "checks"}
    tilts = np.array([s.tilt for s in specs])
    assert np.abs(tilts).max() <= 5.0 and tilts.std() > 1.0
    surgical = [sample_mask_spec(lm, 64, np.random.default_rng(s), ["surgical"]) for s in range(60)]
    assert any(np.mean(s.colour) < 80 for s in surgical)  # black
    assert any(s.colour[2] > s.colour[0] + 40 for s in surgical)  # light blue
    assert all(len(s.straps) == 4 for s in surgical)  # two ear loops, each drawn as two strands


@pytest.mark.parametrize("style", ["surgical", "n95", "kn95", "cloth"])
def test_straps_and_ear_loops_are_part_of_the_binary_mask(style):
    size = 128
    spec = sample_mask_spec(template_points(size), size, np.random.default_rng(3), [style])
    assert spec.straps and spec.strap_width >= 1
    body = np.zeros((size, size), np.uint8)
    pts = np.round((spec.polygon.astype(np.float64) + 0.5) * 16 - 8).astype(np.int32)
    cv2.fillPoly(body, [pts], 1, lineType=cv2.LINE_8, shift=4)
    mask = rasterize_mask(spec, size)
    assert (mask >= body).all()
    straps_only = (mask == 1) & (body == 0)
    assert straps_only.sum() > 20
    image = noise_image(size, 4)
    out = render_masked_face(image, spec)
    assert (out[straps_only] != image[straps_only]).any(axis=1).mean() > 0.9


def test_bandana_has_no_straps():
    spec = sample_mask_spec(template_points(64), 64, np.random.default_rng(0), ["bandana"])
    assert spec.straps == ()


def test_scaled_spec_rasterizes_consistently():
    spec = sample_mask_spec(template_points(64), 64, np.random.default_rng(9), ["kn95"])
    small, big = rasterize_mask(spec), rasterize_mask(spec, 256)
    assert small.shape == (64, 64) and big.shape == (256, 256)
    assert abs(mask_coverage(small) - mask_coverage(big)) < 0.02
    out = render_masked_face(noise_image(256), spec)  # a spec renders on any square size
    assert out.shape == (256, 256, 3)
    assert spec.scaled(64) is spec and spec.scaled(128).size == 128


def test_mask_coverage():
    m = np.zeros((10, 10), np.uint8)
    m[:5] = 1
    assert mask_coverage(m) == 0.5
    assert mask_coverage(m * 255) == 0.5
    assert mask_coverage(np.zeros((0, 0))) == 0.0


def test_invalid_arguments_are_rejected():
    lm = template_points(64)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="surgical"):  # lists the valid styles
        sample_mask_spec(lm, 64, rng, ["balaclava"])
    with pytest.raises(ValueError):
        sample_mask_spec(lm, 64, rng, [])
    with pytest.raises(ValueError):
        sample_mask_spec(np.full((5, 2), np.nan), 64, rng)
    with pytest.raises(ValueError):
        sample_mask_spec(np.zeros((5, 2)), 64, rng)
    with pytest.raises(ValueError):
        sample_mask_spec(lm, 4, rng)
    spec = sample_mask_spec(lm, 64, rng)
    with pytest.raises(ValueError):
        render_masked_face(np.zeros((64, 48, 3), np.uint8), spec)
    with pytest.raises(ValueError):
        render_masked_face(np.zeros((64, 64, 3), np.float32), spec)


def test_metadata_record():
    spec = sample_mask_spec(template_points(64), 64, np.random.default_rng(1))
    assert isinstance(spec, MaskSpec)
    record = spec.to_record()
    assert record["style"] in MASK_STYLES
    assert record["colour"].startswith("#") and len(record["colour"]) == 7
    int(record["colour"][1:], 16)


def test_render_is_fast():
    size = 256
    image, lm = drawn_face(size)
    specs = [sample_mask_spec(lm, size, np.random.default_rng(s), [MASK_STYLES[s % 5]]) for s in range(10)]
    render_masked_face(image, specs[0])
    start = time.perf_counter()
    for spec in specs:
        render_masked_face(image, spec)
    per_mask = (time.perf_counter() - start) / len(specs)
    assert per_mask < 0.05  # ~4 ms on one core; generous for slow CI machines
