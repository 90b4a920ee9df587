"""The procedural demo: CelebA's exact format, determinism, plausible landmarks, atomic writes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unmask.imaging import demo_faces
from unmask.imaging.celeba import read_identities, read_landmarks, read_partitions
from unmask.imaging.demo_faces import generate_demo_celeba
from unmask.imaging.landmarks import LANDMARK_COLUMNS

N_IMAGES, N_IDS = 12, 4


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return generate_demo_celeba(tmp_path_factory.mktemp("demo") / "celeba", N_IMAGES, N_IDS, seed=3)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_matches_celeba(demo):
    names = sorted(p.name for p in (demo / "img_align_celeba").iterdir())
    assert names == [f"{k:06d}.jpg" for k in range(1, N_IMAGES + 1)]
    lines = (demo / "list_landmarks_align_celeba.txt").read_text().splitlines()
    assert lines[0] == str(N_IMAGES)
    assert lines[1].split() == LANDMARK_COLUMNS
    assert lines[1] == ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y "
                        "leftmouth_x leftmouth_y rightmouth_x rightmouth_y")
    assert len(lines) == N_IMAGES + 2
    assert all(re.fullmatch(r"\d{6}\.jpg(\s+\d+){10}", line) for line in lines[2:])
    parts = (demo / "list_eval_partition.txt").read_text().splitlines()
    assert [p.split()[0] for p in parts] == names
    assert all(re.fullmatch(r"\d{6}\.jpg [012]", p) for p in parts)
    ids = (demo / "identity_CelebA.txt").read_text().splitlines()
    assert all(re.fullmatch(r"\d{6}\.jpg \d+", line) for line in ids)
    for name in names[:3]:
        with Image.open(demo / "img_align_celeba" / name) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (178, 218))


def test_identities_and_partitions(demo):
    identity = read_identities(demo / "identity_CelebA.txt")
    partition = read_partitions(demo / "list_eval_partition.txt")
    assert set(identity) == set(range(1, N_IDS + 1))
    assert list(partition) == sorted(partition)  # CelebA order: train, then val, then test
    assert set(partition) == {0, 1, 2}
    by_identity = partition.groupby(identity).nunique()
    assert (by_identity == 1).all()  # identity-disjoint splits, as in CelebA


def test_deterministic_bytes(demo, tmp_path):
    again = generate_demo_celeba(tmp_path / "again", N_IMAGES, N_IDS, seed=3)
    assert _files(again) == _files(demo)
    other = generate_demo_celeba(tmp_path / "other", N_IMAGES, N_IDS, seed=4)
    assert (other / "img_align_celeba/000001.jpg").read_bytes() != (demo / "img_align_celeba/000001.jpg").read_bytes()


def test_landmarks_plausible_and_on_the_drawing(demo):
    lm = read_landmarks(demo / "list_landmarks_align_celeba.txt")
    assert list(lm.columns) == LANDMARK_COLUMNS and len(lm) == N_IMAGES
    eye_y = lm[["lefteye_y", "righteye_y"]].max(axis=1)
    mouth_y = lm[["leftmouth_y", "rightmouth_y"]].min(axis=1)
    assert (eye_y < lm["nose_y"]).all() and (lm["nose_y"] < mouth_y).all()
    assert (lm["lefteye_x"] < lm["nose_x"]).all() and (lm["nose_x"] < lm["righteye_x"]).all()
    assert (lm["leftmouth_x"] < lm["rightmouth_x"]).all()
    assert ((lm.filter(like="_x") >= 0) & (lm.filter(like="_x") < 178)).all().all()
    assert ((lm.filter(like="_y") >= 0) & (lm.filter(like="_y") < 218)).all().all()
    mean = lm.mean()
    target = dict(zip(LANDMARK_COLUMNS, [69, 110, 108, 110, 89, 135, 72, 152, 106, 152]))
    for col, value in target.items():
        assert abs(mean[col] - value) < 6, col
    # the eye landmarks sit on the (dark) pupils
    for iid, row in lm.iterrows():
        img = np.asarray(Image.open(demo / "img_align_celeba" / f"{iid}.jpg")).mean(axis=2)
        for x, y in row.to_numpy().reshape(5, 2)[:2].astype(int):
            assert img[y - 2: y + 3, x - 2: x + 3].min() < 60


def test_render_returns_exact_float_landmarks():
    image, lm = demo_faces.render_demo_face(1, 2)
    assert image.shape == (218, 178, 3) and image.dtype == np.uint8
    assert lm.shape == (5, 2) and lm.dtype == np.float64


def test_existing_complete_demo_is_reused(demo, monkeypatch):
    before = _files(demo)
    monkeypatch.setattr(demo_faces, "_write_dataset", lambda *a, **k: pytest.fail("regenerated"))
    assert generate_demo_celeba(demo, N_IMAGES, N_IDS, seed=3) == demo
    assert _files(demo) == before
    manifest = json.loads((demo / "demo_manifest.json").read_text())
    assert manifest["n_images"] == N_IMAGES and manifest["seed"] == 3
    assert manifest["version"] == demo_faces.GENERATOR_VERSION


def test_other_parameters_regenerate(tmp_path):
    root = generate_demo_celeba(tmp_path / "d", 3, 2, seed=0)
    generate_demo_celeba(root, 4, 2, seed=0)
    assert len(list((root / "img_align_celeba").iterdir())) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temporary folders left


def test_incomplete_demo_is_regenerated(tmp_path):
    root = generate_demo_celeba(tmp_path / "d", 3, 2, seed=0)
    (root / "img_align_celeba" / "000002.jpg").unlink()
    generate_demo_celeba(root, 3, 2, seed=0)
    assert (root / "img_align_celeba" / "000002.jpg").is_file()


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def boom(ident, rng):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(ident, rng)

    real = demo_faces._render
    monkeypatch.setattr(demo_faces, "_render", boom)
    with pytest.raises(KeyboardInterrupt):
        generate_demo_celeba(tmp_path / "d", 4, 2, seed=0)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a demo"):
        generate_demo_celeba(tmp_path / "mine", 2, 1)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_rejects_bad_counts(tmp_path):
    with pytest.raises(ValueError):
        generate_demo_celeba(tmp_path / "d", 0, 1)


def test_stale_temporaries_removed_and_permissions_follow_umask(tmp_path):
    stale = tmp_path / ".d.tmp-999999999-deadbeef"  # a generation killed long ago (no such pid)
    stale.mkdir()
    (stale / "half.jpg").write_bytes(b"x")
    root = generate_demo_celeba(tmp_path / "d", 2, 1, seed=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    umask = os.umask(0)
    os.umask(umask)
    assert root.stat().st_mode & 0o777 == 0o777 & ~umask
