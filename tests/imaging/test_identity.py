import pickle

import numpy as np
import pytest

from unmask.imaging import landmark_detector
from unmask.imaging.alignment import align_face
from unmask.imaging.demo_faces import render_demo_face
from unmask.imaging.identity import CHIP_SIZE, SAME_PERSON_DISTANCE, WORK_SIZE, IdentityEmbedder


@pytest.fixture(scope="module")
def face():
    image, landmarks = render_demo_face(0, 100)
    return align_face(image, landmarks, 64)[0]


def test_a_face_is_its_own_identity_and_a_grey_image_is_not(face):
    grey = np.full_like(face, 128)
    vector, distances = IdentityEmbedder().distances(face, [face, grey, 255 - face])
    assert vector.shape == (128,) and vector.dtype == np.float64 and np.all(np.isfinite(vector))
    assert distances.shape == (3,)
    assert distances[0] == 0.0
    assert distances[1] > SAME_PERSON_DISTANCE and distances[2] > SAME_PERSON_DISTANCE


def test_embeddings_are_deterministic_and_survive_pickling(face):
    embedder = IdentityEmbedder()
    again = pickle.loads(pickle.dumps(embedder))
    np.testing.assert_array_equal(embedder.embed(face), again.embed(face))


def test_landmarks_and_chips_have_the_working_geometry(face):
    embedder = IdentityEmbedder()
    points = embedder.landmarks(face)
    assert points.shape == (5, 2) and np.all((points >= 0) & (points < WORK_SIZE))
    # the same face at 256 px: the same points, up to a pixel
    image, landmarks = render_demo_face(0, 100)
    assert np.abs(embedder.landmarks(align_face(image, landmarks, 256)[0]) - points).max() <= 2
    chip = embedder.chip(face, points)
    assert chip.shape == (CHIP_SIZE, CHIP_SIZE, 3) and chip.dtype == np.uint8
    assert embedder.embed_chips([]).shape == (0, 128)


@pytest.mark.parametrize("bad", [np.zeros((64, 48, 3), np.uint8), np.zeros((64, 64, 3), np.float32),
                                 np.zeros((64, 64), np.uint8)])
def test_crops_must_be_square_rgb_uint8(bad):
    with pytest.raises(ValueError, match="square HxWx3 uint8"):
        IdentityEmbedder().landmarks(bad)


def test_a_missing_model_file_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(landmark_detector, "_CACHE", {})
    monkeypatch.setattr(landmark_detector, "_models_dir", lambda: tmp_path)
    with pytest.raises(ImportError, match="face_recognition_models"):
        IdentityEmbedder().load()
    monkeypatch.setattr(landmark_detector, "_models_dir", lambda: None)
    with pytest.raises(ImportError, match="pip install face_recognition_models"):
        IdentityEmbedder().load()
