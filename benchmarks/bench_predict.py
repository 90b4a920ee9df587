"""`unmask predict` on masked real faces: how often a face is found, and seconds per photo.

    .venv/bin/python benchmarks/bench_predict.py --celeba ../shared/data/celeba_dev_9k_89x109.zip \\
        --offset 3000 --limit 1000 --timing 10

Reads ``img_align_celeba/*.jpg`` from the shared zip (``--offset``, ``--limit``), masks each face
with the project's own renderer (:mod:`unmask.imaging.mask_renderer`, random styles, placed with
the aligned-CelebA template landmarks, as ``benchmarks/bench_landmarks.py`` does) and prints:

1. Detection rate on the masked faces, through exactly what ``unmask predict`` runs
   (:meth:`unmask.predict.Unmasker.unmask`: a face counts when at least one is restored), with
   the cascade step that found it, for the masked image as it is (89x109) and put into photos:
   upscaled 2x onto a 250x250 canvas and 7x onto a 1024x1024 canvas (the rest of the canvas a
   blurred copy of the image, so that the face is in a scene, not on a flat background). The
   rate without the last cascade step (``dlib_hog_verified``) is the total minus its count.
2. Seconds per photo of the whole ``unmask predict`` path for one file (read the PNG, detect,
   align, restore, blend, write the PNG; the model loaded once, as for a folder), median over
   ``--timing`` photos at 250x250 and 1024x1024, with the stages' share, for the checkpoint given
   (default: the project's ``data/06_models/model.safetensors``) and for the paper's network
   (RA-UNet 64..1024, 39 M parameters, 256x256 crops; random weights: speed does not depend on
   them).

Without the zip it says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    import unmask  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT / "src"))

from bench_landmarks import DEFAULT_ZIP, make_masker, read_members, template_for

from unmask.imaging.alignment import align_face
from unmask.imaging.blending import blend_weight, paste_crop, paste_region, restored_region
from unmask.imaging.landmark_detector import INSTALL_HINT, available
from unmask.imaging.png import write_png
from unmask.models import build_model, save_model
from unmask.predict import Unmasker, read_photo


def in_photo(face: np.ndarray, side: int, scale: float) -> np.ndarray:
    """``face`` upscaled by ``scale`` at the centre of a ``side`` x ``side`` scene (a blurred, enlarged copy)."""
    big = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    scene = cv2.GaussianBlur(cv2.resize(face, (side, side), interpolation=cv2.INTER_LINEAR), (0, 0), side / 40)
    h, w = big.shape[:2]
    y, x = (side - h) // 2, (side - w) // 2
    scene[max(0, y):y + h, max(0, x):x + w] = big[max(0, -y):max(0, -y) + side, max(0, -x):max(0, -x) + side]
    return scene


def detection_rates(unmasker: Unmasker, masked: list[np.ndarray], photo_limit: int) -> None:
    settings = {"as is (89x109)": (lambda m: m, len(masked)),
                "250x250 photo (2x)": (lambda m: in_photo(m, 250, 2.0), photo_limit),
                "1024x1024 photo (7x)": (lambda m: in_photo(m, 1024, 7.0), photo_limit)}
    for name, (make, limit) in settings.items():
        steps: Counter = Counter()
        started = time.perf_counter()
        for image in masked[:limit]:
            found = unmasker.detector.detect(make(image))
            steps[found[0].method if found else "none"] += 1
        seconds = time.perf_counter() - started
        n = min(limit, len(masked))
        hits = n - steps["none"]
        verified = steps.get("dlib_hog_verified", 0)
        print(f"  {name:22s} found {hits / n:6.1%} ({hits}/{n}); without the verified step "
              f"{(hits - verified) / n:6.1%}; {1000 * seconds / n:6.1f} ms/image; "
              f"by step {dict(sorted((k, v) for k, v in steps.items() if k != 'none'))}", flush=True)


def time_photos(unmasker: Unmasker, photos: list[np.ndarray], folder: Path) -> dict[str, float]:
    """Median seconds per photo of each stage of ``unmask predict`` on ``photos`` (files written to ``folder``)."""
    paths = []
    for i, photo in enumerate(photos):
        paths.append(folder / f"in_{i}.png")
        write_png(paths[-1], photo)
    stages: dict[str, list[float]] = {k: [] for k in ("read", "detect", "align+restore", "blend", "write", "total")}
    for _ in range(2):  # warm-up: the first calls at a shape pay for allocation and kernel selection
        unmasker.restore_crop(np.zeros((unmasker.size, unmasker.size, 3), np.uint8))
    unmasker.unmask(read_photo(paths[0]))
    for path in paths:
        t0 = time.perf_counter()
        photo = read_photo(path)
        t1 = time.perf_counter()
        faces = unmasker.detector.detect(photo)
        t2 = time.perf_counter()
        out, region, work = photo.copy(), np.zeros(photo.shape[:2], bool), []
        for face in faces:
            crop, _, matrix = align_face(photo, face.landmarks, unmasker.size)
            work.append((crop, unmasker.restore_crop(crop), matrix))
        t3 = time.perf_counter()
        for crop, restored, matrix in work:
            changed = restored_region(crop, restored, unmasker.threshold)
            out = paste_crop(out, restored, matrix, blend_weight(changed))
            region |= paste_region(photo.shape, changed, matrix)
        t4 = time.perf_counter()
        write_png(folder / "out.png", out)
        t5 = time.perf_counter()
        for key, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0)):
            stages[key].append(value)
    return {k: statistics.median(v) for k, v in stages.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--celeba", default=str(DEFAULT_ZIP), help="zip of aligned CelebA images (default: %(default)s)")
    ap.add_argument("--offset", type=int, default=3000, help="first image (default: %(default)s)")
    ap.add_argument("--limit", type=int, default=1000, help="images for the detection rate (default: %(default)s)")
    ap.add_argument("--photo-limit", type=int, default=300,
                    help="images for the rates in 250x250 and 1024x1024 photos (default: %(default)s)")
    ap.add_argument("--timing", type=int, default=10, help="photos timed per size (default: %(default)s)")
    ap.add_argument("--checkpoint", default=str(ROOT / "data" / "06_models" / "model.safetensors"))
    ap.add_argument("--seed", type=int, default=0, help="mask sampling seed")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if not Path(args.celeba).is_file():
        print(f"SHARED CELEBA ZIP MISSING: {args.celeba} does not exist, so nothing was measured. "
              "Pass --celeba PATH_TO_ZIP (e.g. the shared celeba_dev_9k_89x109.zip).")
        return 2
    if not available():
        print(f"DETECTOR UNAVAILABLE: {INSTALL_HINT}")
        return 3
    if args.threads:
        torch.set_num_threads(args.threads)
    images = read_members(Path(args.celeba), args.offset, max(args.limit, args.timing))
    mask_name, masker = make_masker("renderer", args.seed)
    masked = [masker(im, template_for(im.shape[1], im.shape[0])) for _, im in images]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paper = tmp / "paper.safetensors"
        save_model(build_model("ra_unet", filters=(64, 128, 256, 512, 1024)), paper, metadata={"crop_size": 256})
        checkpoints = [("paper RA-UNet 64..1024 @256 (random weights)", paper)]
        if Path(args.checkpoint).is_file():
            checkpoints.insert(0, (f"{args.checkpoint}", Path(args.checkpoint)))
        else:
            print(f"(no model at {args.checkpoint}: timing the paper's network only)")

        first = Unmasker(checkpoints[0][1])
        print(f"{Path(args.celeba).name}: images {args.offset + 1}..{args.offset + len(images)}; masks: {mask_name}; "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        print(f"\n[detection rate on {args.limit} masked faces] {first.detector!r}")
        detection_rates(first, masked[: args.limit], args.photo_limit)

        sizes = {"250x250": lambda m: in_photo(m, 250, 2.0), "1024x1024": lambda m: in_photo(m, 1024, 7.0)}
        print(f"\n[seconds per photo, median of {args.timing}; model loaded once]")
        print(f"  {'model':52s} {'photo':10s} {'total':>7s} {'read':>7s} {'detect':>7s} {'restore':>8s} "
              f"{'blend':>7s} {'write':>7s}")
        for name, path in checkpoints:
            started = time.perf_counter()
            unmasker = first if path == checkpoints[0][1] else Unmasker(path)
            load = time.perf_counter() - started
            for size, make in sizes.items():
                s = time_photos(unmasker, [make(m) for m in masked[: args.timing]], tmp)
                print(f"  {name[:52]:52s} {size:10s} {s['total']:7.3f} {s['read']:7.3f} {s['detect']:7.3f} "
                      f"{s['align+restore']:8.3f} {s['blend']:7.3f} {s['write']:7.3f}", flush=True)
            print(f"  ({unmasker.describe()}; loaded in {load:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
