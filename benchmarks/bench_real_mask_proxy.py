"""Proxy test for masks the model never saw: real masks cut out of photos, pasted onto CelebA test faces.

    # 1. cut the masks out of the photos (cached: detection ~20 min on a busy 2-core CPU the first
    #    time, then 1-3 min of segmentation; --export-train also hands the train half to training)
    nice -n 15 .venv/bin/python benchmarks/bench_real_mask_proxy.py extract \\
        --photos ../shared/data/real_masked_faces_dev.zip
    # 2. paste the test half onto the test faces of `kedro run --env=celeba_sample` and score every method
    #    (~1 min for 1,000 faces with --synthetic)
    nice -n 15 .venv/bin/python benchmarks/bench_real_mask_proxy.py score --synthetic --out /tmp/real_mask_proxy

The model is judged on held-out faces wearing photographed masks of designs nobody here has seen.
Every mask we train and evaluate on comes from one generator (``mask_renderer``); this benchmark
shares nothing with it. ``extract`` finds each face of the ``with_mask`` photos with the project's
detector (nose and mouth placed from the eyes: ``masked=True``), aligns it to the canonical crop
(128 px) and segments its mask (:func:`unmask.imaging.mask_cutouts.segment_mask`: skin model of the
upper face, grabCut, plausibility rules). Accepted masks are saved as RGBA PNGs in the canonical frame
under ``--cache`` (default ``~/.cache/unmask/real_masks``, or ``$UNMASK_REAL_MASKS``; never inside the
repository) with an ``index.json``, split by photo: a hash of the file name puts about half into
``test``, the rest into ``train``, and near-identical photos (same face photo under two names, or
mirrored) share the split of their group. Only the ``test`` half is ever pasted here; the ``train``
half is for training textures (``--export-train``). Contact sheets of accepted (``sheet_test_*.png``,
``sheet_train_*.png``, numbered in index order) and rejected masks are written beside the index for
a person to check; photos listed in ``excluded.txt`` there (or ``--exclude``) are dropped.

``score`` pastes the ``test`` cut-outs onto the test faces of the prepared data
(``data/03_primary/face_crops``, ``data/05_model_input/data_split.parquet``; the crops and cut-outs
share the canonical frame, so pasting is a resize, through the similarity from the template to the
face's own landmarks in ``face_landmarks.parquet``, with a small seeded jitter), cut-outs assigned to
faces by a seeded shuffle, and scores in the true mask (every pixel the paste changed) with the
project's metrics as the evaluate pipeline computes them (PSNR and L1 from :mod:`unmask.models.metrics`,
SSIM from evaluate's float32 map; "in mask" over the mask's pixels) for: our model, blind (``--checkpoint``,
with flip averaging as ``conf/celeba_sample`` evaluates it), the masked input unchanged, and OpenCV Telea
and Navier-Stokes given the true mask
(:func:`unmask.imaging.classical_inpainting.inpaint_with_mask`, radius 3, no dilation, as evaluate).
``--synthetic`` adds the same faces with the pipeline's own synthetic masks, for the gap. Prints a
Markdown table; writes ``results.json``, ``per_image.csv`` and a masked | ours | Telea | truth grid
to ``--out``. Without a trained model the baselines are scored alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from unmask.imaging.mask_cutouts import (
    CUTOUT_SIZE,
    SEGMENTATION_VERSION,
    SegmentationRules,
    assign_cutouts,
    contact_sheet,
    cutout_rgba,
    face_hashes,
    group_near_duplicates,
    jitter_matrix,
    paste_cutout,
    paste_matrix,
    segment_mask,
    split_of,
    valid_region,
)

DEFAULT_PHOTOS = ROOT.parent / "shared" / "data" / "real_masked_faces_dev.zip"
DEFAULT_CACHE = Path(os.environ.get("UNMASK_REAL_MASKS", Path.home() / ".cache" / "unmask" / "real_masks"))
PHOTO_FOLDER = "with_mask"
METHODS = ("model", "input", "telea", "navier_stokes")
LABELS = {
    "model": "Ours, blind",
    "input": "Masked input, unchanged",
    "telea": "OpenCV Telea, given the true mask",
    "navier_stokes": "OpenCV Navier-Stokes, given the true mask",
}
METRICS = ("psnr_mask", "ssim_mask", "l1_mask", "psnr", "ssim", "psnr_outside")
PSNR_CAP = 100.0
SHEET_PAGE = 96  # cut-outs per contact sheet (12 x 8 at full size)


def _say(*parts: Any) -> None:
    print(*parts, flush=True)


def _write_json(path: Path, doc: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _write_rgb(path: Path, image: np.ndarray) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def _write_rgba(path: Path, image: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA))
    os.replace(tmp, path)


def _read_rgba(path: Path) -> np.ndarray:
    bgra = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if bgra is None or bgra.ndim != 3 or bgra.shape[2] != 4:
        raise ValueError(f"{path} is not an RGBA PNG")
    return cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA)


def _inside_repo(path: Path) -> bool:
    try:
        path.resolve().relative_to(ROOT.resolve())
        return True
    except ValueError:
        return False


def _key(name: str) -> str:
    """A file-system-safe, unique stem for a photo name."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).stem)[:60]
    return f"{stem}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"


# ------------------------------------------------------------------------------------------ extract


def _photo_members(zf: zipfile.ZipFile) -> list[str]:
    return sorted(n for n in zf.namelist() if f"/{PHOTO_FOLDER}/" in f"/{n}" and not n.endswith("/")
                  and n.lower().endswith((".jpg", ".jpeg", ".png", ".webp", ".bmp"))
                  and "__MACOSX" not in n)


def detect_and_align(args: argparse.Namespace, cache: Path) -> dict[str, Any]:
    """Faces of every photo, aligned at CUTOUT_SIZE, cached in ``aligned/`` + ``detections.json``."""
    from unmask.imaging.alignment import align_face
    from unmask.imaging.landmark_detector import INSTALL_HINT, FaceLandmarkDetector, available

    aligned_dir = cache / "aligned"
    aligned_dir.mkdir(parents=True, exist_ok=True)
    det_path = cache / "detections.json"
    doc = json.loads(det_path.read_text()) if det_path.is_file() and not args.redetect else {}
    photos_src = str(Path(args.photos).resolve())
    if doc.get("size") != CUTOUT_SIZE or doc.get("photos") != photos_src:
        doc = {"size": CUTOUT_SIZE, "photos": photos_src, "entries": {}}
    entries: dict[str, Any] = doc["entries"]
    with zipfile.ZipFile(args.photos) as zf:
        members = _photo_members(zf)
        if args.limit:
            members = members[: args.limit]
        todo = [m for m in members if m.split("/")[-1] not in entries]
        _say(f"{len(members)} photos in {Path(args.photos).name}/{PHOTO_FOLDER}; {len(members) - len(todo)} "
             f"detected before (cache {cache}), {len(todo)} to detect")
        if todo:
            if not available():
                raise SystemExit(f"detector unavailable: {INSTALL_HINT}")
            detector = FaceLandmarkDetector().load()
            doc["detector"] = repr(detector)
            started = time.perf_counter()
            for k, member in enumerate(todo, 1):
                name = member.split("/")[-1]
                bgr = cv2.imdecode(np.frombuffer(zf.read(member), np.uint8), cv2.IMREAD_COLOR)
                if bgr is None:
                    entries[name] = {"error": "unreadable", "faces": []}
                    continue
                photo = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                faces = []
                for i, d in enumerate(detector.detect(photo, masked=True)):
                    try:
                        crop, _, matrix = align_face(photo, d.landmarks, CUTOUT_SIZE)
                    except ValueError:
                        continue
                    valid = valid_region(photo.shape, matrix, CUTOUT_SIZE)
                    file = f"{_key(name)}_{i}.png"
                    _write_rgba(aligned_dir / file, np.dstack([crop, valid.astype(np.uint8) * 255]))
                    faces.append({"file": file, "method": d.method, "score": round(float(d.score), 3),
                                  "landmarks": np.round(d.landmarks, 2).tolist(),
                                  "eye_distance": round(float(np.hypot(*(d.landmarks[1] - d.landmarks[0]))), 1)})
                entries[name] = {"shape": list(photo.shape[:2]), "faces": faces}
                if k % 50 == 0 or k == len(todo):
                    _write_json(det_path, doc)
                    rate = k / (time.perf_counter() - started)
                    _say(f"  detected {k}/{len(todo)} ({rate:.2f} photos/s)")
    _write_json(det_path, doc)
    return {m.split("/")[-1]: entries[m.split("/")[-1]] for m in members}


def photo_splits(entries: dict[str, Any], aligned: dict[str, np.ndarray], test_fraction: float
                 ) -> tuple[dict[str, str], int]:
    """``{photo: split}`` by a hash of the name; photos whose faces look alike (the same photo under two
    names, recropped or mirrored) take the split of their group's first name. Also the number joined."""
    names = sorted(entries)
    hashes = [[h for f in entries[n]["faces"] for h in face_hashes(aligned[f["file"]][..., :3])] for n in names]
    groups = group_near_duplicates(hashes, max_distance=20)
    split = {n: split_of(names[g], test_fraction) for n, g in zip(names, groups)}
    joined = sum(1 for i, g in enumerate(groups) if g != i)
    return split, joined


def _excluded(path: Path) -> set[str]:
    """Photo names (``name`` or ``name#face``) a person struck off after looking at the contact sheets."""
    if not path.is_file():
        return set()
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return {line for line in lines if line and not line.startswith("#")}


def _near(a: list[np.ndarray], b: list[np.ndarray], max_distance: int = 20) -> bool:
    return group_near_duplicates([a, b], max_distance)[1] == 0


def extract(args: argparse.Namespace) -> int:
    cache = Path(args.cache).expanduser()
    if _inside_repo(cache):
        print(f"--cache {cache} is inside the repository: the photos' masks must stay out of it.", file=sys.stderr)
        return 2
    if not Path(args.photos).is_file():
        print(f"--photos {args.photos} does not exist: point it at real_masked_faces_dev.zip.", file=sys.stderr)
        return 2
    started = time.perf_counter()
    entries = detect_and_align(args, cache)
    detect_s = time.perf_counter() - started
    aligned = {f["file"]: _read_rgba(cache / "aligned" / f["file"]) for e in entries.values() for f in e["faces"]}
    split, joined = photo_splits(entries, aligned, args.test_fraction)

    cut_dir = cache / "cutouts"
    for s in ("test", "train"):
        (cut_dir / s).mkdir(parents=True, exist_ok=True)
        for old in (cut_dir / s).glob("*.png"):
            old.unlink()
    excluded = _excluded(Path(args.exclude) if args.exclude else cache / "excluded.txt")
    rules = SegmentationRules()
    reasons: Counter[str] = Counter()
    index, rejected, rejections, kept_hashes, t0 = [], [], [], [], time.perf_counter()
    for name in sorted(entries):
        for i, face in enumerate(entries[name]["faces"]):
            rgba = aligned[face["file"]]
            crop, valid = np.ascontiguousarray(rgba[..., :3]), rgba[..., 3] > 127
            result = segment_mask(crop, valid, rules)
            if result.accepted and (name in excluded or f"{name}#{i}" in excluded):
                result = dataclasses.replace(result, mask=None, reason="excluded by review")
            reasons[result.reason] += 1
            if not result.accepted:
                rejected.append((crop, valid, result.reason, name))
                rejections.append({"source": name, "face": i, "file": face["file"], "reason": result.reason,
                                   "stats": {k: round(float(v), 4) for k, v in result.stats.items()}})
                continue
            hashes = face_hashes(crop)
            twin = next((e["file"] for e, h in zip(index, kept_hashes) if _near(hashes, h)), None)
            if twin is not None:  # the same face photo under another name: keep one cut-out of it
                reasons["duplicate of an accepted cut-out"] += 1
                reasons["ok"] -= 1
                continue
            kept_hashes.append(hashes)
            cut = cutout_rgba(crop, result.mask)
            file = f"{split[name]}/{face['file']}"
            _write_rgba(cut_dir / file, cut)
            index.append({"file": file, "split": split[name], "source": name, "face": i,
                          "area": round(float(result.mask.mean()), 4), "method": face["method"],
                          "eye_distance": face["eye_distance"],
                          "stats": {k: round(float(v), 4) for k, v in result.stats.items()}})
    segment_s = time.perf_counter() - t0
    photos_with = {e["source"] for e in index}
    n_faces = sum(len(e["faces"]) for e in entries.values())
    counts = Counter(e["split"] for e in index)
    summary = {
        "segmentation_version": SEGMENTATION_VERSION, "size": CUTOUT_SIZE, "rules": dataclasses.asdict(rules),
        "photos": len(entries), "photos_with_a_face": sum(1 for e in entries.values() if e["faces"]),
        "faces": n_faces, "accepted": len(index), "photos_with_a_cutout": len(photos_with),
        "cutouts_by_split": dict(counts), "photos_by_split": dict(Counter(split.values())),
        "near_duplicate_photos_joined": joined, "reasons": dict(reasons.most_common()),
        "test_fraction": args.test_fraction, "excluded_by_review": sorted(excluded), "cutouts": index,
        "rejected": rejections,
    }
    _write_json(cache / "index.json", summary)

    # contact sheets for a person to check: every accepted cut-out, and a sample of rejections
    for s in ("test", "train"):
        rows = [e for e in index if e["split"] == s]
        for old in cache.glob(f"sheet_{s}_*.png"):
            old.unlink()
        for page in range(0, len(rows), SHEET_PAGE):
            chunk = rows[page:page + SHEET_PAGE]
            sheet = contact_sheet([_read_rgba(cut_dir / e["file"]) for e in chunk], columns=12, tile=CUTOUT_SIZE,
                                  labels=[str(page + k) for k in range(len(chunk))])
            _write_rgb(cache / f"sheet_{s}_{page // SHEET_PAGE + 1}.png", sheet)
    rng = np.random.default_rng(0)
    pick = rng.permutation(len(rejected))[:SHEET_PAGE]
    if len(pick):
        tiles = []
        for j in pick:
            crop, valid, _, _ = rejected[j]
            tiles.append(np.where(valid[..., None], crop, crop // 3))
        sheet = contact_sheet(tiles, columns=12, tile=CUTOUT_SIZE,
                              labels=[rejected[j][2].split(" (")[0][:14] for j in pick])
        _write_rgb(cache / "sheet_rejected.png", sheet)

    if args.export_train:
        export = Path(args.export_train)
        export.mkdir(parents=True, exist_ok=True)
        for old in export.glob("*.png"):
            old.unlink()
        train = [e for e in index if e["split"] == "train"]  # never the test half
        for e in train:
            shutil.copyfile(cut_dir / e["file"], export / Path(e["file"]).name)
        _say(f"exported the {len(train)} train cut-outs to {export}")

    _say(f"\n{len(entries)} photos: a face in {summary['photos_with_a_face']}, {n_faces} faces "
         f"(detect + align {detect_s:.0f} s this run, segment {segment_s:.1f} s)")
    _say(f"accepted {len(index)} cut-outs from {len(photos_with)} photos "
         f"({len(photos_with) / max(1, len(entries)):.1%} of the photos): "
         f"test {counts.get('test', 0)}, train {counts.get('train', 0)}; "
         f"{joined} near-duplicate photos joined a group's split")
    _say("segmentation outcomes: " + ", ".join(f"{r}: {n}" for r, n in reasons.most_common()))
    _say(f"index: {cache / 'index.json'}; contact sheets: {cache}/sheet_*.png")
    return 0


# ------------------------------------------------------------------------------------------ score


def _load_split(data: Path) -> list[str]:
    import pandas as pd

    path = data / "05_model_input" / "data_split.parquet"
    if not path.is_file():
        raise SystemExit(f"{path} not found: prepare the data first, e.g. `kedro run --env=celeba_sample "
                         "--pipelines=ingest,faces,masks,split --params ingest.celeba_path=...`")
    split = pd.read_parquet(path)
    return sorted(split.loc[split["split"] == "test", "image_id"].astype(str))


def _load_crop_landmarks(data: Path, size: int) -> dict[str, np.ndarray]:
    """Each face's five landmarks in its crop's pixels, when ``face_landmarks.parquet`` has them."""
    import pandas as pd

    path = data / "03_primary" / "face_landmarks.parquet"
    if not path.is_file():
        return {}
    table = pd.read_parquet(path)
    names = ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")
    cols = [f"{n}_{a}" for n in names for a in ("x", "y")]
    if not set(cols) <= set(table.columns):
        return {}
    ids = table["image_id"].astype(str) if "image_id" in table.columns else table.index.astype(str)
    values = table[cols].to_numpy(np.float64).reshape(-1, 5, 2)
    return {i: v for i, v in zip(ids, values) if np.isfinite(v).all()}


def _id_number(image_id: str) -> int:
    """A number per image id for seeding its jitter (the same for every run and machine)."""
    return int(hashlib.sha1(image_id.encode()).hexdigest()[:8], 16)


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _metrics(pred, clean, mask) -> dict[str, np.ndarray]:
    """Per-image metrics exactly as the evaluate pipeline computes them: PSNR and L1 from
    :mod:`unmask.models.metrics` (float64), whole-image and in-mask SSIM from one float32 SSIM map
    (evaluate's own function: within 1e-5 of the float64 definition, 12x faster on a CPU)."""
    from unmask.models.metrics import masked_mae, masked_psnr, psnr
    from unmask.pipelines.evaluate.nodes import _ssim_and_masked_ssim

    whole_ssim, mask_ssim = _ssim_and_masked_ssim(pred, clean, mask)
    out = {
        "psnr_mask": masked_psnr(pred, clean, mask), "ssim_mask": mask_ssim,
        "l1_mask": masked_mae(pred, clean, mask), "psnr": psnr(pred, clean), "ssim": whole_ssim,
        "psnr_outside": masked_psnr(pred, clean, (mask <= 0.5).double()),
    }
    return {k: v.cpu().numpy() for k, v in out.items()}


def _mean(name: str, values: np.ndarray) -> float:
    v = np.asarray(values, np.float64)
    if "psnr" in name:
        v = np.where(np.isposinf(v), PSNR_CAP, v)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else math.nan


def _fmt(x: float, digits: int) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


class _Pasted:
    """The test faces wearing the test cut-outs: ``(clean, masked, hidden, cut-out file)`` per image id."""

    def __init__(self, args: argparse.Namespace, cache: Path, cutouts: list[dict], ids: list[str],
                 crops_dir: Path, size: int, landmarks: dict[str, np.ndarray]) -> None:
        self.args, self.cache, self.cutouts, self.crops_dir = args, cache, cutouts, crops_dir
        self.size, self.landmarks = size, landmarks
        self.assignment = dict(zip(ids, assign_cutouts(len(ids), len(cutouts), args.seed).tolist()))
        self.rgba: dict[int, np.ndarray] = {}

    def __call__(self, image_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        clean = _read_rgb(self.crops_dir / f"{image_id}.png")
        c = self.assignment[image_id]
        if c not in self.rgba:
            self.rgba[c] = _read_rgba(self.cache / "cutouts" / self.cutouts[c]["file"])
        jitter = None
        if not self.args.no_jitter:  # seeded per face: the same paste whatever --limit or batch size
            jitter = jitter_matrix(np.random.default_rng([self.args.seed, _id_number(image_id)]), self.size)
        matrix = paste_matrix(CUTOUT_SIZE, self.size, self.landmarks.get(image_id), jitter)
        masked, hidden = paste_cutout(clean, self.rgba[c], matrix)
        return clean, masked, hidden, self.cutouts[c]["file"]


def _synthetic(crops_dir: Path, feature: Path):
    """The same test faces with the masks pipeline's synthetic masks (``04_feature``)."""

    def load(image_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        masked = _read_rgb(feature / "masked_faces" / f"{image_id}.png")
        hidden = cv2.imread(str(feature / "mask_maps" / f"{image_id}.png"), cv2.IMREAD_GRAYSCALE) > 127
        return _read_rgb(crops_dir / f"{image_id}.png"), masked, hidden, "synthetic"

    return load


def _load_model(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """``(model, dtype, info)`` ready for :func:`unmask.models.inference.restore`; the model is None without one."""
    checkpoint = Path(args.checkpoint)
    info: dict[str, Any] = {"checkpoint": str(checkpoint)}
    if checkpoint.is_file():
        info["sha256"] = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    else:
        _say(f"no model at {checkpoint}: scoring the baselines only (train one, or pass --checkpoint)")
        return None, None, info
    from unmask.models import count_parameters, load_model
    from unmask.models.devices import precision_name
    from unmask.models.inference import prepare_for_inference

    model, dtype = prepare_for_inference(load_model(checkpoint), args.device, args.precision)
    cfg = getattr(model, "config", {}) or {}
    info.update({"architecture": cfg.get("name"), "filters": cfg.get("filters"), "batch_norm": cfg.get("batch_norm"),
                 "composite": cfg.get("composite"), "parameters": int(count_parameters(model)),
                 "precision": precision_name(dtype), "device": str(next(model.parameters()).device),
                 "flip_average": not args.no_flip_average})
    return model, dtype, info


def _score_batch(batch: list[tuple], model: Any, dtype: Any, args: argparse.Namespace
                 ) -> tuple[dict[str, Any], dict[str, list]]:
    """Every method's restorations of one batch and its per-image metrics (``{"<method>.<metric>": [...]}``)."""
    import torch

    from unmask.imaging.classical_inpainting import inpaint_with_mask
    from unmask.models.data import image_to_tensor

    clean = torch.stack([image_to_tensor(b[0]) for b in batch])
    masked = torch.stack([image_to_tensor(b[1]) for b in batch])
    mask = torch.from_numpy(np.stack([b[2] for b in batch])).unsqueeze(1).double()
    preds = {"input": masked}
    for method in ("telea", "navier_stokes"):  # given the true mask, as the evaluate pipeline gives it
        preds[method] = torch.stack([image_to_tensor(inpaint_with_mask(b[1], b[2], method, args.inpaint_radius,
                                                                       args.dilate_px)) for b in batch])
    if model is not None:
        from unmask.models.inference import restore

        preds["model"] = restore(model, masked, dtype, not args.no_flip_average).cpu()
    columns: dict[str, list] = {"cutout": [b[3] for b in batch], "coverage": [float(b[2].mean()) for b in batch]}
    for method, pred in preds.items():
        for name, values in _metrics(pred, clean, mask).items():
            columns[f"{method}.{name}"] = values.tolist()
    return preds, columns


def score(args: argparse.Namespace) -> int:
    import pandas as pd
    import torch

    from unmask.imaging.grids import image_grid
    from unmask.models.data import tensor_to_image

    if args.threads:
        torch.set_num_threads(args.threads)
    cache, data, out = Path(args.cache).expanduser(), Path(args.data), Path(args.out).expanduser()
    if _inside_repo(out):
        print(f"--out {out} is inside the repository: write the results elsewhere.", file=sys.stderr)
        return 2
    index_path = cache / "index.json"
    if not index_path.is_file():
        print(f"{index_path} not found: run the extract step first.", file=sys.stderr)
        return 2
    index = json.loads(index_path.read_text())
    cutouts = sorted((e for e in index["cutouts"] if e["split"] == "test"), key=lambda e: e["file"])
    if not cutouts:
        print("no test cut-outs in the index", file=sys.stderr)
        return 2
    ids = _load_split(data)[: args.limit or None]
    crops_dir = data / "03_primary" / "face_crops"
    size = _read_rgb(crops_dir / f"{ids[0]}.png").shape[0]
    landmarks = {} if args.template_only else _load_crop_landmarks(data, size)
    model, dtype, model_info = _load_model(args)

    sources = {"real": _Pasted(args, cache, cutouts, ids, crops_dir, size, landmarks)}
    if args.synthetic:
        sources["synthetic"] = _synthetic(crops_dir, data / "04_feature")
    rows: dict[str, dict[str, list]] = {}
    grid: dict[str, list] = {"masked": [], "ours (blind)": [], "Telea (true mask)": [], "ground truth": []}
    if model is None:
        del grid["ours (blind)"]
    started = time.perf_counter()
    for variant, load in sources.items():
        per = rows[variant] = {"image_id": []}
        for b0 in range(0, len(ids), args.batch_size):
            batch_ids = ids[b0:b0 + args.batch_size]
            batch = [load(i) for i in batch_ids]
            preds, columns = _score_batch(batch, model, dtype, args)
            per["image_id"] += batch_ids
            for key, values in columns.items():
                per.setdefault(key, []).extend(values)
            for k in range(min(len(batch), args.grid - len(grid["masked"])) if variant == "real" else 0):
                grid["masked"].append(batch[k][1])
                if model is not None:
                    grid["ours (blind)"].append(tensor_to_image(preds["model"][k]))
                grid["Telea (true mask)"].append(tensor_to_image(preds["telea"][k]))
                grid["ground truth"].append(batch[k][0])
            if args.verbose:
                _say(f"  {variant}: {b0 + len(batch_ids)}/{len(ids)}")
    elapsed = time.perf_counter() - started
    from unmask.models.devices import cpu_name

    summary: dict[str, Any] = {
        "n_images": len(ids), "image_size": size, "test_cutouts": len(cutouts),
        "cutouts_used": len(set(rows["real"]["cutout"])), "seed": args.seed, "jitter": not args.no_jitter,
        "landmark_paste": bool(landmarks), "inpaint_radius": args.inpaint_radius, "dilate_px": args.dilate_px,
        "model": model_info, "seconds": round(elapsed, 1), "cpu": cpu_name(), "threads": torch.get_num_threads(),
        "cache": str(cache), "segmentation_version": index.get("segmentation_version"),
    }
    for variant, per in rows.items():
        summary[variant] = {"coverage": _mean("coverage", np.array(per["coverage"]))}
        for method in METHODS:
            if f"{method}.psnr_mask" in per:
                summary[variant][method] = {m: _mean(m, np.array(per[f"{method}.{m}"])) for m in METRICS}
    real = summary["real"]
    if "model" in real:
        best = max(("telea", "navier_stokes"), key=lambda m: real[m]["psnr_mask"])
        summary["gain_over_telea"] = {"psnr_mask": real["model"]["psnr_mask"] - real["telea"]["psnr_mask"],
                                      "ssim_mask": real["model"]["ssim_mask"] - real["telea"]["ssim_mask"]}
        summary["gain_over_best_baseline"] = {"baseline": best,
                                              "psnr_mask": real["model"]["psnr_mask"] - real[best]["psnr_mask"],
                                              "ssim_mask": real["model"]["ssim_mask"] - real[best]["ssim_mask"]}
    _say(_table(summary))

    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "results.json", summary)
    frames = [pd.DataFrame(per).assign(masks=variant) for variant, per in rows.items()]
    pd.concat(frames, ignore_index=True).to_csv(out / "per_image.csv", index=False)
    fig = image_grid(grid, row_labels=ids[: len(grid["masked"])])
    fig.savefig(out / "grid.png", dpi=100)
    _say(f"\nwrote {out / 'results.json'}, {out / 'per_image.csv'}, {out / 'grid.png'}")
    return 0


def _table(s: dict[str, Any]) -> str:
    model = s["model"]
    name = "Ours, blind" + (f" ({model.get('architecture')}, flip averaging)" if model.get("flip_average") else
                            f" ({model.get('architecture')})" if model.get("architecture") else "")
    lines = [f"\n{s['n_images']} CelebA test faces at {s['image_size']}x{s['image_size']} wearing "
             f"{s['cutouts_used']} of {s['test_cutouts']} real test cut-outs "
             f"({'landmark' if s['landmark_paste'] else 'template'} paste"
             f"{', jittered' if s['jitter'] else ''}, seed {s['seed']}; mean coverage "
             f"{s['real']['coverage']:.1%}). In-mask metrics over every pixel the paste changed.", "",
             "| Masks | Method | PSNR in mask (dB) | SSIM in mask | L1 in mask | PSNR (dB) | SSIM |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for variant in ("real", "synthetic"):
        if variant not in s:
            continue
        for method in METHODS:
            r = s[variant].get(method)
            if r is None:
                continue
            label = name if method == "model" else LABELS[method]
            lines.append(f"| {variant} | {label} | {_fmt(r['psnr_mask'], 2)} | {_fmt(r['ssim_mask'], 4)} | "
                         f"{_fmt(r['l1_mask'], 4)} | {_fmt(r['psnr'], 2)} | {_fmt(r['ssim'], 4)} |")
    if "gain_over_telea" in s:
        g = s["gain_over_telea"]
        lines += ["", f"Ours - Telea in the mask (real masks): {g['psnr_mask']:+.2f} dB PSNR, "
                      f"{g['ssim_mask']:+.4f} SSIM (target: +3 dB and +0.15)."]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="step", required=True)
    ex = sub.add_parser("extract", help="cut the masks out of the photos (cached)")
    ex.add_argument("--photos", default=str(DEFAULT_PHOTOS), help="zip with a with_mask/ folder (default: %(default)s)")
    ex.add_argument("--cache", default=str(DEFAULT_CACHE),
                    help="cut-out folder, outside the repo (default: %(default)s)")
    ex.add_argument("--limit", type=int, default=None, help="only the first N photos (by name)")
    ex.add_argument("--redetect", action="store_true", help="detect again instead of reusing cached detections")
    ex.add_argument("--test-fraction", type=float, default=0.5, help="share of photos in the test half")
    ex.add_argument("--export-train", metavar="DIR", default=None,
                    help="also copy the train half's cut-outs (never the test half) into DIR, e.g. "
                         "data/01_raw/real_mask_cutouts for train.cutout_fraction; its PNGs are replaced")
    ex.add_argument("--exclude", default=None,
                    help="file of photo names (or name#face) to drop after a look at the contact sheets, one a "
                         "line, '#' starts a comment line (default: excluded.txt in the cache, if there)")
    sc = sub.add_parser("score", help="paste test cut-outs onto the test faces and score every method")
    sc.add_argument("--cache", default=str(DEFAULT_CACHE), help="cut-out folder of the extract step")
    sc.add_argument("--data", default=str(ROOT / "data"), help="the project's data folder (default: %(default)s)")
    sc.add_argument("--checkpoint", default=str(ROOT / "data" / "06_models" / "model.safetensors"))
    sc.add_argument("--out", default=str(Path.home() / ".cache" / "unmask" / "real_mask_proxy"),
                    help="results folder, outside the repo (default: %(default)s)")
    sc.add_argument("--limit", type=int, default=None, help="only the first N test faces")
    sc.add_argument("--seed", type=int, default=0, help="cut-out assignment and jitter seed")
    sc.add_argument("--no-jitter", action="store_true", help="paste without the random similarity jitter")
    sc.add_argument("--template-only", action="store_true", help="ignore the faces' landmarks: a plain resize")
    sc.add_argument("--no-flip-average", action="store_true", help="one restoration per face, no mirror")
    sc.add_argument("--synthetic", action="store_true", help="also score the same faces with the synthetic masks")
    sc.add_argument("--device", default="auto")
    sc.add_argument("--precision", default="auto")
    sc.add_argument("--batch-size", type=int, default=64)
    sc.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    sc.add_argument("--inpaint-radius", type=float, default=3.0)
    sc.add_argument("--dilate-px", type=int, default=0)
    sc.add_argument("--grid", type=int, default=16, help="faces in the grid (default: %(default)s)")
    sc.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    return extract(args) if args.step == "extract" else score(args)


if __name__ == "__main__":
    sys.exit(main())
