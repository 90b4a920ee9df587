"""Does bf16 training lose quality against fp32? A controlled comparison on real CelebA faces.

Same seed, same initial weights, same batches in the same order: the only difference between the
runs is the autocast dtype of the training step (``unmask.models.training.training_step``). Every
``--eval-every`` steps both models are scored on the same validation faces in float32 (so only
the training precision differs), and the table prints validation PSNR and SSIM per step.

    python benchmarks/bench_bf16_training.py --steps 300 --seeds 0 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

try:
    import unmask  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from celeba_pairs import SHARED_ZIP, celeba_pairs

from unmask.models import build_loss, build_model, psnr, ssim
from unmask.models.devices import retain_freed_memory
from unmask.models.inference import restore
from unmask.models.training import training_step

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def to_tensor(images) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255).contiguous()


@torch.no_grad()
def evaluate(model: torch.nn.Module, masked: torch.Tensor, clean: torch.Tensor, batch: int = 32) -> tuple[float, float]:
    model.eval()
    outs = torch.cat([restore(model, masked[i:i + batch]) for i in range(0, len(masked), batch)])
    model.train()
    return float(psnr(outs, clean).mean()), float(ssim(outs, clean).mean())


def run(args: argparse.Namespace, seed: int, dtype_name: str, data: dict) -> list[tuple[int, float, float, float]]:
    torch.manual_seed(seed)
    model = build_model(args.model, filters=tuple(args.filters)).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    loss_fn = build_loss("ssim_l1")
    order = torch.Generator().manual_seed(seed)
    n = len(data["train_masked"])
    perm, pos, rows, started = torch.randperm(n, generator=order), 0, [], time.perf_counter()
    for step in range(1, args.steps + 1):
        if pos + args.batch > n:
            perm, pos = torch.randperm(n, generator=order), 0
        idx = perm[pos:pos + args.batch]
        pos += args.batch
        x = data["train_masked"][idx].contiguous(memory_format=torch.channels_last)
        loss = training_step(model, x, data["train_clean"][idx], loss_fn, optimizer, scaler, DTYPES[dtype_name])
        if step % args.eval_every == 0 or step == args.steps:
            p, s = evaluate(model, data["val_masked"], data["val_clean"])
            rows.append((step, float(loss), p, s))
            print(f"seed {seed} {dtype_name} step {step}: loss {float(loss):.4f} val PSNR {p:.3f} dB SSIM {s:.4f} "
                  f"({(time.perf_counter() - started) / step:.3f} s/step)", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--celeba", default=str(SHARED_ZIP))
    p.add_argument("--model", default="ra_unet")
    p.add_argument("--filters", nargs="+", type=int, default=[64, 128, 256, 512, 1024])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--train-images", type=int, default=2000)
    p.add_argument("--val-images", type=int, default=200)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    _, tm, tc = celeba_pairs(args.celeba, args.train_images, args.size)
    _, vm, vc = celeba_pairs(args.celeba, args.val_images, args.size, start=8000)  # images 008001.. (held out)
    data = {"train_masked": to_tensor(tm), "train_clean": to_tensor(tc),
            "val_masked": to_tensor(vm), "val_clean": to_tensor(vc)}
    base_psnr = float(psnr(data["val_masked"], data["val_clean"]).mean())
    print(f"{args.model} {args.filters} at {args.size}x{args.size}, batch {args.batch}, Adam lr {args.lr}, "
          f"{args.train_images} train / {args.val_images} val real CelebA faces; masked input PSNR {base_psnr:.2f} dB")
    results = {}
    with retain_freed_memory():
        for seed in args.seeds:
            for name in ("fp32", "bf16"):
                results[(seed, name)] = run(args, seed, name, data)
    print()
    print("step  seed  fp32 PSNR  bf16 PSNR  diff (dB)  fp32 SSIM  bf16 SSIM  diff")
    for seed in args.seeds:
        for a, b in zip(results[(seed, "fp32")], results[(seed, "bf16")]):
            print(f"{a[0]:<5d} {seed:<5d} {a[2]:9.3f}  {b[2]:9.3f}  {b[2] - a[2]:+9.3f}  {a[3]:9.4f}  {b[3]:9.4f}  "
                  f"{b[3] - a[3]:+.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
