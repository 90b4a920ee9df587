"""Ingest nodes: source selection, indexing, landmarks (annotation, detector, template), the
in-the-wild layout, quarantine of bad inputs, MLflow counts, the benchmark script, pipeline wiring.

The face detector is replaced by ``FakeDetector`` (finds bright blobs on a black canvas) wherever
the test is about ingestion logic; one test runs the real dlib detector on a photo.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import base_params
from unmask.imaging.celeba import template_landmarks
from unmask.imaging.demo_faces import generate_demo_celeba
from unmask.imaging.landmarks import LANDMARK_COLUMNS
from unmask.pipelines.ingest import index as ingest_index
from unmask.pipelines.ingest.index import INDEX_COLUMNS
from unmask.pipelines.ingest.metrics import ingest_metrics
from unmask.pipelines.ingest.nodes import index_celeba_images, locate_celeba_source, report_ingest
from unmask.pipelines.ingest.pipeline import create_pipeline

N_IMAGES, N_IDS = 12, 4
BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_ingest.py"


@dataclass(frozen=True)
class FakeDetection:
    box: tuple
    landmarks: np.ndarray
    score: float = 1.0
    method: str = "fake"


class FakeDetector:
    """Stands in for FaceLandmarkDetector: every blob of pixels brighter than 8 (at least 10x10)
    is a "face", its landmarks the aligned template scaled to the blob's bounding box. Module
    level, so that it pickles into worker processes; ``method`` names the process it ran in."""

    use_cnn_calls: list = []  # the use_cnn of every detect() call in this process

    def detect(self, image: np.ndarray, masked=None, use_cnn=None):
        FakeDetector.use_cnn_calls.append(use_cnn)
        return self._blobs(image)

    def _blobs(self, image: np.ndarray):
        bright = (np.asarray(image).max(axis=2) > 8).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(bright, connectivity=8)
        out = []
        for x, y, w, h, _area in stats[1:n]:
            if w >= 10 and h >= 10:
                out.append(FakeDetection((x - 0.5, y - 0.5, x + w - 0.5, y + h - 0.5),
                                         fake_landmarks(x, y, w, h), method=f"fake:{os.getpid()}"))
        return out

    def detect_in_region(self, image: np.ndarray, region, masked=None):
        """The blobs centred inside ``region``, marked as found by the window search."""
        x0, y0, x1, y1 = region
        return [dataclasses.replace(d, method=f"region:{d.method}") for d in self._blobs(image)
                if x0 <= (d.box[0] + d.box[2]) / 2 <= x1 and y0 <= (d.box[1] + d.box[3]) / 2 <= y1]


def fake_landmarks(x, y, w, h) -> np.ndarray:
    """What FakeDetector returns for a blob at (x, y) of size w x h (0.25 px off the template)."""
    return template_landmarks(w, h) + (x + 0.25, y)


@pytest.fixture
def fake_detector(monkeypatch):
    monkeypatch.setattr(ingest_index, "make_detector", lambda settings: FakeDetector())


@pytest.fixture(scope="module")
def demo_master(tmp_path_factory) -> Path:
    return generate_demo_celeba(tmp_path_factory.mktemp("demo") / "demo_celeba", N_IMAGES, N_IDS, seed=0)


@pytest.fixture
def params(tmp_path, demo_master) -> dict:
    shutil.copytree(demo_master, tmp_path / "demo_celeba")  # already complete: reused, not regenerated
    return base_params("ingest", source="auto", celeba_path=str(tmp_path / "celeba"),
                       demo_path=str(tmp_path / "demo_celeba"), demo_images=N_IMAGES, demo_identities=N_IDS, seed=0,
                       limit=None, min_size=32)


@pytest.fixture
def celeba_copy(tmp_path, demo_master) -> Path:
    """A 'real CelebA' folder at celeba_path (a copy of the demo, without its manifest)."""
    root = tmp_path / "celeba"
    shutil.copytree(demo_master, root)
    (root / "demo_manifest.json").unlink()
    return root


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


# ----------------------------------------------------------------------------- locate source --


def test_auto_falls_back_to_demo(params, caplog):
    with caplog.at_level(logging.INFO):
        info = locate_celeba_source(params)
    assert info == {"kind": "folder", "layout": "aligned", "path": params["demo_path"], "images": params["demo_path"],
                    "dataset": "demo"}
    assert "demo" in caplog.text and "ingest.source=celeba" in caplog.text


def test_auto_generates_missing_demo(params, tmp_path):
    params["demo_path"] = str(tmp_path / "fresh_demo")
    params["demo_images"] = 3
    info = locate_celeba_source(params)
    assert info["dataset"] == "demo"
    assert len(list((tmp_path / "fresh_demo" / "img_align_celeba").iterdir())) == 3


def test_auto_and_celeba_use_celeba_when_present(params, celeba_copy):
    for choice in ("auto", "celeba"):
        info = locate_celeba_source({**params, "source": choice})
        assert info == {"kind": "folder", "layout": "aligned", "path": str(celeba_copy), "images": str(celeba_copy),
                        "dataset": "celeba"}


def test_demo_ignores_celeba(params, celeba_copy):
    assert locate_celeba_source({**params, "source": "demo"})["dataset"] == "demo"


def test_celeba_with_wrong_path_fails_helpfully(params, tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        locate_celeba_source({**params, "source": "celeba", "celeba_path": str(tmp_path / "typo")})
    msg = str(err.value)
    assert "typo" in msg and "mmlab.ie.cuhk.edu.hk" in msg and "ingest.source: demo" in msg
    assert not (tmp_path / "typo").exists()


def test_bad_source_rejected(params):
    with pytest.raises(ValueError, match="ingest.source='imagenet': .*'auto', 'demo' or 'celeba'"):
        locate_celeba_source({**params, "source": "imagenet"})


@pytest.mark.parametrize(("override", "message"), [
    ({"check": "full"}, "ingest.check='full': .*'decode' or 'header'"),
    ({"executor": "fork"}, "ingest.executor='fork': .*'auto', 'process' or 'thread'"),
    ({"min_size": "32"}, "ingest.min_size='32'"),
    ({"limit": 0}, "ingest.limit=0"),
    ({"workers": True}, "ingest.workers=True"),
    ({"chunk_size": 0}, "ingest.chunk_size=0"),
    ({"demo_images": 2.5}, "ingest.demo_images=2.5"),
    ({"detector": {"min_side": 160, "max_side": 1280, "use_cnn": True, "upsample": 2}},
     "unknown parameter ingest.detector.upsample"),
    ({"detector": {"min_side": 640, "max_side": 320, "use_cnn": True}}, "ingest.detector=.*max_side"),
    ({"detector": {"min_side": 160, "max_side": 1280, "use_cnn": "no"}}, "ingest.detector.use_cnn='no'"),
    ({"sources": "demo"}, "unknown parameter ingest.sources"),
])
def test_bad_parameters_are_rejected_before_any_work(params, override, message):
    with pytest.raises(ValueError, match=message):
        locate_celeba_source({**params, **override})
    with pytest.raises(ValueError, match=message):
        index_celeba_images({"path": params["demo_path"]}, {**params, **override})


def test_a_missing_parameter_is_named(params):
    del params["celeba_path"]
    with pytest.raises(ValueError, match="ingest.celeba_path is missing"):
        locate_celeba_source(params)


# --------------------------------------------------------------------------------- indexing --


def _index(params, source_info=None):
    return index_celeba_images(source_info or locate_celeba_source(params), params)


def test_index_demo(params):
    index, quarantine = _index(params)
    assert list(index.columns) == INDEX_COLUMNS
    assert len(index) == N_IMAGES and quarantine.empty
    assert list(quarantine.columns) == ["image_id", "member", "reason", "detail"]
    assert index["image_id"].tolist() == [f"{k:06d}" for k in range(1, N_IMAGES + 1)]
    assert index["member"].iloc[0] == "img_align_celeba/000001.jpg"
    assert (index["source"] == params["demo_path"]).all()
    assert (index[["width", "height"]] == [178, 218]).all().all()
    assert str(index["identity"].dtype) == "Int64" and str(index["partition"].dtype) == "Int64"
    assert index["identity"].notna().all() and set(index["partition"]) <= {0, 1, 2}
    assert (index[LANDMARK_COLUMNS].dtypes == np.float64).all()
    assert (index["landmark_source"] == "annotation").all()
    lines = (Path(params["demo_path"]) / "list_landmarks_align_celeba.txt").read_text().splitlines()
    first = [float(v) for v in lines[2].split()[1:]]
    assert index.loc[0, LANDMARK_COLUMNS].tolist() == first


def test_index_round_trips_through_parquet_and_csv(params, tmp_path):
    index, quarantine = _index(params)
    index.to_parquet(tmp_path / "i.parquet")
    back = pd.read_parquet(tmp_path / "i.parquet")
    assert back[LANDMARK_COLUMNS].equals(index[LANDMARK_COLUMNS]) and back["identity"].equals(index["identity"])
    quarantine.to_csv(tmp_path / "q.csv", index=False)


def test_bad_inputs_are_quarantined_not_fatal(params, celeba_copy, caplog, fake_detector):
    images = celeba_copy / "img_align_celeba"
    good = (images / "000004.jpg").read_bytes()
    (images / "000002.jpg").write_bytes(b"")                           # zero-byte
    (images / "000003.jpg").write_bytes(good[: len(good) // 2])       # truncated
    (images / "000004.jpg").write_bytes(b"<html>404 not found</html>")  # undecodable
    (images / "000006.jpg").unlink()                                   # annotation rows without file
    shutil.copy(images / "000005.jpg", images / "000005.png")          # duplicate id
    gray = np.asarray(Image.open(images / "000001.jpg").convert("L"))
    (images / "000013.png").write_bytes(_png(gray))                     # grayscale, no annotations
    rgba = np.dstack([np.asarray(Image.open(images / "000007.jpg")), np.full((218, 178), 128, np.uint8)])
    (images / "000014.png").write_bytes(_png(rgba))                     # RGBA, no annotations
    (images / "000015.png").write_bytes(_png(np.zeros((20, 16, 3), np.uint8)))  # too small
    Image.open(images / "000008.jpg").convert("CMYK").save(images / "000016.jpg", quality=95)  # CMYK JPEG
    (images / "000017.jpg").write_bytes(b"")                           # zero-byte, no annotations

    with caplog.at_level(logging.INFO):
        index, quarantine = _index({**params, "source": "celeba"})
    reasons = dict(zip(quarantine["image_id"] + ":" + quarantine["member"].str.rsplit("/", n=1).str[-1],
                       quarantine["reason"]))
    assert reasons == {
        "000002:000002.jpg": "zero_byte",
        "000003:000003.jpg": "truncated",
        "000004:000004.jpg": "undecodable",
        "000005:000005.png": "duplicate_id",
        "000006:000006.jpg": "missing_file",
        "000015:000015.png": "too_small",
        "000017:000017.jpg": "zero_byte",
    }
    assert quarantine["detail"].str.len().gt(0).all()
    kept = set(index["image_id"])
    assert kept == {"000001", "000005", "000007", "000008", "000009", "000010", "000011", "000012",
                    "000013", "000014", "000016"}
    by_id = index.set_index("image_id")
    extra = by_id.loc[["000013", "000014", "000016"]]
    assert (extra["landmark_source"] == "detector").all()  # grey, RGBA and CMYK decode to RGB for the detector
    assert (by_id.drop(extra.index)["landmark_source"] == "annotation").all()
    assert extra["identity"].isna().all() and extra["partition"].isna().all()
    assert np.allclose(extra.loc["000013", LANDMARK_COLUMNS].to_numpy(float),
                       fake_landmarks(0, 0, 178, 218).reshape(-1))
    assert by_id.loc["000005", "member"] == "img_align_celeba/000005.jpg"
    assert quarantine["image_id"].is_monotonic_increasing
    assert "quarantined 7" in caplog.text and "face detector" in caplog.text
    assert "annotation: 8, detector: 3, template: 0" in caplog.text


def test_folder_and_zip_index_identically(params, celeba_copy, tmp_path):
    folder_index, _ = _index({**params, "source": "celeba"})
    zroot = tmp_path / "zipped"
    zroot.mkdir()
    with zipfile.ZipFile(zroot / "img_align_celeba.zip", "w") as zf:
        for p in sorted((celeba_copy / "img_align_celeba").iterdir()):
            zf.write(p, f"img_align_celeba/{p.name}")
    for name in ("list_landmarks_align_celeba.txt", "list_eval_partition.txt", "identity_CelebA.txt"):
        shutil.copy(celeba_copy / name, zroot / name)
    info = locate_celeba_source({**params, "source": "celeba", "celeba_path": str(zroot)})
    assert info["kind"] == "zip" and info["images"] == str(zroot / "img_align_celeba.zip")
    zip_index, quarantine = index_celeba_images(info, params)
    assert quarantine.empty
    assert (zip_index["source"] == str(zroot / "img_align_celeba.zip")).all()
    cols = [c for c in INDEX_COLUMNS if c != "source"]
    pd.testing.assert_frame_equal(zip_index[cols], folder_index[cols])


def test_limit_and_header_check(params):
    index, _ = _index({**params, "limit": 5, "check": "header", "workers": 1, "chunk_size": 2})
    assert index["image_id"].tolist() == ["000001", "000002", "000003", "000004", "000005"]


def test_images_without_any_annotation_files(params, celeba_copy, fake_detector):
    for name in ("list_landmarks_align_celeba.txt", "list_eval_partition.txt", "identity_CelebA.txt"):
        (celeba_copy / name).unlink()
    (celeba_copy / "img_align_celeba" / "000003.jpg").write_bytes(_jpeg(np.zeros((218, 178, 3), np.uint8)))
    index, quarantine = _index({**params, "source": "celeba"})
    assert len(index) == N_IMAGES and quarantine.empty and index["partition"].isna().all()
    by_id = index.set_index("image_id")
    # aligned images: the detector, and the aligned template only where it finds no face
    assert by_id["landmark_source"].to_dict() == {
        f"{k:06d}": "template" if k == 3 else "detector" for k in range(1, N_IMAGES + 1)}
    assert by_id.loc["000003", LANDMARK_COLUMNS].tolist() == [69, 110, 108, 110, 89, 135, 72, 152, 106, 152]
    # landmark_fallback: template skips the detector (the old behaviour)
    index, _ = _index({**params, "source": "celeba", "landmark_fallback": "template"})
    assert (index["landmark_source"] == "template").all()
    with pytest.raises(ValueError, match="ingest.landmark_fallback='guess': .*'detector' or 'template'"):
        _index({**params, "source": "celeba", "landmark_fallback": "guess"})


def test_landmarks_outside_image_are_quarantined(params, celeba_copy):
    path = celeba_copy / "list_landmarks_align_celeba.txt"
    lines = path.read_text().splitlines()
    lines[2] = "000001.jpg  69  109  106  113  77  142  73  152  108  900"
    path.write_text("\n".join(lines) + "\n")
    index, quarantine = _index({**params, "source": "celeba"})
    assert quarantine["reason"].tolist() == ["landmarks_outside_image"] and "000001" not in set(index["image_id"])
    assert "annotation landmarks fall outside the 178x218 image" in quarantine["detail"].iloc[0]


def test_systemic_errors_raise(params, celeba_copy):
    path = celeba_copy / "list_eval_partition.txt"
    path.write_text(path.read_text().replace("000003.jpg 0", "000003.jpg zero"))
    with pytest.raises(ValueError, match=r"list_eval_partition\.txt, line 3"):
        _index({**params, "source": "celeba"})
    path.write_text(path.read_text().replace("000003.jpg zero", "000003.jpg 0"))
    for p in (celeba_copy / "img_align_celeba").iterdir():
        p.write_bytes(b"")
    with pytest.raises(ValueError, match="No usable image.*zero_byte"):
        _index({**params, "source": "celeba"})


def test_pipeline_wiring():
    nodes = {n.name: n for n in create_pipeline().nodes}
    assert set(nodes) == {"locate_celeba_source_node", "index_celeba_images_node", "report_ingest_node"}
    assert nodes["locate_celeba_source_node"].inputs == ["params:ingest"]
    assert nodes["locate_celeba_source_node"].outputs == ["celeba_source"]
    assert nodes["index_celeba_images_node"].inputs == ["celeba_source", "params:ingest"]
    assert nodes["index_celeba_images_node"].outputs == ["celeba_index", "quarantine"]
    assert nodes["report_ingest_node"].inputs == ["celeba_index", "quarantine"]
    assert nodes["report_ingest_node"].outputs == ["ingest_report", "ingest_mlflow_metrics"]
    assert all(n.namespace is None for n in nodes.values())


# ---------------------------------------------------------------------------- wild layout ----

WILD = (400, 330)  # canvas width, height
OFFSETS = {1: (30, 40), 2: (150, 60), 3: (60, 90), 4: (200, 20), 5: (100, 100)}


@pytest.fixture
def wild(tmp_path, demo_master) -> Path:
    """A tiny in-the-wild CelebA: demo faces pasted on black canvases, with list_bbox_celeba.txt,
    list_landmarks_celeba.txt for images 1-2 only, identities, and Anno/'s aligned landmarks file
    (which the wild layout must ignore)."""
    root = tmp_path / "wild"
    images = root / "img_celeba"
    images.mkdir(parents=True)
    (root / "Anno").mkdir()
    aligned = pd.read_csv(demo_master / "list_landmarks_align_celeba.txt", sep=r"\s+", skiprows=1)
    lm_rows, box_rows = [], []
    for k, (ox, oy) in OFFSETS.items():
        canvas = np.zeros((WILD[1], WILD[0], 3), np.uint8)
        canvas[oy:oy + 218, ox:ox + 178] = np.maximum(
            np.asarray(Image.open(demo_master / "img_align_celeba" / f"{k:06d}.jpg")), 20)
        if k == 5:  # a second, smaller face far from this image's annotated box
            canvas[10:60, 10:50] = 200
        (images / f"{k:06d}.png").write_bytes(_png(canvas))
        box_rows.append(f"{k:06d}.png {ox - 10} {oy - 10} 198 238")
        if k <= 2:
            lm = aligned.loc[f"{k:06d}.jpg"].to_numpy(float).reshape(5, 2) + (ox, oy)
            lm_rows.append(f"{k:06d}.png " + " ".join(f"{v:g}" for v in lm.reshape(-1)))
    # 6: no face at all; 7: a face, but not where its annotated box says
    (images / "000006.png").write_bytes(_png(np.zeros((WILD[1], WILD[0], 3), np.uint8)))
    far = np.zeros((WILD[1], WILD[0], 3), np.uint8)
    far[0:218, 0:178] = 128
    (images / "000007.png").write_bytes(_png(far))
    box_rows += ["000006.png 100 100 150 150", "000007.png 220 100 150 200"]
    (root / "Anno" / "list_bbox_celeba.txt").write_text(
        f"{len(box_rows)}\nimage_id x_1 y_1 width height\n" + "\n".join(box_rows) + "\n")
    (root / "Anno" / "list_landmarks_celeba.txt").write_text(
        f"{len(lm_rows)}\n" + " ".join(LANDMARK_COLUMNS) + "\n" + "\n".join(lm_rows) + "\n")
    shutil.copy(demo_master / "list_landmarks_align_celeba.txt", root / "Anno")  # as in the official Anno/
    (root / "Anno" / "identity_CelebA.txt").write_text("".join(f"{k:06d}.jpg {k % 3}\n" for k in range(1, 8)))
    return root


def test_wild_layout_annotations_detector_and_quarantine(params, wild, fake_detector):
    info = locate_celeba_source({**params, "source": "celeba", "celeba_path": str(wild)})
    assert info["layout"] == "wild" and info["kind"] == "folder"
    index, quarantine = index_celeba_images(info, {**params, "workers": 2})
    by_id = index.set_index("image_id")
    assert by_id["landmark_source"].to_dict() == {
        "000001": "annotation", "000002": "annotation", "000003": "detector", "000004": "detector",
        "000005": "detector"}
    assert by_id["identity"].tolist() == [1, 2, 0, 1, 2] and by_id["partition"].isna().all()
    assert (by_id[["width", "height"]] == list(WILD)).all().all()
    assert by_id.loc["000001", "member"] == "img_celeba/000001.png"
    # annotated rows come from list_landmarks_celeba.txt (wild coordinates), not the aligned file
    first = (Path(params["demo_path"]) / "list_landmarks_align_celeba.txt").read_text().splitlines()[2].split()[1:]
    expected = np.asarray(first, float).reshape(5, 2) + OFFSETS[1]
    assert np.allclose(by_id.loc["000001", LANDMARK_COLUMNS].to_numpy(float), expected.reshape(-1))
    # detections on the crop around the annotated box come back in full-image pixels; in image 5
    # the face inside the box wins over the blob outside it
    for k in (3, 4, 5):
        ox, oy = OFFSETS[k]
        assert np.allclose(by_id.loc[f"{k:06d}", LANDMARK_COLUMNS].to_numpy(float),
                           fake_landmarks(ox, oy, 178, 218).reshape(-1)), k
    # no template for wild images: a failed detection quarantines
    assert quarantine[["image_id", "reason"]].values.tolist() == [["000006", "no_face_found"],
                                                                  ["000007", "no_face_found"]]
    assert "annotated face box" in quarantine["detail"].iloc[1]
    # landmark_fallback: template cannot place wild faces
    index, quarantine = index_celeba_images(info, {**params, "landmark_fallback": "template"})
    assert set(index["image_id"]) == {"000001", "000002"}
    assert set(quarantine["reason"]) == {"no_landmarks"}
    assert ingest_metrics(index, quarantine) == {
        "ingest.images": 2.0, "ingest.landmarks.annotation": 2.0, "ingest.landmarks.detector": 0.0,
        "ingest.landmarks.template": 0.0, "ingest.quarantined": 5.0, "ingest.quarantined.no_landmarks": 5.0}


def test_wild_layout_without_boxes_picks_the_central_face(params, wild, fake_detector):
    (wild / "Anno" / "list_bbox_celeba.txt").unlink()
    index, quarantine = index_celeba_images(
        locate_celeba_source({**params, "source": "celeba", "celeba_path": str(wild)}), params)
    by_id = index.set_index("image_id")
    ox, oy = OFFSETS[5]  # the big face, not the small blob in the corner
    assert np.allclose(by_id.loc["000005", LANDMARK_COLUMNS].to_numpy(float),
                       fake_landmarks(ox, oy, 178, 218).reshape(-1))
    assert by_id.loc["000007", "landmark_source"] == "detector"  # no box to contradict it now
    assert quarantine["image_id"].tolist() == ["000006"] and "in the image" in quarantine["detail"].iloc[0]


def test_aligned_images_search_the_face_region_first_then_the_whole_image(params, celeba_copy, fake_detector,
                                                                          caplog):
    (celeba_copy / "list_landmarks_align_celeba.txt").unlink()
    off_centre = np.zeros((218, 178, 3), np.uint8)
    off_centre[5:60, 5:60] = 200  # the only "face" lies outside the aligned face region
    (celeba_copy / "img_align_celeba" / "000003.jpg").write_bytes(_png(off_centre))
    FakeDetector.use_cnn_calls.clear()
    with caplog.at_level(logging.INFO):
        index, quarantine = _index({**params, "source": "celeba", "executor": "thread", "workers": 1})
    assert quarantine.empty and (index["landmark_source"] == "detector").all()
    assert FakeDetector.use_cnn_calls == [False]  # one whole-image search, without the CNN by default
    methods = dict(re.findall(r"(region:fake|(?<!region:)fake):\d+: (\d+)", caplog.text))
    assert methods == {"region:fake": str(N_IMAGES - 1), "fake": "1"}  # the full search only where needed
    by_id = index.set_index("image_id")
    assert np.allclose(by_id.loc["000003", LANDMARK_COLUMNS].to_numpy(float),
                       fake_landmarks(5, 5, 55, 55).reshape(-1))

    caplog.clear()
    with caplog.at_level(logging.INFO):
        whole, _ = _index({**params, "source": "celeba", "executor": "thread", "workers": 1,
                           "aligned_region_margin": None})
    assert "region:" not in caplog.text
    pd.testing.assert_frame_equal(whole, index)
    FakeDetector.use_cnn_calls.clear()
    _index({**params, "source": "celeba", "executor": "thread", "workers": 1, "aligned_cnn": True})
    assert FakeDetector.use_cnn_calls == [None]  # the detector's own setting: CNN on
    with pytest.raises(ValueError, match="ingest.aligned_cnn='yes'"):
        _index({**params, "source": "celeba", "aligned_cnn": "yes"})
    with pytest.raises(ValueError, match="ingest.aligned_region_margin=-1: .*greater than or equal to 0"):
        _index({**params, "source": "celeba", "aligned_region_margin": -1})


# ------------------------------------------------------------------------------- workers -----


def test_detection_in_worker_processes(params, celeba_copy, fake_detector, caplog):
    (celeba_copy / "list_landmarks_align_celeba.txt").unlink()
    with caplog.at_level(logging.INFO):
        index, quarantine = _index({**params, "source": "celeba", "executor": "process", "workers": 2,
                                    "chunk_size": 4})
    assert len(index) == N_IMAGES and quarantine.empty
    assert (index["landmark_source"] == "detector").all()
    serial, _ = _index({**params, "source": "celeba", "executor": "thread", "workers": 1})
    pd.testing.assert_frame_equal(index, serial)
    pids = {int(p) for p in re.findall(r"fake:(\d+)", caplog.text)}
    assert pids and os.getpid() not in pids  # the detector ran in the pool's processes
    assert "2 processes" in caplog.text


def test_missing_detector_is_a_clear_error(params, celeba_copy, monkeypatch):
    from unmask.imaging import landmark_detector

    (celeba_copy / "list_landmarks_align_celeba.txt").unlink()
    monkeypatch.setattr(landmark_detector, "available", lambda: False)
    with pytest.raises(ImportError, match="dlib-bin.*landmark_fallback=template"):
        _index({**params, "source": "celeba"})
    index, _ = _index({**params, "source": "celeba", "landmark_fallback": "template"})
    assert (index["landmark_source"] == "template").all()
    _index({**params, "source": "demo"})  # fully annotated: the detector is never needed


def test_real_detector_on_a_photo(params, tmp_path):
    """The real dlib detector, on Grace Hopper's portrait (shipped with matplotlib) and a blank image."""
    from unmask.imaging import landmark_detector

    if not landmark_detector.available():
        pytest.skip("dlib / face_recognition_models not installed")
    cbook = pytest.importorskip("matplotlib.cbook")
    root = tmp_path / "photos" / "img_celeba"
    root.mkdir(parents=True)
    photo = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=True)).convert("RGB"))
    (root / "000001.jpg").write_bytes(_jpeg(photo))
    (root / "000002.jpg").write_bytes(_jpeg(np.full((64, 64, 3), 90, np.uint8)))
    info = locate_celeba_source({**params, "source": "celeba", "celeba_path": str(root.parent)})
    index, quarantine = index_celeba_images(info, {**params, "workers": 1})
    assert index["landmark_source"].tolist() == ["detector"]
    pts = index.loc[0, LANDMARK_COLUMNS].to_numpy(float).reshape(5, 2)
    # eyes, nose tip and mouth corners of the 512x600 portrait, within a few pixels
    expected = np.array([[222, 197], [311, 192], [266, 238], [233, 278], [309, 272]], float)
    assert np.abs(pts - expected).max() < 8, pts
    assert quarantine[["image_id", "reason"]].values.tolist() == [["000002", "no_face_found"]]


# ------------------------------------------------------------------------------- metrics -----


def test_report_ingest_returns_the_counts_as_json_and_for_mlflow(caplog):
    index = pd.DataFrame({"landmark_source": ["annotation", "detector", "detector", "template"]})
    quarantine = pd.DataFrame({"image_id": ["1", "2", "3"], "reason": ["too_small", "zero_byte", "too_small"]})
    expected = {"ingest.images": 4.0, "ingest.landmarks.annotation": 1.0, "ingest.landmarks.detector": 2.0,
                "ingest.landmarks.template": 1.0, "ingest.quarantined": 3.0, "ingest.quarantined.too_small": 2.0,
                "ingest.quarantined.zero_byte": 1.0}
    with caplog.at_level(logging.INFO):
        report, for_mlflow = report_ingest(index, quarantine)
    assert report == expected and "quarantined.too_small=2" in caplog.text
    # the catalog's MlflowMetricsHistoryDataset adds the `ingest.` prefix back
    assert for_mlflow == {k.removeprefix("ingest."): {"value": v, "step": 0} for k, v in expected.items()}


# ----------------------------------------------------------------------------- benchmark -----


def test_bench_ingest_script(demo_master, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH.parents[1] / "src"),
                                                         *filter(None, [os.environ.get("PYTHONPATH")])])}
    missing = subprocess.run([sys.executable, str(BENCH), "--celeba", str(tmp_path / "nope"), "--limit", "5"],
                             capture_output=True, text=True, timeout=60, env=env)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    done = subprocess.run([sys.executable, str(BENCH), "--celeba", str(demo_master), "--limit", "5"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "images/s" in out and "peak RSS" in out and "annotation" in out and "5 usable" in out
