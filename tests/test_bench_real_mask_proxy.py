"""Smoke test: benchmarks/bench_real_mask_proxy.py extract + score on synthetic photos, faces and a tiny model.

No shared data: the "photos" are synthetic, their detections are given in the cache (so the detector
never runs), and the CelebA side is a handful of generated crops with a split and landmarks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from unmask.imaging.alignment import template_points

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_real_mask_proxy.py"
SIZE = 128
MASK = np.array([[0.27, 0.53], [0.40, 0.51], [0.50, 0.50], [0.60, 0.51], [0.73, 0.53], [0.76, 0.70],
                 [0.68, 0.84], [0.50, 0.91], [0.32, 0.84], [0.24, 0.70]])


def _face(size: int, seed: int, mask_colour: tuple[int, int, int] | None) -> np.ndarray:
    """An aligned synthetic face, with a flat-coloured mask over nose, mouth and chin or without."""
    rng = np.random.default_rng(seed)
    s = size / 128.0
    img = np.empty((size, size, 3), np.float32)
    img[:] = (70, 95, 80)
    cv2.ellipse(img, (size // 2, int(0.58 * size)), (int(0.29 * size), int(0.42 * size)), 0, 0, 360,
                (205 - 10 * seed, 150, 125), -1)
    cv2.ellipse(img, (size // 2, int(0.12 * size)), (int(0.36 * size), int(0.16 * size)), 0, 0, 360, (45, 35, 30), -1)
    for x, y in template_points(size)[:2]:
        cv2.ellipse(img, (int(round(x)), int(round(y))), (max(1, int(5 * s)), max(1, int(2.5 * s))), 0, 0, 360,
                    (40, 30, 30), -1)
    mouth = template_points(size)[3:].mean(axis=0)
    cv2.ellipse(img, (int(mouth[0]), int(mouth[1])), (int(12 * s), max(1, int(3 * s))), 0, 0, 360, (170, 80, 80), -1)
    if mask_colour is not None:
        cv2.fillPoly(img, [np.round(MASK * size - 0.5).astype(np.int32)], mask_colour)
    img += rng.normal(0, 3, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(SCRIPT.parents[1] / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300,
                          env=_env(), check=False)


def _photos_and_cache(tmp: Path) -> tuple[Path, Path]:
    """A zip of 4 'photos' and a cache holding their detections and aligned faces (3 masked, 1 bare)."""
    photos, cache = tmp / "photos.zip", tmp / "cache"
    (cache / "aligned").mkdir(parents=True)
    colours = {"a.jpg": (120, 170, 215), "b.jpg": (25, 25, 30), "c.jpg": (150, 40, 50), "d.jpg": None}
    entries = {}
    with zipfile.ZipFile(photos, "w") as zf:
        for k, (name, colour) in enumerate(colours.items()):
            crop = _face(SIZE, k, colour)
            zf.writestr(f"real_masked_faces_dev/with_mask/{name}", cv2.imencode(".jpg", crop)[1].tobytes())
            file = f"{Path(name).stem}_0.png"
            cv2.imwrite(str(cache / "aligned" / file),
                        cv2.cvtColor(np.dstack([crop, np.full((SIZE, SIZE), 255, np.uint8)]), cv2.COLOR_RGBA2BGRA))
            entries[name] = {"shape": [SIZE, SIZE], "faces": [
                {"file": file, "method": "dlib_hog", "score": 1.0, "eye_distance": 31.2,
                 "landmarks": template_points(SIZE).round(2).tolist()}]}
        zf.writestr("real_masked_faces_dev/without_mask/e.jpg", b"not read")
    (cache / "detections.json").write_text(json.dumps(
        {"size": SIZE, "photos": str(photos.resolve()), "entries": entries}))
    return photos, cache


def _project_data(tmp: Path, n: int = 6, size: int = 32) -> Path:
    """data/ with face crops, crop landmarks, a split and synthetic masked faces, as the pipelines write them."""
    data = tmp / "data"
    for folder in ("03_primary/face_crops", "04_feature/masked_faces", "04_feature/mask_maps", "05_model_input"):
        (data / folder).mkdir(parents=True)
    ids = [f"{8001 + i:06d}" for i in range(n)]
    rows = []
    for k, image_id in enumerate(ids):
        crop = _face(size, k + 10, None)
        cv2.imwrite(str(data / "03_primary/face_crops" / f"{image_id}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        hidden = np.zeros((size, size), np.uint8)
        cv2.fillPoly(hidden, [np.round(MASK * size - 0.5).astype(np.int32)], 255)
        masked = crop.copy()
        masked[hidden > 0] = (200, 210, 230)
        cv2.imwrite(str(data / "04_feature/masked_faces" / f"{image_id}.png"), cv2.cvtColor(masked, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(data / "04_feature/mask_maps" / f"{image_id}.png"), hidden)
        pts = template_points(size) + (k % 3 - 1) * 0.5
        rows.append({"image_id": image_id, **{f"{p}_{a}": float(pts[j, i]) for j, p in enumerate(
            ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")) for i, a in enumerate("xy")}, "size": size})
    pd.DataFrame(rows).to_parquet(data / "03_primary/face_landmarks.parquet")
    split = pd.DataFrame({"image_id": ids + ["000001", "000002"], "split": ["test"] * n + ["train", "val"]})
    split.to_parquet(data / "05_model_input/data_split.parquet")
    return data


def test_extract_segments_splits_and_indexes_cutouts(tmp_path: Path) -> None:
    photos, cache = _photos_and_cache(tmp_path)
    done = _run("extract", "--photos", str(photos), "--cache", str(cache))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 photos" in done.stdout and "accepted 3 cut-outs from 3 photos" in done.stdout, done.stdout
    index = json.loads((cache / "index.json").read_text())
    assert index["accepted"] == 3 and index["photos_with_a_cutout"] == 3
    assert {e["source"] for e in index["cutouts"]} == {"a.jpg", "b.jpg", "c.jpg"}
    assert [r["reason"] for r in index["rejected"]] == ["mouth region looks like skin"]
    for e in index["cutouts"]:
        assert e["split"] in ("test", "train") and e["file"].startswith(e["split"] + "/")
        rgba = cv2.imread(str(cache / "cutouts" / e["file"]), cv2.IMREAD_UNCHANGED)
        assert rgba.shape == (SIZE, SIZE, 4)
        assert abs((rgba[..., 3] > 0).mean() - e["area"]) < 1e-3 and 0.12 < e["area"] < 0.55
    assert sum(index["cutouts_by_split"].values()) == 3
    assert list(cache.glob("sheet_*_1.png")) and (cache / "sheet_rejected.png").is_file()
    # a second run reuses the detections and drops the photos a person struck off
    (cache / "excluded.txt").write_text("# looked wrong on the contact sheet\nc.jpg\n")
    export = tmp_path / "train_cutouts"
    again = _run("extract", "--photos", str(photos), "--cache", str(cache), "--export-train", str(export))
    assert again.returncode == 0 and "0 to detect" in again.stdout and "accepted 2 cut-outs" in again.stdout
    index = json.loads((cache / "index.json").read_text())
    assert index["excluded_by_review"] == ["c.jpg"] and index["reasons"]["excluded by review"] == 1
    assert len(list((cache / "cutouts").glob("*/*.png"))) == 2  # the old cut-outs are cleared
    train = sorted(Path(e["file"]).name for e in index["cutouts"] if e["split"] == "train")
    assert sorted(p.name for p in export.glob("*.png")) == train  # the train half only
    # the cache must stay out of the repository
    inside = _run("extract", "--photos", str(photos), "--cache", str(SCRIPT.parents[1] / "data" / "real_masks"))
    assert inside.returncode == 2 and "inside the repository" in inside.stderr


def _test_cache(tmp: Path) -> Path:
    """A cache whose index holds three synthetic test cut-outs (and one train cut-out never pasted)."""
    cache = tmp / "cache"
    (cache / "cutouts" / "test").mkdir(parents=True)
    (cache / "cutouts" / "train").mkdir(parents=True)
    hidden = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(hidden, [np.round(MASK * SIZE - 0.5).astype(np.int32)], 255)
    cutouts = []
    for k, (split, colour) in enumerate([("test", (30, 30, 35)), ("test", (230, 230, 240)), ("test", (90, 160, 220)),
                                         ("train", (255, 0, 255))]):
        rgba = np.dstack([np.full((SIZE, SIZE, 3), colour, np.uint8), hidden])
        file = f"{split}/cut{k}.png"
        cv2.imwrite(str(cache / "cutouts" / file), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
        cutouts.append({"file": file, "split": split, "source": f"p{k}.jpg", "face": 0, "area": 0.3})
    (cache / "index.json").write_text(json.dumps({"segmentation_version": 0, "cutouts": cutouts}))
    return cache


def test_score_metrics_match_the_metrics_module() -> None:
    import importlib.util

    import torch

    from unmask.models.metrics import masked_ssim, ssim

    spec = importlib.util.spec_from_file_location("bench_real_mask_proxy", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    g = torch.Generator().manual_seed(0)
    clean, pred = torch.rand(3, 3, 32, 32, generator=g), torch.rand(3, 3, 32, 32, generator=g)
    mask = (torch.rand(3, 1, 32, 32, generator=g) > 0.6).double()
    values = bench._metrics(pred, clean, mask)
    assert np.allclose(values["ssim_mask"], masked_ssim(pred, clean, mask).numpy(), atol=1e-5)
    assert np.allclose(values["ssim"], ssim(pred, clean).numpy(), atol=1e-5)
    assert set(values) == {"psnr_mask", "ssim_mask", "l1_mask", "psnr", "ssim", "psnr_outside"}


def test_score_pastes_test_cutouts_and_scores_model_and_baselines(tmp_path: Path) -> None:
    import torch

    from unmask.models import build_model
    from unmask.models.checkpoint import save_model

    cache, data, out = _test_cache(tmp_path), _project_data(tmp_path), tmp_path / "out"
    torch.manual_seed(0)
    save_model(build_model("ra_unet", filters=(4, 8), composite=True), tmp_path / "model.safetensors")
    done = _run("score", "--cache", str(cache), "--data", str(data),
                "--checkpoint", str(tmp_path / "model.safetensors"), "--out", str(out), "--limit", "5", "--synthetic",
                "--threads", "1", "--device", "cpu", "--precision", "fp32", "--batch-size", "2", "--grid", "4")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| real | OpenCV Telea, given the true mask |" in done.stdout
    assert "| synthetic | Ours, blind (ra_unet, flip averaging) |" in done.stdout
    assert "Ours - Telea in the mask (real masks):" in done.stdout
    result = json.loads((out / "results.json").read_text())
    assert result["n_images"] == 5 and result["test_cutouts"] == 3 and result["cutouts_used"] == 3
    assert result["landmark_paste"] and result["jitter"] and result["model"]["flip_average"]
    for variant in ("real", "synthetic"):
        r = result[variant]
        assert set(r) == {"coverage", "model", "input", "telea", "navier_stokes"}
        assert 0.1 < r["coverage"] < 0.5
        for method in ("telea", "navier_stokes", "input"):
            assert r[method]["psnr_outside"] == 100.0  # the baselines leave every unmasked pixel exactly as it was
        assert r["telea"]["psnr_mask"] > r["input"]["psnr_mask"]
    assert result["gain_over_telea"]["psnr_mask"] == result["real"]["model"]["psnr_mask"] - result["real"]["telea"][
        "psnr_mask"]
    per_image = pd.read_csv(out / "per_image.csv")
    assert len(per_image) == 10 and set(per_image["masks"]) == {"real", "synthetic"}
    real = per_image[per_image["masks"] == "real"]
    assert not real["cutout"].str.startswith("train/").any()  # the train half is never pasted
    assert (out / "grid.png").is_file()

    # same draw again: identical numbers; without a model: the baselines alone
    again = _run("score", "--cache", str(cache), "--data", str(data),
                 "--checkpoint", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "out2"),
                 "--limit", "5", "--threads", "1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "scoring the baselines only" in again.stdout
    second = json.loads((tmp_path / "out2" / "results.json").read_text())
    assert "model" not in second["real"] and "gain_over_telea" not in second
    assert second["real"]["telea"] == result["real"]["telea"]
    inside = _run("score", "--cache", str(cache), "--data", str(data), "--out", str(SCRIPT.parents[1] / "data" / "x"))
    assert inside.returncode == 2 and "inside the repository" in inside.stderr
