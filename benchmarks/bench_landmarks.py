"""Benchmark of the face + 5-landmark detector on aligned CelebA, clean and with synthetic masks.

    .venv/bin/python benchmarks/bench_landmarks.py --celeba ../shared/data/celeba_dev_9k_89x109.zip --limit 500

Reads ``img_align_celeba/*.jpg`` members straight from the zip (zipfile + cv2.imdecode), in name
order from ``--offset``, runs :class:`unmask.imaging.landmark_detector.FaceLandmarkDetector` on
each image and on a masked copy of it, and prints:

* detection rate and images/s, clean and masked, and which cascade step found the face;
* the landmark error against the aligned-CelebA mean template scaled to the image (left eye
  (69, 111), right eye (108, 111), nose (89, 135), mouth (72, 152), (106, 152) at 178x218): a
  sanity check only, since real faces vary around the mean (~1.8 px at 89x109 for a good
  detector);
* on masked faces, the error against the raw 68-point predictor's landmarks on the same image
  unmasked (a per-image reference), for the returned landmarks and for the raw predictor's;
* how often the lower-face occlusion test flags clean and masked faces.

The rate found by every step but the last (``dlib_hog_verified``) is the detection rate without
that step: total minus its count. Its thresholds were chosen on images 1-600; report it on others,
e.g. ``--offset 3000 --limit 1000 --negatives``.

Masks come from :mod:`unmask.imaging.mask_renderer` (placed with the template landmarks) when it
imports and works, otherwise from a plain opaque polygon over nose-to-chin, cheek to cheek.
Without the zip it says so and exits with status 2. Landmarks of the shared images are not
annotated: the template is all there is.
"""

from __future__ import annotations

import argparse
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from unmask.imaging.landmark_detector import (
    INSTALL_HINT,
    CELEBA_TEMPLATE_178x218,
    FaceLandmarkDetector,
    available,
    five_from_68,
)

DEFAULT_ZIP = ROOT.parent / "shared" / "data" / "celeba_dev_9k_89x109.zip"
NAMES = ("left eye", "right eye", "nose", "left mouth", "right mouth")


def template_for(width: int, height: int) -> np.ndarray:
    return CELEBA_TEMPLATE_178x218 * np.array([width / 178.0, height / 218.0])


def read_members(path: Path, offset: int, limit: int) -> list[tuple[str, np.ndarray]]:
    out = []
    with zipfile.ZipFile(path) as zf:
        names = sorted(n for n in zf.namelist() if n.lower().endswith((".jpg", ".jpeg", ".png"))
                       and not n.startswith("__MACOSX"))
        for name in names[offset:offset + limit]:
            bgr = cv2.imdecode(np.frombuffer(zf.read(name), np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                print(f"  (unreadable: {name})")
                continue
            out.append((name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    return out


# ------------------------------------------------------------------------------------------ masks


def polygon_mask(image: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Opaque light-blue polygon from just below the eyes to the chin, cheek to cheek."""
    eye_y = (lm[0, 1] + lm[1, 1]) / 2
    d = lm[1, 0] - lm[0, 0]
    top = eye_y + 0.3 * (lm[2, 1] - eye_y)
    chin = min(image.shape[0] - 1, (lm[3, 1] + lm[4, 1]) / 2 + 0.65 * d)
    cx = lm[2, 0]
    poly = np.array([
        [lm[0, 0] - 0.55 * d, top], [cx, top - 0.08 * d], [lm[1, 0] + 0.55 * d, top],
        [lm[4, 0] + 0.55 * d, lm[4, 1] - 0.1 * d], [lm[4, 0] + 0.3 * d, chin - 0.2 * d], [cx, chin],
        [lm[3, 0] - 0.3 * d, chin - 0.2 * d], [lm[3, 0] - 0.55 * d, lm[3, 1] - 0.1 * d],
    ])
    out = image.copy()
    cv2.fillPoly(out, [np.round(poly * 16).astype(np.int32)], (170, 200, 225), lineType=cv2.LINE_AA, shift=4)
    return out


def make_masker(kind: str, seed: int):
    """Return ``(name, fn(image, landmarks) -> masked image)``."""
    if kind in ("auto", "renderer"):
        try:
            from unmask.imaging.mask_renderer import render_masked_face, sample_mask_spec

            rng = np.random.default_rng(seed)

            def renderer(image: np.ndarray, lm: np.ndarray) -> np.ndarray:
                h, w = image.shape[:2]
                side = max(h, w)
                px, py = (side - w) // 2, (side - h) // 2
                square = cv2.copyMakeBorder(image, py, side - h - py, px, side - w - px, cv2.BORDER_REFLECT_101)
                spec = sample_mask_spec(lm + np.array([px, py]), side, rng)
                return render_masked_face(square, spec)[py:py + h, px:px + w].copy()

            probe = np.full((109, 89, 3), 128, np.uint8)
            if renderer(probe, template_for(89, 109)).shape != probe.shape:
                raise RuntimeError("renderer returned a wrong shape")
            return f"mask_renderer (random styles, seed {seed})", renderer
        except Exception as exc:  # anything broken in the other module: fall back
            if kind == "renderer":
                raise
            print(f"  mask_renderer unusable ({type(exc).__name__}: {exc}); using the plain polygon")
    return "plain opaque polygon", polygon_mask


# ------------------------------------------------------------------------------------------ stats


def stats(errors: list[np.ndarray], unit: float) -> str:
    if not errors:
        return "n=0"
    e = np.array(errors)  # (n, 5)
    per = " ".join(f"{n.split()[-1] if n != 'nose' else 'nose'}:{v:.2f}" for n, v in zip(NAMES, e.mean(0)))
    mean_img = e.mean(axis=1)
    return (f"n={len(e)} mean {e.mean():.2f} px ({e.mean() / unit:.1%} of eye dist), median {np.median(e):.2f}, "
            f"p90 per-image {np.percentile(mean_img, 90):.2f} | per point [{per}]")


def run(args: argparse.Namespace) -> int:
    path = Path(args.celeba)
    if not path.is_file():
        print(f"SHARED CELEBA ZIP MISSING: {path} does not exist, so nothing was measured. "
              f"Pass --celeba PATH_TO_ZIP (e.g. the shared celeba_dev_9k_89x109.zip).")
        return 2
    if not available():
        print(f"DETECTOR UNAVAILABLE: {INSTALL_HINT}")
        return 3
    images = read_members(path, args.offset, args.limit)
    if not images:
        print(f"no images in {path} from offset {args.offset}")
        return 2
    h, w = images[0][1].shape[:2]
    mask_name, masker = make_masker(args.mask, args.seed)
    det = FaceLandmarkDetector(use_cnn=not args.no_cnn, low_threshold=args.low_threshold,
                               occlusion_threshold=args.occlusion_threshold, verify_threshold=args.verify_threshold)
    t0 = time.perf_counter()
    det.load()
    load_s = time.perf_counter() - t0
    print(f"{path.name}: {len(images)} images from #{args.offset} ({w}x{h}); masks: {mask_name}; "
          f"{det!r}; models loaded in {load_s:.1f}s")

    masked_imgs = []
    for _, img in images:
        tmpl = template_for(img.shape[1], img.shape[0])
        masked_imgs.append(masker(img, tmpl))
    if args.save_masked:
        cv2.imwrite(args.save_masked, cv2.cvtColor(np.hstack([m for m in masked_imgs[:12]]), cv2.COLOR_RGB2BGR))

    results = {}
    for kind, batch in (("clean", [im for _, im in images]), ("masked", masked_imgs)):
        t0 = time.perf_counter()
        found = [det.detect_one(im) for im in batch]
        results[kind] = (found, time.perf_counter() - t0)

    unit = 39.0 * w / 178.0  # template eye distance at this size
    print()
    for kind in ("clean", "masked"):
        found, secs = results[kind]
        n = len(found)
        hits = [f for f in found if f is not None]
        methods = {}
        for f in hits:
            methods[f.method] = methods.get(f.method, 0) + 1
        print(f"[{kind}] detection rate {len(hits) / n:.1%} ({len(hits)}/{n}), {n / secs:.1f} images/s "
              f"({1000 * secs / n:.1f} ms/image), by step {methods}")
        errs = [np.linalg.norm(f.landmarks - template_for(w, h), axis=1) for f in hits]
        print(f"  returned landmarks vs template: {stats(errs, unit)}")
        raw = [np.linalg.norm(five_from_68(f.shape68) - template_for(w, h), axis=1) for f in hits]
        print(f"  raw 68-pt predictor vs template: {stats(raw, unit)}")
        for m in sorted(methods):
            em = [e for e, f in zip(errs, hits) if f.method == m]
            print(f"    {m:13s} vs template: {stats(em, unit)}")
        flagged = sum(f.masked for f in hits)
        print(f"  flagged masked (lower face covered): {flagged}/{len(hits)} = {flagged / max(1, len(hits)):.1%}")

    # paired: masked landmarks vs the raw predictor's landmarks on the same image unmasked
    pairs = [(c, m) for c, m in zip(results["clean"][0], results["masked"][0]) if c is not None and m is not None]
    ret = [np.linalg.norm(m.landmarks - five_from_68(c.shape68), axis=1) for c, m in pairs]
    raw = [np.linalg.norm(five_from_68(m.shape68) - five_from_68(c.shape68), axis=1) for c, m in pairs]
    print("\n[masked vs the raw 68-pt predictor on the same image unmasked]")
    print(f"  returned landmarks:     {stats(ret, unit)}")
    print(f"  raw 68-pt predictor:    {stats(raw, unit)}")
    if args.negatives:
        # images without an upright face: each image turned 90 degrees, and blurred noise
        rng = np.random.default_rng(args.seed + 1)
        rot = [np.ascontiguousarray(np.rot90(im, 1 + 2 * (i % 2))) for i, (_, im) in enumerate(images)]
        noise = [cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), float(rng.uniform(0.5, 4)))
                 for _ in range(len(images))]
        print("\n[false detections on images without an upright face]")
        for name, batch in (("rotated 90", rot), ("blurred noise", noise)):
            found = [det.detect_one(im) for im in batch]
            methods = {}
            for f in found:
                if f is not None:
                    methods[f.method] = methods.get(f.method, 0) + 1
            false_hits = sum(methods.values())
            print(f"  {name}: {false_hits}/{len(batch)} = {false_hits / len(batch):.1%} {methods}")
    if args.occlusion_stats:
        oc = np.array([f.occlusion for f in results["clean"][0] if f is not None])
        om = np.array([f.occlusion for f in results["masked"][0] if f is not None])
        print("\n[occlusion score] clean p50/90/95/99", np.nanpercentile(oc, [50, 90, 95, 99]).round(2),
              " masked p1/5/10/50", np.nanpercentile(om, [1, 5, 10, 50]).round(2))
        for t in (5, 6, 7, 7.5, 8, 9, 10):
            print(f"  thr {t}: clean flagged {np.mean(oc > t):.3f}  masked missed {np.mean(~(om > t)):.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--celeba", default=str(DEFAULT_ZIP), help="zip of aligned CelebA images (default: %(default)s)")
    ap.add_argument("--limit", type=int, default=500, help="number of images (default: %(default)s)")
    ap.add_argument("--offset", type=int, default=0, help="skip this many images first (default: %(default)s)")
    ap.add_argument("--mask", choices=("auto", "renderer", "polygon"), default="auto",
                    help="mask drawing: the project's renderer if it works (auto), or forced")
    ap.add_argument("--seed", type=int, default=0, help="mask sampling seed")
    ap.add_argument("--no-cnn", action="store_true", help="disable the CNN fallback")
    ap.add_argument("--low-threshold", type=float, default=-0.5, help="HOG score accepted when nothing scores >= 0")
    ap.add_argument("--occlusion-threshold", type=float, default=9.0)
    ap.add_argument("--verify-threshold", type=float, default=FaceLandmarkDetector().verify_threshold,
                    help="lowest HOG score of the verified last step (>= --low-threshold turns it off)")
    ap.add_argument("--negatives", action="store_true", help="also count detections on rotated faces and noise")
    ap.add_argument("--occlusion-stats", action="store_true", help="print the occlusion score distributions")
    ap.add_argument("--save-masked", metavar="PNG", help="write the first 12 masked images side by side")
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
