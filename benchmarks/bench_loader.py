"""Images per second of the training data loader, as the trainer builds it, on real CelebA crops.

Writes ``--images`` masked/clean pairs of real faces (``--size`` square PNGs, as the ``faces``
and ``masks`` pipelines store them) to a temporary folder, loads them back through the catalog's
``unmask.datasets.ImagePartitionsDataset``, and times full epochs of
the trainer's DataLoader (``EpochSampler`` with flips, batch ``--batch``) for each worker count.
Only loading is timed: decode, flip, collate; no model.

    python benchmarks/bench_loader.py --images 512 --size 256 --workers 0 1 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

try:
    import unmask  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from celeba_pairs import SHARED_ZIP, celeba_pairs

from unmask.datasets import ImagePartitionsDataset
from unmask.models.data import EpochSampler, PairedFaceDataset
from unmask.models.training import _loader


def partitions(folder: Path) -> dict:
    return ImagePartitionsDataset(path=str(folder)).load()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--celeba", default=str(SHARED_ZIP))
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per worker count (after one warm-up)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # as in a training process, the model (not the loader) owns the cores

    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        ids, masked, clean = celeba_pairs(args.celeba, args.images, args.size)
        for name, images in (("masked", masked), ("clean", clean)):
            (Path(tmp) / name).mkdir()
            for image_id, array in zip(ids, images):
                Image.fromarray(array).save(Path(tmp) / name / f"{image_id}.png")
        png_kb = sum(f.stat().st_size for f in Path(tmp).rglob("*.png")) / 1024 / (2 * args.images)
        dataset = PairedFaceDataset(ids, partitions(Path(tmp) / "masked"), partitions(Path(tmp) / "clean"))
        print(f"{args.images} real CelebA pairs at {args.size}x{args.size} (PNG, {png_kb:.0f} KiB per image), "
              f"batch {args.batch}, flips on; images/s = masked+clean pairs per second")
        print("workers  images/s  ms/batch")
        for workers in args.workers:
            sampler = EpochSampler(len(dataset), shuffle=True, flip=True, seed=0)
            loader = _loader(dataset, sampler, args.batch, workers, torch.device("cpu"))
            rates = []
            for epoch in range(args.epochs + 1):
                sampler.set_epoch(epoch)
                started = time.perf_counter()
                count = sum(batch[0].shape[0] for batch in loader)
                if epoch:  # epoch 0 starts the worker processes
                    rates.append(count / (time.perf_counter() - started))
            rate = max(rates)
            print(f"{workers:<8d} {rate:8.1f}  {1000 * args.batch / rate:8.1f}", flush=True)
            del loader
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
