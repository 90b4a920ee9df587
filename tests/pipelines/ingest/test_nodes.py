"""Ingest nodes: source selection, indexing, quarantine of bad inputs, pipeline wiring."""

from __future__ import annotations

import io
import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from unmask.imaging.demo_faces import generate_demo_celeba
from unmask.imaging.landmarks import LANDMARK_COLUMNS
from unmask.pipelines.ingest.nodes import INDEX_COLUMNS, index_celeba_images, locate_celeba_source
from unmask.pipelines.ingest.pipeline import create_pipeline

N_IMAGES, N_IDS = 12, 4


@pytest.fixture(scope="module")
def demo_master(tmp_path_factory) -> Path:
    return generate_demo_celeba(tmp_path_factory.mktemp("demo") / "demo_celeba", N_IMAGES, N_IDS, seed=0)


@pytest.fixture
def params(tmp_path, demo_master) -> dict:
    shutil.copytree(demo_master, tmp_path / "demo_celeba")  # already complete: reused, not regenerated
    return {"source": "auto", "celeba_path": str(tmp_path / "celeba"), "demo_path": str(tmp_path / "demo_celeba"),
            "demo_images": N_IMAGES, "demo_identities": N_IDS, "seed": 0, "limit": None, "min_size": 32}


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


# ----------------------------------------------------------------------------- locate source --


def test_auto_falls_back_to_demo(params, caplog):
    with caplog.at_level(logging.INFO):
        info = locate_celeba_source(params)
    assert info == {"kind": "folder", "path": params["demo_path"], "images": params["demo_path"], "dataset": "demo"}
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
        assert info == {"kind": "folder", "path": str(celeba_copy), "images": str(celeba_copy), "dataset": "celeba"}


def test_demo_ignores_celeba(params, celeba_copy):
    assert locate_celeba_source({**params, "source": "demo"})["dataset"] == "demo"


def test_celeba_with_wrong_path_fails_helpfully(params, tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        locate_celeba_source({**params, "source": "celeba", "celeba_path": str(tmp_path / "typo")})
    msg = str(err.value)
    assert "typo" in msg and "mmlab.ie.cuhk.edu.hk" in msg and "ingest.source: demo" in msg
    assert not (tmp_path / "typo").exists()


def test_bad_source_rejected(params):
    with pytest.raises(ValueError, match="auto, demo, celeba"):
        locate_celeba_source({**params, "source": "imagenet"})


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


def test_bad_inputs_are_quarantined_not_fatal(params, celeba_copy, caplog):
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
    }
    assert quarantine["detail"].str.len().gt(0).all()
    kept = set(index["image_id"])
    assert kept == {"000001", "000005", "000007", "000008", "000009", "000010", "000011", "000012",
                    "000013", "000014"}
    extra = index.set_index("image_id").loc[["000013", "000014"]]
    assert (extra["landmark_source"] == "template").all()
    assert extra["identity"].isna().all() and extra["partition"].isna().all()
    assert extra.loc["000013", LANDMARK_COLUMNS].tolist() == [69, 110, 108, 110, 89, 135, 72, 152, 106, 152]
    assert index.set_index("image_id").loc["000005", "member"] == "img_align_celeba/000005.jpg"
    assert "quarantined 6" in caplog.text and "template landmarks" in caplog.text


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


def test_images_without_any_annotation_files(params, celeba_copy):
    for name in ("list_landmarks_align_celeba.txt", "list_eval_partition.txt", "identity_CelebA.txt"):
        (celeba_copy / name).unlink()
    index, quarantine = _index({**params, "source": "celeba"})
    assert len(index) == N_IMAGES and quarantine.empty
    assert (index["landmark_source"] == "template").all() and index["partition"].isna().all()


def test_landmarks_outside_image_are_quarantined(params, celeba_copy):
    path = celeba_copy / "list_landmarks_align_celeba.txt"
    lines = path.read_text().splitlines()
    lines[2] = "000001.jpg  69  109  106  113  77  142  73  152  108  900"
    path.write_text("\n".join(lines) + "\n")
    index, quarantine = _index({**params, "source": "celeba"})
    assert quarantine["reason"].tolist() == ["landmarks_outside_image"] and "000001" not in set(index["image_id"])


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
    assert set(nodes) == {"locate_celeba_source_node", "index_celeba_images_node"}
    assert nodes["locate_celeba_source_node"].inputs == ["params:ingest"]
    assert nodes["locate_celeba_source_node"].outputs == ["celeba_source"]
    assert nodes["index_celeba_images_node"].inputs == ["celeba_source", "params:ingest"]
    assert nodes["index_celeba_images_node"].outputs == ["celeba_index", "quarantine"]
    assert all(n.namespace is None for n in nodes.values())
