"""`unmask predict` on real photos of people with and without masks: faces found, photos left alone, seconds.

    nice -n 15 .venv/bin/python benchmarks/bench_real_photos.py \\
        --photos ../shared/data/real_masked_faces_dev.zip --stride 3 [--checkpoint PATH] [--detect-only]

Reads the images of ``--photos`` (a zip, read member by member without extracting it, or a
folder, searched recursively), in name order, and splits them by folder name: ``with_mask``,
``without_mask``, anything else is ``photos``. ``--start``, ``--stride`` and ``--limit`` pick a
subset of each group (``names[start::stride][:limit]``). Every photo goes through
:class:`unmask.predict.Unmasker` (the model loaded once, as ``unmask predict`` does for a
folder) and the script prints, per group:

* **found**: photos where a face was found *and* the photo changed (the mask was removed);
* **unchanged**: photos given back bit-identical (what an unmasked photo should get);
* **changed area**: mean percentage of the photo's pixels that changed;
* **detected**: photos where the detector found at least one face (whether or not it was restored),
  which detector step found the first face, and how often the detector judged it masked (its
  lower face not skin-coloured: nose and mouth placed from the eyes);
* seconds per photo (detect, align, restore, blend; median and mean; decoding not included);
* with a model that has a mask head, a sweep of the gate (``--min-mask-fraction``): for each
  threshold, the photos where some face's predicted mask covers at least that much of its crop
  (with_mask: should be all) and those where none does (without_mask: should be all).

``--detect-only`` runs the detector alone (no model needed): only *detected* and seconds.
``--detector dlib`` uses the dlib cascade of :class:`unmask.imaging.landmark_detector.FaceLandmarkDetector`
instead of the detector ``unmask predict`` uses, to compare the two.

It writes to ``--out`` (a folder outside the repository; default ``/tmp/unmask_bench_real_photos``)
``figures.json`` (the figures, the settings, the names of the photos without a face and of those
that changed) and
``contact_sheet.png`` (``--sheet`` photos spread over the groups, each before | after, the faces'
boxes drawn on the after: green restored, orange found but left alone). A missing ``--photos``
is reported on stderr with exit status 2; an ``--out`` inside the repository with status 2.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")

DEFAULT_PHOTOS = ROOT.parent / "shared" / "data" / "real_masked_faces_dev.zip"
DEFAULT_OUT = Path("/tmp/unmask_bench_real_photos")
GROUPS = ("with_mask", "without_mask")
SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
THUMB = 160  # contact sheet: height of each before / after thumbnail
SWEEP = (0.02, 0.04, 0.06, 0.08, 0.10, 0.12, 0.15, 0.20, 0.25, 0.30)  # gate thresholds to report


def group_of(name: str) -> str:
    """``with_mask`` / ``without_mask`` from the folder names in ``name``, else ``photos``."""
    parts = name.replace("\\", "/").split("/")[:-1]
    for group in GROUPS:
        if group in parts:
            return group
    return "photos"


class PhotoSource:
    """The image files of a zip or a folder, by name; :meth:`read` decodes one to HxWx3 uint8 RGB."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip = zipfile.ZipFile(path) if path.is_file() else None
        if self._zip is not None:
            names = [n for n in self._zip.namelist() if not n.endswith("/") and "__MACOSX" not in n]
        else:
            names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
        self.names = sorted(n for n in names if n.lower().endswith(SUFFIXES))

    def read(self, name: str) -> np.ndarray:
        from unmask.predict import read_photo

        if self._zip is not None:
            return read_photo(io.BytesIO(self._zip.read(name)))
        return read_photo(self.path / name)

    def subsets(self, start: int, stride: int, limit: int | None) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for name in self.names:
            groups.setdefault(group_of(name), []).append(name)
        return {g: names[start::stride][:limit] for g, names in sorted(groups.items())}


def _sheet_picks(subsets: dict[str, list[str]], count: int) -> set[tuple[str, int]]:
    """``count`` photos spread evenly over each group's subset (groups share the count)."""
    picks: set[tuple[str, int]] = set()
    per_group = max(1, count // max(1, len(subsets)))
    for group, names in subsets.items():
        n = min(per_group, len(names))
        if n:
            picks.update((group, int(i)) for i in np.linspace(0, len(names) - 1, n).round())
    return picks


def _thumb_pair(before: np.ndarray, after: np.ndarray, faces: list) -> np.ndarray:
    """``before | after`` at :data:`THUMB` px high; the faces' boxes (green: restored, orange: left
    alone) and their 5 landmarks drawn on the after."""
    import cv2

    scale = THUMB / before.shape[0]
    width = max(1, round(before.shape[1] * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = [cv2.resize(im, (width, THUMB), interpolation=interp) for im in (before, after)]
    for face in faces:
        colour = (40, 220, 40) if getattr(face, "restored", False) else (255, 150, 0)
        x0, y0, x1, y1 = (int(round(v * scale)) for v in face.box)
        cv2.rectangle(small[1], (x0, y0), (x1, y1), colour, 2)
        for x, y in np.asarray(face.landmarks if face.landmarks is not None else []).reshape(-1, 2):
            cv2.circle(small[1], (int(round(x * scale)), int(round(y * scale))), 2, (255, 0, 255), -1)
    gap = np.full((THUMB, 4, 3), 255, np.uint8)
    return np.concatenate([small[0], gap, small[1]], axis=1)


def contact_sheet(tiles: list[tuple[str, np.ndarray]], path: Path, columns: int = 4) -> None:
    """Write the ``(label, before|after)`` tiles as a grid PNG, each labelled with its group."""
    from PIL import Image, ImageDraw

    if not tiles:
        return
    cell_w = min(max(t.shape[1] for _, t in tiles), 2 * 2 * THUMB + 4)
    cell_h = THUMB + 16
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * (cell_w + 8), rows * (cell_h + 8)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, tile) in enumerate(tiles):
        x, y = (i % columns) * (cell_w + 8), (i // columns) * (cell_h + 8)
        sheet.paste(Image.fromarray(np.ascontiguousarray(tile[:, :cell_w])), (x, y + 14))
        draw.text((x + 2, y), label, fill=(0, 0, 0))
    sheet.save(path)


def _summary(rows: list[dict], detect_only: bool) -> dict:
    n = len(rows)
    pct = (lambda k: round(100.0 * sum(bool(r[k]) for r in rows) / n, 2)) if n else (lambda k: None)
    seconds = [r["seconds"] for r in rows]
    out = {
        "photos": n,
        "detected_pct": pct("detected"),
        "seconds_per_photo_median": round(statistics.median(seconds), 4) if seconds else None,
        "seconds_per_photo_mean": round(statistics.fmean(seconds), 4) if seconds else None,
        "first_face_by_step": dict(Counter(r["step"] for r in rows if r["step"]).most_common()),
        "first_face_judged_masked_pct": (round(100.0 * sum(bool(r["masked"]) for r in rows if r["detected"])
                                               / max(1, sum(bool(r["detected"]) for r in rows)), 2)),
        "faces_per_photo_mean": round(statistics.fmean(r["faces"] for r in rows), 3) if rows else None,
    }
    fractions = [r.get("mask_fraction") for r in rows]
    if any(f is not None for f in fractions):
        known = [f for f in fractions if f is not None]
        out["largest_mask_fraction_percentiles"] = dict(zip(
            ("p5", "p25", "p50", "p75", "p95"),
            (round(float(v), 4) for v in np.percentile(known, [5, 25, 50, 75, 95]))))
        out["photos_with_a_face_at_or_above_pct"] = {
            f"{t:.2f}": round(100.0 * sum((f or 0.0) >= t for f in fractions) / n, 2) for t in SWEEP}
    if not detect_only:
        out.update({
            "found_pct": pct("found"),
            "unchanged_pct": pct("unchanged"),
            "changed_area_pct_mean": (round(statistics.fmean(r["changed_area"] for r in rows) * 100, 3)
                                      if rows else None),
        })
    return out


def run(args: argparse.Namespace) -> dict:
    """Measure every photo of the subsets; returns the figures (also written to ``args.out``)."""
    from tqdm.auto import tqdm

    from unmask.predict import Unmasker, choose_checkpoint, default_detector

    source = PhotoSource(Path(args.photos))
    subsets = source.subsets(args.start, args.stride, args.limit)
    if args.detector == "dlib":
        from unmask.imaging.landmark_detector import FaceLandmarkDetector

        detector = FaceLandmarkDetector()
    else:
        detector = default_detector()
    unmasker, model_line = None, "none (--detect-only)"
    if not args.detect_only:
        checkpoint, why = choose_checkpoint(args.checkpoint)
        kwargs = {} if args.min_mask_fraction is None else {"min_mask_fraction": args.min_mask_fraction}
        unmasker = Unmasker(checkpoint, device=args.device, detector=detector, **kwargs)
        model_line = f"{unmasker.describe()} [{why}]"
    print(f"photos   : {source.path} ({len(source.names)} images; subset start {args.start}, stride {args.stride}, "
          f"limit {args.limit}: " + ", ".join(f"{g} {len(v)}" for g, v in subsets.items()) + ")")
    print(f"detector : {detector!r}")
    print(f"model    : {model_line}")
    print(f"CPU      : {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"python {platform.python_version()}")
    first = next((names[0] for names in subsets.values() if names), None)
    if first is not None:  # warm-up, not timed: loading the detectors and the model, first-call allocations
        try:
            (detector.detect if unmasker is None else unmasker.unmask)(source.read(first))
        except ValueError:
            pass
    picks = _sheet_picks(subsets, args.sheet)
    tiles: list[tuple[str, np.ndarray]] = []
    rows: dict[str, list[dict]] = {g: [] for g in subsets}
    missed: dict[str, list[str]] = {g: [] for g in subsets}
    changed_names: dict[str, list[str]] = {g: [] for g in subsets}
    total = sum(len(v) for v in subsets.values())
    with tqdm(total=total, desc="photos", unit="photo", file=sys.stderr, disable=args.no_progress) as bar:
        for group, names in subsets.items():
            for i, name in enumerate(names):
                bar.update(1)
                try:
                    photo = source.read(name)
                except ValueError as exc:
                    tqdm.write(f"warning: {name}: skipped, {exc}", file=sys.stderr)
                    continue
                started = time.perf_counter()
                if unmasker is None:
                    faces = detector.detect(photo)
                    seconds = time.perf_counter() - started
                    after = photo
                    row = {}
                else:
                    result = unmasker.unmask(photo)
                    seconds = time.perf_counter() - started
                    faces, after = result.faces, result.image
                    changed = (result.image != photo).any(axis=2)
                    known = [f.mask_fraction for f in faces if f.mask_fraction is not None]
                    row = {"found": bool(changed.any()), "unchanged": not changed.any(),
                           "changed_area": float(changed.mean()), "mask_fraction": max(known, default=None)}
                row.update({"detected": bool(faces), "faces": len(faces), "step": faces[0].method if faces else None,
                            "masked": bool(faces and faces[0].masked)})
                row["seconds"] = seconds
                rows[group].append(row)
                if not row["detected"]:
                    missed[group].append(name)
                if unmasker is not None and row["found"]:
                    changed_names[group].append(name)
                if (group, i) in picks:
                    tiles.append((f"{group}: {Path(name).name[:40]}", _thumb_pair(photo, after, faces)))
    figures = {
        "photos": str(source.path), "start": args.start, "stride": args.stride, "limit": args.limit,
        "detect_only": bool(args.detect_only), "detector": repr(detector), "model": model_line,
        "cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "groups": {g: _summary(r, unmasker is None) for g, r in rows.items()},
        "no_face_detected": missed,
        **({"changed": changed_names} if unmasker is not None else {}),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    contact_sheet(tiles, out / "contact_sheet.png")
    _print(figures)
    print(f"\nwritten: {out / 'figures.json'}, {out / 'contact_sheet.png'}")
    return figures


def _print(figures: dict) -> None:
    print(f"\n{'group':14s} {'photos':>6s} {'detected':>9s} {'masked':>7s} {'found':>7s} {'unchanged':>9s} "
          f"{'changed area':>12s} {'s/photo med':>11s} {'mean':>6s}  first face by step")
    for group, s in figures["groups"].items():
        if not s["photos"]:
            continue

        def cell(key: str, width: int, unit: str = "%", s: dict = s) -> str:
            return f"{s[key]:{width - len(unit)}.1f}{unit}" if s.get(key) is not None else f"{'-':>{width}s}"

        area = f"{s['changed_area_pct_mean']:11.2f}%" if s.get("changed_area_pct_mean") is not None else f"{'-':>12s}"
        print(f"{group:14s} {s['photos']:6d} {cell('detected_pct', 9)} {cell('first_face_judged_masked_pct', 7)} "
              f"{cell('found_pct', 7)} "
              f"{cell('unchanged_pct', 9)} {area} {s['seconds_per_photo_median']:11.3f} "
              f"{s['seconds_per_photo_mean']:6.3f}  {s['first_face_by_step']}")
    sweeps = {g: s["photos_with_a_face_at_or_above_pct"] for g, s in figures["groups"].items()
              if s.get("photos_with_a_face_at_or_above_pct")}
    if sweeps:
        print("\ngate (--min-mask-fraction): % of photos with a face whose predicted mask covers at least that much "
              "of its crop\n" + f"{'threshold':>9s} " + " ".join(f"{g:>14s}" for g in sweeps))
        for t in next(iter(sweeps.values())):
            print(f"{t:>9s} " + " ".join(f"{sweep[t]:13.1f}%" for sweep in sweeps.values()))


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", default=str(DEFAULT_PHOTOS), help="zip or folder of photos (default: %(default)s)")
    ap.add_argument("--checkpoint", default=None,
                    help="model (default: the one `unmask predict` chooses without --checkpoint)")
    ap.add_argument("--detect-only", action="store_true", help="run the detector only (no model needed)")
    ap.add_argument("--detector", choices=("predict", "dlib"), default="predict",
                    help="predict: the detector `unmask predict` uses; dlib: the dlib cascade (default: %(default)s)")
    ap.add_argument("--start", type=int, default=0, help="first photo of each group (default: %(default)s)")
    ap.add_argument("--stride", type=int, default=1, help="every K-th photo of each group (default: %(default)s)")
    ap.add_argument("--limit", type=int, default=None, help="at most N photos per group (default: all)")
    ap.add_argument("--min-mask-fraction", type=float, default=None,
                    help="the Unmasker's gate (default: its own default)")
    ap.add_argument("--sheet", type=int, default=36, help="photos on the contact sheet (default: %(default)s)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="folder for figures.json and contact_sheet.png, "
                    "outside the repository (default: %(default)s)")
    ap.add_argument("--device", default="auto", help="model device (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=None, help="torch and OpenCV threads (default: their choice)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if not Path(args.photos).exists():
        print(f"bench_real_photos: --photos {args.photos} does not exist: point it at a zip or folder of photos "
              "(e.g. real_masked_faces_dev.zip, with with_mask/ and without_mask/ folders).", file=sys.stderr)
        return 2
    if Path(args.photos).is_file() and not zipfile.is_zipfile(args.photos):
        print(f"bench_real_photos: --photos {args.photos} is neither a folder nor a zip.", file=sys.stderr)
        return 2
    if _inside(Path(args.out), ROOT):
        print(f"bench_real_photos: --out {args.out} is inside the repository {ROOT}: the photos must not end up "
              "in it; pick a folder elsewhere (default: /tmp/unmask_bench_real_photos).", file=sys.stderr)
        return 2
    if args.start < 0 or args.stride < 1 or (args.limit is not None and args.limit < 1):
        print("bench_real_photos: need --start >= 0, --stride >= 1 and --limit >= 1.", file=sys.stderr)
        return 2
    if args.threads:
        import cv2
        import torch

        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    try:
        run(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"bench_real_photos: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
