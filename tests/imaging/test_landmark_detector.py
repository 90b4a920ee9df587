"""Face + 5-landmark detector: 68->5 reduction, coordinate mapping, masked-face handling, dlib cascade.

The pure helpers are tested everywhere. Tests that run dlib are skipped when dlib-bin /
face_recognition_models are not installed; the one real face they use is matplotlib's bundled
``grace_hopper.jpg`` sample (matplotlib is a project dependency), never the shared CelebA data.
"""

from __future__ import annotations

import importlib.util
import pickle
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import cv2
import numpy as np
import pytest

import unmask.imaging.landmark_detector as ld
from unmask.imaging.landmark_detector import (
    INSTALL_HINT,
    CELEBA_TEMPLATE_178x218,
    Detection,
    FaceLandmarkDetector,
    available,
    five_from_68,
    lower_face_from_eyes,
    lower_face_occlusion,
    resize_for_detection,
    to_original,
    upper_face_evidence,
)


def hand_made_68() -> np.ndarray:
    """68 iBUG points with known eye centres (30, 40) / (70, 40), nose (50, 60), mouth (35, 80) (65, 80)."""
    p = np.zeros((68, 2), np.float64)
    p[:, 0] = np.arange(68)  # filler, distinct values
    p[:, 1] = 200 + np.arange(68)
    ring = np.array([[-6, 0], [-3, -2], [3, -2], [6, 0], [3, 2], [-3, 2]], np.float64)  # zero mean
    p[36:42] = ring + [30, 40]
    p[42:48] = ring + [70, 40]
    p[30] = [50, 60]
    p[48] = [35, 80]
    p[54] = [65, 80]
    return p


# ------------------------------------------------------------------------------------ pure helpers


def test_five_from_68_reduction_and_order():
    five = five_from_68(hand_made_68())
    assert five.shape == (5, 2) and five.dtype == np.float32
    np.testing.assert_allclose(five, [[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], atol=1e-5)
    # CelebA sides: the left eye / mouth corner is the image's left
    assert five[0, 0] < five[1, 0] and five[3, 0] < five[4, 0]


def test_five_from_68_rejects_bad_shapes():
    with pytest.raises(ValueError, match="68, 2"):
        five_from_68(np.zeros((5, 2)))
    with pytest.raises(ValueError):
        five_from_68(np.zeros((68, 3)))


def test_lower_face_from_eyes_reproduces_the_template_and_follows_rotation():
    t = CELEBA_TEMPLATE_178x218
    noisy = t.copy()
    noisy[2:] += [[5, -7], [3, 9], [-4, 2]]  # wrong nose/mouth, right eyes
    np.testing.assert_allclose(lower_face_from_eyes(noisy), t, atol=1e-4)
    # a similarity transform of the eyes carries the whole template with it
    a = np.deg2rad(30.0)
    rot = 1.7 * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    moved = t @ rot.T + [12.0, -5.0]
    junk = moved.copy()
    junk[2:] = 0
    np.testing.assert_allclose(lower_face_from_eyes(junk), moved, atol=1e-3)
    # degenerate eyes: returned unchanged, no NaN
    same = np.array([[10, 10], [10, 10], [1, 2], [3, 4], [5, 6]], np.float64)
    np.testing.assert_allclose(lower_face_from_eyes(same), same)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((109, 89), (196, 160)), ((40, 300), (160, 1200)), ((480, 640), (480, 640)), ((2000, 3000), (853, 1280))],
)
def test_resize_for_detection_sizes(shape, expected):
    img = np.zeros((*shape, 3), np.uint8)
    out, sx, sy = resize_for_detection(img, min_side=160, max_side=1280)
    assert out.shape[:2] == expected
    assert sx == pytest.approx(expected[1] / shape[1]) and sy == pytest.approx(expected[0] / shape[0])
    if expected == shape:
        assert out is img and (sx, sy) == (1.0, 1.0)


@pytest.mark.parametrize("shape", [(109, 89), (60, 77)])
def test_upsampled_coordinates_map_back_to_the_original(shape):
    """A bright dot found in the upsampled image maps back onto its original pixel."""
    h, w = shape
    for x, y in [(20, 30), (int(w * 0.7), int(h * 0.55)), (w - 3, h - 4)]:
        img = np.zeros((h, w, 3), np.uint8)
        img[y, x] = 255
        big, sx, sy = resize_for_detection(img, min_side=160)
        assert sx > 1 and sy > 1
        g = big[..., 0].astype(np.float64)
        yy, xx = np.mgrid[0:g.shape[0], 0:g.shape[1]]
        centroid = np.array([[(xx * g).sum() / g.sum(), (yy * g).sum() / g.sum()]])
        np.testing.assert_allclose(to_original(centroid, sx, sy)[0], [x, y], atol=0.05)


def test_to_original_is_the_inverse_of_the_resize_map_and_boxes_map_edges():
    pts = np.array([[0.0, 0.0], [10.0, 20.0], [88.0, 108.0]])
    sx, sy = 160 / 89, 196 / 109
    fwd = np.stack([(pts[:, 0] + 0.5) * sx - 0.5, (pts[:, 1] + 0.5) * sy - 0.5], axis=1)
    np.testing.assert_allclose(to_original(fwd, sx, sy), pts, atol=1e-9)
    # the whole resized image as a dlib rectangle maps to the original's outer edges
    box = ld._rect_box(0, 0, 159, 195, sx, sy)
    np.testing.assert_allclose(box, (-0.5, -0.5, 88.5, 108.5), atol=1e-9)


def test_lower_face_occlusion_on_flat_colours():
    lm = CELEBA_TEMPLATE_178x218 * 0.5  # an 89x109 frame
    skin = np.zeros((109, 89, 3), np.uint8)
    skin[:] = (205, 160, 135)
    assert lower_face_occlusion(skin, lm) == pytest.approx(0.0, abs=0.5)
    masked = skin.copy()
    masked[int(lm[0, 1]) + 6:, :] = (150, 190, 230)  # light-blue "mask" from below the eyes down
    assert lower_face_occlusion(masked, lm) > 20
    assert np.isnan(lower_face_occlusion(skin, np.zeros((5, 2))))


def test_detection_dataclass_defaults():
    d = Detection(box=(0, 0, 1, 1), landmarks=np.zeros((5, 2), np.float32), score=1.0, method="dlib_hog")
    assert d.masked is False and np.isnan(d.occlusion) and d.shape68 is None


def test_settings_validation_and_pickling_keeps_settings_only():
    with pytest.raises(ValueError):
        FaceLandmarkDetector(min_side=500, max_side=100)
    det = FaceLandmarkDetector(min_side=200, low_threshold=-0.8, use_cnn=False, occlusion_threshold=6.0)
    data = pickle.dumps(det)
    assert len(data) < 1000  # no model inside
    back = pickle.loads(data)
    assert back.__getstate__() == det.__getstate__()
    assert "low_threshold=-0.8" in repr(back)


def test_missing_packages_give_a_clear_import_error(monkeypatch):
    assert "dlib-bin" in INSTALL_HINT and "face_recognition_models" in INSTALL_HINT
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "face_recognition_models" else real_find_spec(name, *a))
    assert available() is False
    with pytest.raises(ImportError, match="face_recognition_models"):
        ld.model_paths()
    monkeypatch.setitem(sys.modules, "dlib", None)  # "import dlib" now raises ImportError
    with pytest.raises(ImportError, match="dlib-bin"):
        ld._import_dlib()


def test_invalid_images_are_rejected():
    det = FaceLandmarkDetector()
    with pytest.raises(ValueError, match="uint8"):
        det.detect(np.zeros((50, 50, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        det.detect(np.zeros((50, 50, 2), np.uint8))


# ----------------------------------------------------------------------------------- with dlib


needs_dlib = pytest.mark.skipif(not available(), reason=INSTALL_HINT)


@pytest.fixture(scope="module")
def detector() -> FaceLandmarkDetector:
    pytest.importorskip("dlib", reason=INSTALL_HINT)
    if not available():
        pytest.skip(INSTALL_HINT)
    return FaceLandmarkDetector().load()


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """A real frontal face photo (600x512) that ships with matplotlib."""
    from PIL import Image

    cbook = pytest.importorskip("matplotlib.cbook")
    try:
        path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        return np.asarray(Image.open(path).convert("RGB")).copy()
    except Exception as exc:
        pytest.skip(f"matplotlib sample image unavailable: {exc}")


@pytest.fixture(scope="module")
def reference(detector, face) -> Detection:
    found = detector.detect(face, masked=False)
    assert len(found) == 1
    return found[0]


def eye_distance(lm: np.ndarray) -> float:
    return float(np.hypot(*(lm[1] - lm[0])))


@needs_dlib
@pytest.mark.parametrize("kind", ["grey", "black", "white", "noise", "empty", "one_pixel"])
def test_no_face_gives_an_empty_list(detector, kind):
    rng = np.random.default_rng(3)
    img = {
        "grey": np.full((109, 89, 3), 128, np.uint8),
        "black": np.zeros((240, 320, 3), np.uint8),
        "white": np.full((109, 89), 255, np.uint8),
        "noise": cv2.GaussianBlur(rng.integers(0, 256, (109, 89, 3), dtype=np.uint8), (0, 0), 2.0),
        "empty": np.zeros((0, 0, 3), np.uint8),
        "one_pixel": np.zeros((1, 1, 3), np.uint8),
    }[kind]
    assert detector.detect(img) == []
    assert detector.detect_one(img) is None


@needs_dlib
def test_real_face_landmarks_are_plausible(reference, face):
    d = reference
    assert d.method == "dlib_hog" and d.score > 0 and d.masked is False
    lm = d.landmarks
    assert lm.shape == (5, 2) and lm.dtype == np.float32
    assert d.shape68.shape == (68, 2)
    np.testing.assert_allclose(lm, five_from_68(d.shape68))
    le, re, nose, lmo, rmo = lm
    assert le[0] < re[0] and lmo[0] < rmo[0]  # image-left first, as in CelebA
    assert max(le[1], re[1]) < nose[1] < min(lmo[1], rmo[1])
    assert le[0] < nose[0] < re[0]
    x0, y0, x1, y1 = d.box
    assert x0 < lm[:, 0].min() and lm[:, 0].max() < x1 and y0 < lm[:, 1].min() and lm[:, 1].max() < y1
    assert 60 < eye_distance(lm) < 140  # the face is ~220 px wide in this 512x600 photo


@needs_dlib
def test_mirrored_photo_gives_mirrored_landmarks(detector, face, reference):
    w = face.shape[1]
    got = detector.detect_one(np.ascontiguousarray(face[:, ::-1]), masked=False)
    assert got is not None
    expected = reference.landmarks.astype(np.float64).copy()
    expected[:, 0] = w - 1 - expected[:, 0]
    expected = expected[[1, 0, 2, 4, 3]]  # left and right swap sides
    assert np.abs(got.landmarks - expected).max() < 0.12 * eye_distance(reference.landmarks)


@needs_dlib
@pytest.mark.parametrize("width", [89, 140, 1100])
def test_small_and_large_copies_map_back_to_the_same_landmarks(detector, face, reference, width):
    """89 px wide: upsampled for detection; 1100 px wide: shrunk for detection, landmarks on the original."""
    h, w = face.shape[:2]
    height = int(round(h * width / w))
    interp = cv2.INTER_AREA if width < w else cv2.INTER_CUBIC
    img = cv2.resize(face, (width, height), interpolation=interp)
    got = detector.detect_one(img, masked=False)
    assert got is not None
    s = np.array([width / w, height / h])
    expected = (reference.landmarks + 0.5) * s - 0.5
    tol = 0.12 * eye_distance(expected)
    assert np.abs(got.landmarks[:2] - expected[:2]).max() < tol  # eyes
    assert np.abs(got.landmarks - expected).max() < 2 * tol
    box = np.array(got.box)
    ref_box = (np.array(reference.box).reshape(2, 2) + 0.5) * s - 0.5
    assert np.abs(box.reshape(2, 2) - ref_box).max() < 0.15 * (ref_box[1, 0] - ref_box[0, 0])


@needs_dlib
def test_grey_and_rgba_inputs(detector, face, reference):
    grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    rgba = np.dstack([face, np.full(face.shape[:2], 255, np.uint8)])
    for img in (grey, rgba):
        got = detector.detect_one(img, masked=False)
        assert got is not None
        assert np.abs(got.landmarks[:2] - reference.landmarks[:2]).max() < 0.1 * eye_distance(reference.landmarks)


def cover_lower_face(image: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """An opaque light-blue mask from below the eyes to under the mouth, cheek to cheek."""
    d = eye_distance(lm)
    eye_y = (lm[0, 1] + lm[1, 1]) / 2
    top = eye_y + 0.35 * (lm[2, 1] - eye_y)
    bottom = (lm[3, 1] + lm[4, 1]) / 2 + 0.6 * d
    poly = np.array([[lm[0, 0] - 0.5 * d, top], [lm[1, 0] + 0.5 * d, top],
                     [lm[4, 0] + 0.5 * d, lm[4, 1]], [lm[2, 0], bottom], [lm[3, 0] - 0.5 * d, lm[3, 1]]])
    out = image.copy()
    cv2.fillPoly(out, [np.round(poly).astype(np.int32)], (160, 195, 225))
    return out


@needs_dlib
def test_masked_face_is_found_flagged_and_keeps_its_eyes(detector, face, reference):
    masked = cover_lower_face(face, reference.landmarks)
    found = detector.detect(masked)
    assert len(found) == 1
    d = found[0]
    assert d.method in ("dlib_hog", "dlib_hog_low", "dlib_cnn")
    assert d.masked is True and d.occlusion > detector.occlusion_threshold
    iod = eye_distance(reference.landmarks)
    assert np.abs(d.landmarks[:2] - reference.landmarks[:2]).max() < 0.15 * iod
    # nose and mouth come from the eyes (CelebA geometry), not from the predictor under the mask
    np.testing.assert_allclose(d.landmarks, lower_face_from_eyes(d.landmarks), atol=1e-4)
    assert np.abs(d.landmarks[2:] - reference.landmarks[2:]).max() < 0.35 * iod
    # forcing masked=False returns the raw predictor points
    raw = detector.detect_one(masked, masked=False)
    assert raw.masked is False and np.isnan(raw.occlusion)
    np.testing.assert_allclose(raw.landmarks, five_from_68(raw.shape68))


@needs_dlib
def test_masked_true_forces_the_eye_based_lower_face(detector, face):
    d = detector.detect_one(face, masked=True)
    assert d.masked is True
    np.testing.assert_allclose(d.landmarks, lower_face_from_eyes(five_from_68(d.shape68)), atol=1e-4)


@needs_dlib
def test_cascade_steps_can_be_switched_off(face, reference):
    masked = cover_lower_face(face, reference.landmarks)
    hog_only = FaceLandmarkDetector(use_cnn=False, low_threshold=0.0, verify_threshold=0.0)
    for d in hog_only.detect(masked):
        assert d.method == "dlib_hog"
    assert [d.method for d in hog_only.detect(face)] == ["dlib_hog"]
    assert hog_only.detect(face, max_faces=0) == []


@needs_dlib
def test_upper_face_evidence_separates_a_face_from_texture(face, reference):
    skin, eyes, symmetry = upper_face_evidence(face, reference.landmarks)
    assert skin > 0.5 and eyes > 10 and symmetry > 0.3
    noise = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, face.shape, dtype=np.uint8), (0, 0), 3.0)
    skin, eyes, symmetry = upper_face_evidence(noise, reference.landmarks)
    assert skin < 0.5 and eyes < 10 and symmetry < 0.3


@needs_dlib
def test_the_verified_step_finds_a_masked_face_the_other_steps_miss(face, reference):
    masked = cover_lower_face(face, reference.landmarks)
    without = FaceLandmarkDetector(use_cnn=False, low_threshold=0.0, verify_threshold=0.0)
    assert without.detect(masked) == []
    found = FaceLandmarkDetector(use_cnn=False, low_threshold=0.0, verify_threshold=-0.8).detect(masked)
    assert [d.method for d in found] == ["dlib_hog_verified"]
    assert np.abs(found[0].landmarks[:2] - reference.landmarks[:2]).max() < 0.15 * eye_distance(reference.landmarks)
    # a demanding check turns it off again
    strict = FaceLandmarkDetector(use_cnn=False, low_threshold=0.0, verify_threshold=-0.8, verify_skin=1.01)
    assert strict.detect(masked) == []


@needs_dlib
def test_cnn_on_a_shrunk_copy_maps_boxes_back(face):
    full = FaceLandmarkDetector(cnn_max_side=4000)._cnn(face)
    small = FaceLandmarkDetector(cnn_max_side=320)._cnn(face)
    assert len(full) == len(small) == 1
    a, b = full[0][0], small[0][0]
    width = a.right() - a.left()
    assert max(abs(a.left() - b.left()), abs(a.top() - b.top()), abs(a.right() - b.right()),
               abs(a.bottom() - b.bottom())) < 0.15 * width
    with pytest.raises(ValueError, match="cnn_max_side"):
        FaceLandmarkDetector(cnn_max_side=50)


def _detect_in_worker(args):
    det, image = args
    found = det.detect(image, masked=False)
    return [d.landmarks for d in found]


@needs_dlib
def test_detector_works_in_a_spawned_worker_process(detector, face, reference):
    small = cv2.resize(face, (256, 300), interpolation=cv2.INTER_AREA)
    here = [d.landmarks for d in detector.detect(small, masked=False)]
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        there = pool.submit(_detect_in_worker, (detector, small)).result(timeout=120)
    assert len(there) == len(here) == 1
    np.testing.assert_allclose(there[0], here[0], atol=1e-4)


@needs_dlib
@pytest.mark.parametrize("width", [89, 600])
def test_detect_in_region_finds_the_face_where_it_is_and_nothing_elsewhere(detector, face, reference, width):
    """The window search returns the whole-image detection's face in whole-image pixels; a window
    without the face finds nothing (the caller then runs the full cascade)."""
    h, w = face.shape[:2]
    height = int(round(h * width / w))
    img = cv2.resize(face, (width, height), interpolation=cv2.INTER_AREA) if width != w else face
    full = detector.detect_one(img, masked=False)
    assert full is not None
    x0, y0, x1, y1 = full.box
    m = 0.15 * (x1 - x0)
    found = detector.detect_in_region(img, (x0 - m, y0 - m, x1 + m, y1 + m), masked=False)
    assert len(found) == 1
    got = found[0]
    assert got.method in ("dlib_hog", "dlib_hog_low")
    assert np.abs(got.landmarks - full.landmarks).max() < 0.1 * eye_distance(full.landmarks)
    assert np.abs(np.subtract(got.box, full.box)).max() < 0.2 * (x1 - x0)
    # a corner strip away from the face
    assert detector.detect_in_region(img, (-0.5, -0.5, 0.2 * width, 0.2 * height), masked=False) == []
    assert detector.detect_in_region(img, (10.0, 10.0, 10.5, 10.5)) == []  # degenerate window
