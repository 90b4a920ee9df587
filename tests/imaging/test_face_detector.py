"""BlazeFace detector: anchors, decoding, merging, and faces found in photos made from one real face.

The one real face is matplotlib's bundled ``grace_hopper.jpg`` sample (matplotlib is a project
dependency), never shared data. Tests that need dlib's landmarks are skipped without it.
"""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest
from PIL import Image

from unmask.imaging.face_detector import (
    MODEL_PATH,
    BlazeFaceDetector,
    anchor_centres,
    decode,
    frame_face,
    load_blazeface,
    weighted_nms,
)
from unmask.imaging.landmark_detector import INSTALL_HINT, Detection, available

needs_dlib = pytest.mark.skipif(not available(), reason=INSTALL_HINT)


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """Grace Hopper, 512x600."""
    from matplotlib import cbook

    try:
        return np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))
    except Exception as exc:
        pytest.skip(f"matplotlib sample image unavailable: {exc}")


@pytest.fixture(scope="module")
def detector() -> BlazeFaceDetector:
    return BlazeFaceDetector()


# eyes of the sample, image-left first (measured once with dlib's 68-point predictor)
EYES = np.array([[220.0, 195.0], [306.5, 189.5]])


def _masked(face: np.ndarray) -> np.ndarray:
    """The sample with an opaque light-blue mask from below the eyes to the chin."""
    out = face.copy()
    cv2.fillPoly(out, [np.array([[170, 225], [360, 215], [350, 330], [265, 375], [185, 335]], np.int32)],
                 (170, 200, 230))
    return out


# ---------------------------------------------------------------------------------------- pure parts


def test_the_anchor_grid_is_48x48_row_by_row():
    anchors = anchor_centres()
    assert anchors.shape == (2304, 2)
    np.testing.assert_allclose(anchors[0], [0.5 / 48, 0.5 / 48])
    np.testing.assert_allclose(anchors[1], [1.5 / 48, 0.5 / 48])  # x varies fastest
    np.testing.assert_allclose(anchors[48], [0.5 / 48, 1.5 / 48])
    np.testing.assert_allclose(anchors[-1], [47.5 / 48, 47.5 / 48])


def test_decode_turns_offsets_in_input_pixels_into_unit_boxes_and_keypoints():
    anchors = anchor_centres()
    logits = np.full(2304, -10.0)
    regressors = np.zeros((2304, 16))
    logits[100] = 2.0
    regressors[100, :4] = [9.6, -19.2, 48.0, 96.0]  # dx, dy, w, h in 192-px input pixels
    regressors[100, 4:6] = [-19.2, 0.0]  # first keypoint 0.1 left of the anchor
    scores, boxes, keypoints = decode(logits, regressors, anchors, 192, min_score=0.5)
    assert scores.shape == (1,) and scores[0] == pytest.approx(1 / (1 + np.exp(-2.0)))
    cx, cy = anchors[100] + [0.05, -0.1]
    np.testing.assert_allclose(boxes[0], [cx - 0.125, cy - 0.25, cx + 0.125, cy + 0.25])
    np.testing.assert_allclose(keypoints[0, 0], anchors[100] - [0.1, 0.0])
    np.testing.assert_allclose(keypoints[0, 1:], np.repeat(anchors[100][None], 5, axis=0))
    assert decode(logits, regressors, anchors, 192, min_score=0.95)[0].shape == (0,)


def test_weighted_nms_merges_overlapping_boxes_and_keeps_separate_ones():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], float)
    keypoints = np.zeros((3, 6, 2))
    keypoints[1] += 3.0
    merged = weighted_nms(np.array([0.9, 0.3, 0.6]), boxes, keypoints)
    assert [m[3] for m in merged] == [0, 2] and merged[0][0] == 0.9
    np.testing.assert_allclose(merged[0][1], [0.25, 0, 10.25, 10])  # score-weighted mean
    np.testing.assert_allclose(merged[0][2], np.full((6, 2), 0.75))
    np.testing.assert_allclose(merged[1][1], boxes[2])


def test_bad_settings_and_a_missing_model_are_refused(tmp_path):
    with pytest.raises(ValueError, match="fallback_score"):
        BlazeFaceDetector(min_score=0.2, fallback_score=0.3)
    with pytest.raises(ValueError, match="pads"):
        BlazeFaceDetector(pads=())
    with pytest.raises(FileNotFoundError, match="package data"):
        load_blazeface(tmp_path / "missing.tflite")


def test_the_model_ships_beside_the_module():
    assert MODEL_PATH.is_file() and MODEL_PATH.stat().st_size > 500_000
    assert (MODEL_PATH.parent / "README.md").read_text().count("Apache") >= 1


# ------------------------------------------------------------------------------------------- photos


def test_the_face_is_found_with_its_eyes(face, detector):
    (box,) = detector.boxes(face)
    assert box.step == "blazeface" and box.score > 0.7
    x0, y0, x1, y1 = box.box
    assert x0 < EYES[:, 0].min() < EYES[:, 0].max() < x1 and y0 < EYES[:, 1].min() < y1
    # BlazeFace's first keypoint is the subject's right eye: the image's left
    np.testing.assert_allclose(box.keypoints[:2], EYES, atol=12)


def test_nothing_is_found_in_flat_images_and_hardly_anything_in_noise(detector):
    assert detector.boxes(np.full((120, 160, 3), 128, np.uint8)) == []
    assert detector.detect(np.zeros((1, 5, 3), np.uint8)) == []
    rng = np.random.default_rng(0)
    noise = []
    for i in range(8):  # sharp and blurred noise
        h, w = rng.integers(40, 300, 2)
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        noise.append(cv2.GaussianBlur(image, (0, 0), rng.uniform(1, 4)) if i % 2 else image)
    unchecked = BlazeFaceDetector(verify_skin=0.0)  # every low-score fallback face accepted
    assert sum(bool(detector.boxes(image)) for image in noise) <= 1
    assert sum(bool(unchecked.boxes(image)) for image in noise) >= 3


def test_a_tight_crop_is_found_thanks_to_the_padding(face, detector):
    tight = np.ascontiguousarray(face[150:360, 170:360])  # eyebrows to chin: the face fills the frame
    found = detector.boxes(tight)
    assert found and found[0].score > 0.5
    np.testing.assert_allclose(found[0].keypoints[:2], EYES - [170, 150], atol=15)


def test_a_small_face_in_a_large_photo_and_a_tilted_face_are_found(face, detector):
    small = cv2.resize(face, (64, 75), interpolation=cv2.INTER_AREA)
    photo = np.full((700, 900, 3), 200, np.uint8)
    photo[500:575, 700:764] = small
    (found,) = detector.boxes(photo)
    assert 700 <= (found.box[0] + found.box[2]) / 2 <= 764 and 500 <= (found.box[1] + found.box[3]) / 2 <= 575
    # the tile pass's keypoints collapse on a face this small; searched again zoomed in, they do not
    np.testing.assert_allclose(found.keypoints[:2], EYES * 64 / 512 + [700, 500], atol=3)
    matrix = cv2.getRotationMatrix2D((256, 300), 50, 1.0)
    tilted = cv2.warpAffine(face, matrix, (512, 600), borderMode=cv2.BORDER_REPLICATE)
    (found,) = detector.boxes(tilted)
    eyes = EYES @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(found.keypoints[:2], eyes, atol=20)


@needs_dlib
def test_detect_gives_detections_with_five_landmarks(face, detector):
    (plain,) = detector.detect(face)
    assert isinstance(plain, Detection) and plain.landmarks.shape == (5, 2) and plain.landmarks.dtype == np.float32
    assert not plain.masked and plain.shape68.shape == (68, 2)
    np.testing.assert_allclose(plain.landmarks[:2], EYES, atol=4)  # dlib's eyes
    assert plain.landmarks[3, 1] > plain.landmarks[2, 1] > plain.landmarks[0, 1]  # mouth below nose below eyes
    (masked,) = detector.detect(_masked(face))
    assert masked.masked and np.isfinite(masked.occlusion)
    np.testing.assert_allclose(masked.landmarks[:2], EYES, atol=10)  # an eye distance is 87 px
    forced = detector.detect(face, masked=True)[0]
    assert forced.masked and not np.allclose(forced.landmarks[2:], plain.landmarks[2:], atol=0.5)
    assert detector.detect_one(face) is not None and detector.detect(face, max_faces=0) == []


def test_boxes_whose_eyes_are_too_close_for_their_size_are_dropped(face):
    assert BlazeFaceDetector(min_eye_distance=0.3).boxes(face)  # the eyes are ~0.4 box widths apart
    assert BlazeFaceDetector(min_eye_distance=0.6).boxes(face) == []


@needs_dlib
def test_when_dlib_disagrees_with_the_eyes_nose_and_mouth_come_from_the_eyes(face, detector, monkeypatch):
    import unmask.imaging.face_detector as fd

    monkeypatch.setattr(fd, "_shape68_upright", lambda image, eyes: np.zeros((68, 2)) + [10.0, 10.0])
    (found,) = detector.detect(face, masked=False)
    assert found.masked  # nose and mouth placed from BlazeFace's eyes, whatever the caller asked
    np.testing.assert_allclose(found.landmarks[:2], EYES, atol=12)
    assert found.landmarks[3, 1] > found.landmarks[2, 1] > found.landmarks[0, 1] + 20


def test_the_detector_pickles_as_its_settings():
    detector = BlazeFaceDetector(min_score=0.6, pads=(0.5,), rotations=())
    clone = pickle.loads(pickle.dumps(detector))
    assert repr(clone) == repr(detector) and clone.pads == (0.5,) and clone.rotations == ()


@needs_dlib
def test_a_photo_that_is_a_masked_face_crop_gets_the_frames_face(face):
    tight = np.ascontiguousarray(_masked(face)[150:380, 165:365])  # eyebrows to chin, the lower half a mask
    found = frame_face(tight)
    assert isinstance(found, Detection) and found.method == "frame" and found.masked
    assert found.box == (0.0, 0.0, 200.0, 230.0)
    np.testing.assert_allclose(found.landmarks[:2], EYES - [165, 150], atol=15)
    assert found.landmarks[3:, 1].min() > found.landmarks[2, 1] > found.landmarks[:2, 1].max()  # mouth, nose, eyes
    assert frame_face(np.zeros((5, 40, 3), np.uint8)) is None
    taller = frame_face(tight, above=0.5, beside=0.1)  # a box for a crop that cut off forehead and cheeks
    assert taller.box == (-20.0, -115.0, 220.0, 230.0)
