"""Benchmark of the data stages (ingest, faces, masks, split) on a CelebA folder or zip: speed and memory.

    .venv/bin/python benchmarks/bench_data.py --celeba ../shared/data/celeba_dev_9k_89x109.zip --limit 1000

Runs the stages the way ``kedro run --pipelines=ingest,faces,masks,split`` does: each stage's real
pipeline through Kedro's ``SequentialRunner`` on the datasets of ``conf/base/catalog.yml`` (so every
output is written to disk and the next stage loads it back), with the parameters of ``conf/base``
and ``ingest.source=celeba``, ``ingest.celeba_path``, ``ingest.limit``, ``faces.size`` and
``split.test_count`` from the command line. Every file goes into a temporary folder (``--keep DIR``
keeps it instead); MLflow is left out (its artifact datasets save their inner dataset, its metrics
stay in memory).

Printed per stage and end to end (ingest + faces + masks, the issue's figure, and with split):

* wall seconds and images per second (usable images over the stage's wall time, loading its inputs
  and saving its outputs included);
* CPU milliseconds per image, this process and every worker process together;
* peak memory, sampled every 50 ms by a thread: the resident set (RSS) of this process, and of the
  whole process tree (this process plus every worker process alive at that instant, summed; shared
  library pages count once per process, so it over-states), and the tree's proportional set size
  (PSS from ``/proc/<pid>/smaps_rollup``, where shared pages are divided among the processes that
  share them: the memory the stage really holds), where Linux provides it; ``added`` is how much
  this process's RSS rose during the stage (what the stage itself holds, as opposed to what earlier
  stages left allocated);
* disk bytes per image of each image layer.

A path that does not exist is reported on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))
from _common import celeba_path_exists, configure_logging  # benchmarks/ is the script's folder

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

STAGES = ("ingest", "faces", "masks", "split")
END_TO_END = ("ingest", "faces", "masks")
IMAGE_LAYERS = ("face_crops", "masked_faces", "mask_maps")
CELEBA_IMAGES = 202_599
MIB = 1024 * 1024


# ------------------------------------------------------------------------------------ memory ----


HAS_PSS = os.path.exists("/proc/self/smaps_rollup")  # Linux 4.14+


def _pss_bytes(pid: int) -> int:
    """Proportional set size of a process (0 when it has just ended)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return 0
    return 0


@dataclass
class Peaks:
    main_rss: int = 0
    tree_rss: int = 0
    tree_pss: int = 0
    has_pss: bool = HAS_PSS


@dataclass
class MemorySampler:
    """Samples this process tree's memory every ``interval`` seconds in a daemon thread."""

    interval: float = 0.05
    peaks: Peaks = field(default_factory=Peaks)

    def __post_init__(self) -> None:
        import psutil

        self._me = psutil.Process()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        procs = [self._me]
        try:
            procs += self._me.children(recursive=True)
        except psutil.Error:
            pass
        main = tree = pss = 0
        for proc in procs:
            try:
                rss = proc.memory_info().rss
            except psutil.Error:
                continue
            tree += rss
            if proc.pid == self._me.pid:
                main = rss
            if HAS_PSS:
                pss += _pss_bytes(proc.pid)
        with self._lock:
            p = self.peaks
            p.main_rss, p.tree_rss = max(p.main_rss, main), max(p.tree_rss, tree)
            p.tree_pss = max(p.tree_pss, pss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def reset(self) -> Peaks:
        """Take a sample, return the peaks since the last reset and start new ones."""
        self._sample()
        with self._lock:
            peaks, self.peaks = self.peaks, Peaks()
        return peaks

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _cpu_seconds() -> float:
    """CPU time of this process, its ended children and its live descendants."""
    import psutil

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    try:
        for child in psutil.Process().children(recursive=True):
            try:
                times = child.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                continue
    except psutil.Error:
        pass
    return total


# ----------------------------------------------------------------------------------- catalog ----


def _project_config(data_root: Path) -> tuple[dict, dict]:
    """``conf/base`` (+ ``conf/local``) catalog with every path moved under ``data_root``, and parameters."""
    from kedro.config import OmegaConfigLoader

    from unmask.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(conf_source=str(ROOT / "conf"), **CONFIG_LOADER_ARGS)
    catalog: dict = {}
    for name, entry in loader["catalog"].items():
        entry = dict(entry)
        kind = str(entry.get("type", ""))
        if kind.endswith("MlflowArtifactDataset"):
            entry = dict(entry["dataset"])
        elif kind.startswith("kedro_mlflow"):
            entry = {"type": "MemoryDataset"}
        for key in ("filepath", "path"):
            if key in entry and not Path(entry[key]).is_absolute():
                entry[key] = str(data_root / entry[key])
        catalog[name] = entry
    return catalog, dict(loader["parameters"])


def _pipelines() -> dict:
    from unmask.pipelines.faces.pipeline import create_pipeline as faces
    from unmask.pipelines.ingest.pipeline import create_pipeline as ingest
    from unmask.pipelines.masks.pipeline import create_pipeline as masks
    from unmask.pipelines.split.pipeline import create_pipeline as split

    return {"ingest": ingest(), "faces": faces(), "masks": masks(), "split": split()}


def _layer_bytes(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
    return len(files), sum(p.stat().st_size for p in files)


# -------------------------------------------------------------------------------------- main ----


@dataclass
class StageResult:
    name: str
    images: int
    wall: float
    cpu: float
    peaks: Peaks
    start_rss: int = 0


def _row(name: str, images: int, wall: float, cpu: float, peaks: Peaks, start_rss: int | None = None) -> str:
    pss = f"{peaks.tree_pss / MIB:8.0f}" if peaks.has_pss else f"{'n/a':>8}"
    grew = f"{(peaks.main_rss - start_rss) / MIB:+6.0f}" if start_rss is not None else f"{'-':>6}"
    return (f"{name:<22} {images:>7} {wall:>8.2f} {images / max(wall, 1e-9):>9.1f} "
            f"{1000 * cpu / max(images, 1):>9.2f} {peaks.main_rss / MIB:>9.0f} {grew} "
            f"{peaks.tree_rss / MIB:>9.0f} {pss}")


def _combine(results: list[StageResult], names: tuple[str, ...], images: int) -> tuple[float, float, Peaks]:
    chosen = [r for r in results if r.name in names]
    peaks = Peaks(main_rss=max(r.peaks.main_rss for r in chosen), tree_rss=max(r.peaks.tree_rss for r in chosen),
                  tree_pss=max(r.peaks.tree_pss for r in chosen), has_pss=all(r.peaks.has_pss for r in chosen))
    return sum(r.wall for r in chosen), sum(r.cpu for r in chosen), peaks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--celeba", required=True, help="CelebA folder or zip (aligned or in-the-wild layout)")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N images (default: all)")
    ap.add_argument("--size", type=int, default=256, help="faces.size, the crop side (default: 256, the paper's)")
    ap.add_argument("--test-count", type=int, default=None,
                    help="split.test_count (default: 10%% of the images, at most 10000)")
    ap.add_argument("--keep", type=Path, default=None, help="write the data here and keep it (default: a temp folder)")
    ap.add_argument("--verbose", action="store_true", help="show the Kedro log and the progress bars")
    args = ap.parse_args(argv)

    path = Path(args.celeba)
    if not celeba_path_exists("bench_data", path):
        return 2
    configure_logging(args.verbose)

    from kedro.io import DataCatalog
    from kedro.runner import SequentialRunner

    if not args.verbose:  # after the imports: importing Kedro configures its own logging
        for name in ("kedro", "unmask"):
            logging.getLogger(name).setLevel(logging.WARNING)

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="bench_data_"))
    data_root = workdir.resolve()
    catalog_config, params = _project_config(data_root)
    params["ingest"] = {**params["ingest"], "source": "celeba", "celeba_path": str(path.resolve()),
                        "limit": args.limit}
    params["faces"] = {**params["faces"], "size": args.size}
    pipelines = _pipelines()

    sampler = MemorySampler()
    sampler.reset()
    results: list[StageResult] = []
    n_images = 0
    try:
        catalog = DataCatalog.from_config(catalog_config)
        for stage in STAGES:
            if stage == "split":
                n = n_images
                test_count = args.test_count or max(1, min(10_000, n // 10))
                params["split"] = {**params["split"], "test_count": test_count}
            for group, value in params.items():
                catalog[f"params:{group}"] = value
            start_rss = sampler.reset().main_rss  # ends the previous window at the current RSS
            cpu0, t0 = _cpu_seconds(), time.perf_counter()
            SequentialRunner().run(pipelines[stage], catalog)
            wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
            peaks = sampler.reset()
            if stage == "ingest":
                n_images = len(catalog.load("celeba_index"))
            results.append(StageResult(stage, n_images, wall, cpu, peaks, start_rss))
    finally:
        sampler.stop()

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quarantined = len(catalog.load("quarantine"))
    report = catalog.load("split_report")
    print(f"source   : {path} (limit {args.limit}): {n_images} usable images, {quarantined} quarantined")
    print(f"settings : faces.size={args.size}, split.test_count={params['split']['test_count']}, "
          f"{cores} cores, Python {sys.version.split()[0]}")
    print(f"split    : {report.get('counts')}")
    print()
    header = (f"{'stage':<22} {'images':>7} {'wall s':>8} {'images/s':>9} {'CPU ms/img':>9} "
              f"{'RSS main':>9} {'added':>6} {'RSS tree':>9} {'PSS tree':>8}")
    print(header + "   (memory: peak MiB)")
    print("-" * len(header))
    for r in results:
        print(_row(r.name, r.images, r.wall, r.cpu, r.peaks, r.start_rss))
    e2e = _combine(results, END_TO_END, n_images)
    every = _combine(results, STAGES, n_images)
    print(_row("end to end (i+f+m)", n_images, *e2e))
    print(_row("all four stages", n_images, *every))
    print()
    sizes = []
    for layer in IMAGE_LAYERS:
        files, size = _layer_bytes(Path(catalog_config[layer]["path"]))
        sizes.append(f"{layer} {size / max(files, 1) / 1024:.1f} KiB/image ({files} files)")
    print("disk     : " + ", ".join(sizes))
    rate = n_images / max(e2e[0], 1e-9)
    print(f"CelebA   : all {CELEBA_IMAGES:,} images at the end-to-end rate above: "
          f"{CELEBA_IMAGES / rate / 60:.1f} min for ingest+faces+masks "
          f"({CELEBA_IMAGES / (n_images / max(every[0], 1e-9)) / 60:.1f} min with split)")
    if args.keep is None:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"data     : kept in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
