"""unmask.imaging.celeba_landmarks: which detection is the face, where the detector searches, and the
landmarks it returns in image pixels (with a stand-in detector)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field

import numpy as np

from unmask.imaging.celeba_landmarks import BBOX_MARGIN, CelebALandmarkFinder, pick_face, search_area


@dataclass(frozen=True)
class Det:
    box: tuple
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((5, 2)))
    method: str = "hog"


@dataclass
class ScriptedDetector:
    """Answers ``detect_in_region`` and ``detect`` with fixed detections and records the calls."""

    in_region: list
    whole: list
    calls: list = field(default_factory=list)

    def detect_in_region(self, image, region, masked=None):
        self.calls.append(("region", region, masked))
        return self.in_region

    def detect(self, image, masked=None, use_cnn=None):
        self.calls.append(("detect", image.shape, use_cnn))
        return self.whole


def test_pick_face_prefers_large_central_faces():
    def det(x0, y0, x1, y1):
        return Det((x0, y0, x1, y1))

    central = det(40, 50, 140, 150)           # 100 px, at the centre of a 178x218 image
    corner_big = det(0, 0, 120, 120)          # larger, far from the centre
    tiny_centre = det(84, 104, 94, 114)       # right at the centre, tiny
    assert pick_face([tiny_centre, corner_big, central], 178, 218) is central
    assert pick_face([tiny_centre, corner_big], 178, 218) is corner_big
    assert pick_face([], 178, 218) is None
    # with an annotated box, only faces centred inside it count
    assert pick_face([central, corner_big], 178, 218, bbox=(0, 0, 80, 80)) is corner_big
    assert pick_face([central], 178, 218, bbox=(150, 150, 170, 210)) is None


def test_search_area_is_the_annotated_box_grown_by_the_margin():
    image = np.zeros((300, 400, 3), np.uint8)
    region, ox, oy, ref = search_area(image, (100, 50, 100, 120))
    m = BBOX_MARGIN * 120
    assert (ox, oy) == (int(np.floor(100 - m)), int(np.floor(50 - m)))
    assert region.shape[:2] == (int(np.ceil(50 + 120 + m)) - oy, int(np.ceil(100 + 100 + m)) - ox)
    assert ref == (100 - 0.5 - ox, 50 - 0.5 - oy, 200 - 0.5 - ox, 170 - 0.5 - oy)
    for unusable in (None, (0, 0, 0, 10), (500, 0, 10, 10)):  # no box, empty, outside the image
        region, ox, oy, ref = search_area(image, unusable)
        assert region is image and (ox, oy, ref) == (0, 0, None)


def test_aligned_images_search_the_face_region_first_without_the_cnn():
    image = np.zeros((218, 178, 3), np.uint8)
    face = Det((40, 50, 140, 150), np.arange(10.0).reshape(5, 2), method="region")
    detector = ScriptedDetector(in_region=[face], whole=[])
    finder = CelebALandmarkFinder(detector, aligned=True, aligned_region_margin=0.1)
    pts, method = finder.find(image)
    assert method == "region" and np.array_equal(pts, np.arange(10.0))
    assert [call[0] for call in detector.calls] == ["region"]  # found there: no whole-image search

    detector = ScriptedDetector(in_region=[], whole=[])
    assert CelebALandmarkFinder(detector, aligned=True, aligned_region_margin=0.1).find(image) is None
    assert detector.calls[-1] == ("detect", image.shape, False)  # the CNN only with aligned_cnn
    detector.calls.clear()
    CelebALandmarkFinder(detector, aligned=True, aligned_region_margin=None, aligned_cnn=True).find(image)
    assert detector.calls == [("detect", image.shape, None)]  # no region search; the detector's own CNN setting


def test_wild_images_search_around_the_box_and_return_image_pixels():
    image = np.zeros((300, 400, 3), np.uint8)
    inside = Det((10, 10, 60, 60), np.ones((5, 2)))  # in the region's coordinates
    detector = ScriptedDetector(in_region=[], whole=[inside])
    finder = CelebALandmarkFinder(detector, aligned=False, aligned_region_margin=0.1)
    pts, method = finder.find(image, (100, 50, 60, 60))
    _, ox, oy, _ = search_area(image, (100, 50, 60, 60))
    assert method == "hog" and np.array_equal(pts, (np.ones((5, 2)) + (ox, oy)).reshape(-1))
    assert [call[0] for call in detector.calls] == ["detect"]  # no aligned face region in the wild
    assert detector.calls[0][2] is None  # the detector's own CNN setting


def test_the_finder_pickles_with_its_settings():
    finder = CelebALandmarkFinder(ScriptedDetector([], []), aligned=True, aligned_region_margin=0.1, aligned_cnn=True)
    assert pickle.loads(pickle.dumps(finder)) == finder
