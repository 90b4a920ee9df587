"""Smoke test: benchmarks/bench_real_photos.py on a few images made here (never the shared photos)."""

from __future__ import annotations

import importlib.util
import json
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from unmask.models import build_model, save_model

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_real_photos.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_real_photos", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A zip with with_mask/ (a face with a drawn mask, a flat image) and without_mask/ (the face, noise)."""
    from matplotlib import cbook

    try:
        face = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))
    except Exception as exc:
        pytest.skip(f"matplotlib sample image unavailable: {exc}")
    face = cv2.resize(face, (256, 300), interpolation=cv2.INTER_AREA)
    masked = face.copy()
    cv2.fillPoly(masked, [np.array([[85, 112], [180, 107], [175, 165], [132, 187], [92, 167]], np.int32)],
                 (170, 200, 230))
    images = {"set/with_mask/masked.png": masked, "set/with_mask/flat.png": np.full((60, 80, 3), 90, np.uint8),
              "set/without_mask/face.jpg": face,
              "set/without_mask/noise.png": np.random.default_rng(0).integers(0, 256, (70, 50, 3), dtype=np.uint8)}
    path = tmp_path_factory.mktemp("photos") / "photos.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, image in images.items():
            ok, data = cv2.imencode(Path(name).suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            zf.writestr(name, data.tobytes())
        zf.writestr("set/notes.txt", "not an image")
    return path


def test_detect_only_on_a_zip_prints_the_groups_and_writes_figures_and_a_sheet(bench, photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert bench.main(["--photos", str(photos), "--detect-only", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "with_mask" in printed and "without_mask" in printed and "none (--detect-only)" in printed
    figures = json.loads((out / "figures.json").read_text())
    assert set(figures["groups"]) == {"with_mask", "without_mask"}
    assert figures["groups"]["with_mask"]["photos"] == 2 and "found_pct" not in figures["groups"]["with_mask"]
    assert figures["groups"]["with_mask"]["seconds_per_photo_median"] > 0
    assert "set/with_mask/flat.png" in figures["no_face_detected"]["with_mask"]
    assert Image.open(out / "contact_sheet.png").size[0] > 0


def test_with_a_tiny_mask_head_model_on_a_folder(bench, photos, tmp_path, capsys):
    folder = tmp_path / "folder"
    with zipfile.ZipFile(photos) as zf:
        zf.extractall(folder)
    checkpoint = tmp_path / "tiny.safetensors"
    torch.manual_seed(0)
    save_model(build_model("ra_unet", filters=(4, 8), composite=True), checkpoint, metadata={"crop_size": 32})
    out = tmp_path / "out"
    code = bench.main(["--photos", str(folder), "--checkpoint", str(checkpoint), "--out", str(out), "--stride", "1",
                       "--limit", "2", "--device", "cpu", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    groups = json.loads((out / "figures.json").read_text())["groups"]
    for group in ("with_mask", "without_mask"):
        assert {"found_pct", "unchanged_pct", "changed_area_pct_mean"} <= set(groups[group])
        assert groups[group]["found_pct"] + groups[group]["unchanged_pct"] == pytest.approx(100.0)
    assert "gate (--min-mask-fraction)" in printed or "photos_with_a_face_at_or_above_pct" not in groups["with_mask"]


def test_bad_arguments_exit_with_status_2(bench, photos, tmp_path, capsys):
    assert bench.main(["--photos", str(tmp_path / "missing.zip"), "--detect-only"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert bench.main(["--photos", str(photos), "--detect-only", "--out", str(SCRIPT.parent / "out")]) == 2
    assert "inside the repository" in capsys.readouterr().err
    assert not (SCRIPT.parent / "out").exists()
    assert bench.main(["--photos", str(photos), "--detect-only", "--stride", "0", "--out", str(tmp_path)]) == 2
