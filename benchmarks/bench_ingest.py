"""Benchmark of the ingest stage: index CelebA (folder or zip) and report speed, landmarks, quarantine, memory.

    .venv/bin/python benchmarks/bench_ingest.py --celeba ../shared/data/celeba_dev_9k_89x109.zip --limit 1000

Runs exactly what ``kedro run --pipelines=ingest`` runs, without Kedro around it:
``locate_celeba_source`` with ``source=celeba`` and then ``index_celeba_images`` with the
``ingest`` parameters of ``conf/base/parameters_ingest.yml`` (``--limit``, ``--workers``,
``--executor``, ``--landmark-fallback`` override them), and prints:

* wall time and images/s of the indexing (images checked, usable or not, per second of wall time,
  including starting the worker processes and loading the detector in each);
* how many usable images got their landmarks from each source (annotation, detector, template);
* the quarantine counts per reason;
* peak RSS (``resource.getrusage``) of this process and, separately, the largest of its worker
  processes (``RUSAGE_CHILDREN`` reports the largest child that has ended).

A path that does not exist is reported on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))
from _common import celeba_path_exists, configure_logging  # benchmarks/ is the script's folder

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")


def _peak_rss_mib(who: int) -> float:
    kib = resource.getrusage(who).ru_maxrss  # KiB on Linux, bytes on macOS
    return kib / (1024 * 1024) if sys.platform == "darwin" else kib / 1024


def _ingest_params() -> dict:
    import yaml

    path = ROOT / "conf" / "base" / "parameters_ingest.yml"
    try:
        return dict(yaml.safe_load(path.read_text())["ingest"])
    except (OSError, KeyError, TypeError):
        return {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--celeba", required=True, help="CelebA folder or zip (aligned or in-the-wild layout)")
    ap.add_argument("--limit", type=int, default=None, help="index only the first N images (default: all)")
    ap.add_argument("--workers", type=int, default=None, help="parallel workers (default: one per core)")
    ap.add_argument("--executor", choices=("auto", "process", "thread"), default=None)
    ap.add_argument("--landmark-fallback", choices=("detector", "template"), default=None)
    ap.add_argument("--check", choices=("decode", "header"), default=None)
    ap.add_argument("--verbose", action="store_true", help="show the ingest log and progress bar")
    args = ap.parse_args(argv)

    path = Path(args.celeba)
    if not celeba_path_exists("bench_ingest", path):
        return 2
    configure_logging(args.verbose)

    from unmask.pipelines.ingest.nodes import (
        LANDMARK_SOURCES,
        index_celeba_images,
        ingest_metrics,
        locate_celeba_source,
    )

    params = _ingest_params()
    params.update({"source": "celeba", "celeba_path": str(path), "limit": args.limit})
    for key in ("workers", "executor", "check"):
        if getattr(args, key) is not None:
            params[key] = getattr(args, key)
    if args.landmark_fallback is not None:
        params["landmark_fallback"] = args.landmark_fallback

    rss_start = _peak_rss_mib(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    try:
        info = locate_celeba_source(params)
    except FileNotFoundError as exc:
        print(f"bench_ingest: {exc}", file=sys.stderr)
        return 2
    t1 = time.perf_counter()
    index, quarantine = index_celeba_images(info, params)
    t2 = time.perf_counter()

    metrics = ingest_metrics(index, quarantine)
    checked = len(index) + int((quarantine["reason"] != "missing_file").sum())
    sources = Counter(index["landmark_source"])
    reasons = Counter(quarantine["reason"])
    print(f"source       : {info['images']} ({info['kind']}, {info['layout']} layout)")
    print(f"parameters   : limit={args.limit} workers={params.get('workers')} executor={params.get('executor')} "
          f"check={params.get('check')} landmark_fallback={params.get('landmark_fallback')} "
          f"cores={len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()}")
    print(f"locate       : {t1 - t0:.2f} s")
    print(f"index        : {t2 - t1:.2f} s for {checked} images checked -> {checked / max(t2 - t1, 1e-9):.1f} images/s "
          f"({len(index)} usable)")
    print("landmarks    : " + ", ".join(f"{k} {sources.get(k, 0)}" for k in LANDMARK_SOURCES))
    print("quarantine   : " + (", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) if reasons else "none"))
    print(f"peak RSS     : {_peak_rss_mib(resource.RUSAGE_SELF):.0f} MiB (this process; {rss_start:.0f} MiB "
          f"after imports), largest worker process {_peak_rss_mib(resource.RUSAGE_CHILDREN):.0f} MiB")
    print("mlflow       : " + ", ".join(f"{k}={int(v)}" for k, v in metrics.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
