"""Speed (and bf16 numerics) of the UNet / Attention UNet / RA-UNet variants, through the package's own code.

Main table (default): for each device, model, image size and precision, one row with the
parameter count, seconds per training step at batch ``--train-batch`` and inference seconds per
image at each of ``--infer-batches``. The rows time exactly what the project runs:

* training: ``unmask.models.training.training_step`` (forward under autocast, ``ssim_l1`` loss in
  float32, backward, Adam step) on a model laid out as the trainer lays it out (channels_last on
  CPU and CUDA), inside ``retain_freed_memory`` on the CPU, as the trainer does. ``bf16`` is
  bf16 autocast with float32 weights; ``fp16`` (CUDA only) adds the GradScaler.
* inference: ``prepare_for_inference(model, device, precision)`` then ``restore(model, x, dtype)``
  under ``torch.inference_mode``: for bf16/fp16 the weights themselves are cast.

``--ablation`` instead measures, in one run, each speed-up of the model code against the plain
float32 NCHW baseline (the code before these changes) on the first model and size, and prints the
ratios: channels_last, the dense-gradient concatenation (``InpaintingUNet.dense_concat_grads``),
bf16 autocast, glibc malloc retention, bf16 weights for inference and ``torch.compile``.

After each table, the bf16 (and fp16) outputs are compared with the fp32 output of the same
network (max abs difference and PSNR between them, and each one's PSNR to the target).

Timings: ``--warmup`` untimed calls, then the median of ``--repeats`` timed calls. On a shared
machine other processes distort CPU timings badly (with 2 OpenMP threads on 2 cores, one busy
core can make a step 10-100x slower), so before every timed call the script waits up to
``--quiet-wait`` seconds for the CPUs to go idle, re-runs a call during which other processes
used more than 0.1 core (a few times at most), and reports in the ``busy`` column the most
cores other processes used during a kept call (0.00 = the machine was ours).

Examples::

    python benchmarks/bench_model.py                       # 3 models x 256, 128 x fp32, bf16; cpu (+cuda)
    python benchmarks/bench_model.py --ablation            # ra_unet 256: before/after of every speed-up
    python benchmarks/bench_model.py --quick --filters 4 8 16 --sizes 32   # smoke test
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

try:
    import unmask  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from unmask.models import build_loss, build_model, count_parameters
from unmask.models.devices import (
    cpu_name,
    keep_freed_memory,
    memory_format_for,
    release_freed_memory,
    retain_freed_memory,
)
from unmask.models.inference import prepare_for_inference, restore
from unmask.models.training import build_optimizer, training_step

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CONTENDED = 0.1  # cores used by other processes during a timed call that make it void
DEFAULT_FILTERS = (64, 128, 256, 512, 1024)


# --------------------------------------------------------------------------- machine


def cpu_count() -> int:
    """CPUs this process may run on (cgroup/affinity aware where the OS tells us)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _proc_stat() -> tuple[int, int] | None:
    """(total, idle) jiffies over all CPUs from /proc/stat, or None off Linux."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(values), values[3] + values[4]  # total, idle + iowait


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") and "SC_CLK_TCK" in os.sysconf_names else 100


class OtherLoad:
    """CPU time used by *other* processes while the block runs, in cores (0 = machine was ours).

    /proc/stat gives the whole machine's busy time; this process's own user+system time is
    subtracted. NaN where /proc/stat is missing.
    """

    def __enter__(self) -> OtherLoad:
        self._stat, self._own, self._wall = _proc_stat(), _own_cpu(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        stat, own, wall = _proc_stat(), _own_cpu(), time.perf_counter()
        if self._stat is None or stat is None or wall <= self._wall:
            self.cores = float("nan")
            return
        busy = ((stat[0] - stat[1]) - (self._stat[0] - self._stat[1])) / _TICKS
        self.cores = min(float(cpu_count()), max(0.0, (busy - (own - self._own)) / (wall - self._wall)))


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def cpu_busy(interval: float = 0.3) -> float:
    """Cores kept busy by other processes over ``interval`` s while this one sleeps."""
    with OtherLoad() as load:
        time.sleep(interval)
    return load.cores


def wait_until_quiet(max_wait: float, threshold: float = 0.15) -> float:
    """Wait (at most ``max_wait`` s) until other processes leave the CPUs idle; return the last load."""
    if max_wait <= 0:
        return float("nan")
    start = time.monotonic()
    busy = cpu_busy()
    while busy > threshold and time.monotonic() - start < max_wait:
        busy = cpu_busy()
    return busy


def describe_machine(device: torch.device) -> str:
    """One line per fact: CPU, threads, ISA, torch and oneDNN, GPU when used."""
    flags = cpu_flags()
    isa = [name for name in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_fp16") if name in flags]
    lines = [
        f"CPU      : {cpu_name()} ({cpu_count()} usable cores; torch threads {torch.get_num_threads()}, "
        f"ISA {' '.join(isa) or 'unknown'}; torch sees {torch.backends.cpu.get_cpu_capability()})",
        f"torch    : {torch.__version__} (oneDNN {'on' if torch.backends.mkldnn.is_available() else 'off'}, "
        f"python {platform.python_version()}, {platform.system()} {platform.release()})",
    ]
    if device.type == "cuda":
        lines.append(f"GPU      : {torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})")
    return "\n".join(lines)


# --------------------------------------------------------------------------- timing


@dataclass
class Timing:
    median: float = float("nan")
    runs: list[float] = field(default_factory=list)
    busy: float = float("nan")  # most cores other processes used during a kept timed call
    first_call: float = float("nan")  # the first (warm-up / compile) call


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(
    fn: Callable[[], object], device: torch.device, warmup: int, repeats: int, quiet_wait: float, retries: int = 3
) -> Timing:
    """Warm up, then the median of ``repeats`` timed calls.

    On the CPU each timed call first waits for the machine to go quiet, and a call during which
    other processes used more than ``CONTENDED`` cores is thrown away and re-run (at most
    ``retries`` extra calls in all); ``busy`` is the largest other-process load among the kept calls.
    """
    timing = Timing()
    for i in range(max(1, warmup)):
        start = time.perf_counter()
        fn()
        _sync(device)
        if i == 0:
            timing.first_call = time.perf_counter() - start
    loads: list[float] = []
    spare = retries if quiet_wait > 0 else 0
    while len(timing.runs) < max(1, repeats):
        if device.type == "cpu":
            wait_until_quiet(quiet_wait)
        with OtherLoad() as load:
            start = time.perf_counter()
            fn()
            _sync(device)
            elapsed = time.perf_counter() - start
        # /proc/stat counts in clock ticks, so short calls need a looser bar.
        if device.type == "cpu" and load.cores > max(CONTENDED, 3.0 / (_TICKS * elapsed)) and spare > 0:
            spare -= 1
            continue
        timing.runs.append(elapsed)
        loads.append(load.cores)
    timing.median = statistics.median(timing.runs)
    loads = [b for b in loads if not math.isnan(b)]
    timing.busy = max(loads) if loads else float("nan")
    return timing


def smooth_images(n: int, size: int, generator: torch.Generator) -> Tensor:
    """Smooth random colour images in [0, 1] (low-pass noise), a stand-in for faces."""
    coarse = torch.rand(n, 3, max(2, size // 16), max(2, size // 16), generator=generator)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp_(0, 1)


def masked_pair(n: int, size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(masked, clean): the lower-middle rectangle of each clean image replaced by a flat colour."""
    clean = smooth_images(n, size, generator)
    masked = clean.clone()
    top, bottom, left, right = size // 2, size * 7 // 8, size // 4, size * 3 // 4
    colour = torch.rand(n, 3, 1, 1, generator=generator)
    masked[:, :, top:bottom, left:right] = colour
    return masked, clean



def applicable(dtype: str, device: torch.device) -> bool:
    """fp16 is timed on CUDA only (on the CPU it is emulated and not a project setting)."""
    return dtype != "fp16" or device.type == "cuda"


# --------------------------------------------------------------------------- what is timed


@dataclass(frozen=True)
class TrainVariant:
    """How a training step is set up; the defaults are what the project's trainer does."""

    dtype: str = "fp32"
    channels_last: bool = True
    dense_concat: bool = True
    retain_malloc: bool = True
    fused_adam: bool = True  # the trainer's build_optimizer; False: torch's default (foreach) Adam
    label: str = ""


@dataclass(frozen=True)
class InferVariant:
    """How inference is set up; ``project`` = ``prepare_for_inference`` + ``restore``."""

    dtype: str = "fp32"
    project: bool = True
    channels_last: bool = True  # only for project=False (the project decides itself)
    compile: bool = False
    retain_malloc: bool = True
    label: str = ""


def new_model(name: str, filters: tuple[int, ...], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(name, filters=filters)


def time_training(name: str, filters: tuple[int, ...], args: argparse.Namespace, device: torch.device, size: int,
                  variant: TrainVariant) -> Timing:
    gen = torch.Generator().manual_seed(1)
    masked, clean = masked_pair(args.train_batch, size, gen)
    fmt = torch.channels_last if variant.channels_last and device.type != "mps" else torch.contiguous_format
    model = new_model(name, filters, args.seed).to(device, memory_format=fmt).train()
    model.dense_concat_grads = variant.dense_concat
    x, y = masked.to(device).contiguous(memory_format=fmt), clean.to(device)
    dtype = DTYPES[variant.dtype]
    optimizer = (build_optimizer(model, 1e-4, device) if variant.fused_adam
                 else torch.optim.Adam(model.parameters(), lr=1e-4))
    loss_fn = build_loss("ssim_l1")
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    with retain_freed_memory(variant.retain_malloc and device.type == "cpu"):
        timing = time_call(lambda m=model, o=optimizer: training_step(m, x, y, loss_fn, o, scaler, dtype), device,
                           args.warmup, args.repeats, args.quiet_wait)
    del model, optimizer
    return timing


def time_inference(name: str, filters: tuple[int, ...], args: argparse.Namespace, device: torch.device, size: int,
                   variant: InferVariant, batch: int) -> Timing:
    gen = torch.Generator().manual_seed(2)
    masked, _ = masked_pair(batch, size, gen)
    model = new_model(name, filters, args.seed)
    if variant.project:
        model, dtype = prepare_for_inference(model, device, variant.dtype, compile=variant.compile,
                                             retain_memory=variant.retain_malloc)
        x = masked.to(device)

        def infer() -> None:
            restore(model, x, dtype)
    else:  # the code before these changes: a float32 model called directly, optional autocast
        fmt = torch.channels_last if variant.channels_last else torch.contiguous_format
        model = model.to(device, memory_format=fmt).eval()
        x = masked.to(device).contiguous(memory_format=fmt)
        dtype = DTYPES[variant.dtype]

        def infer() -> None:
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                model(x).float()
        if variant.retain_malloc and device.type == "cpu":
            keep_freed_memory()
    timing = time_call(infer, device, args.warmup, args.repeats, args.quiet_wait)
    release_freed_memory()  # the next variant decides for itself
    timing.median /= batch
    return timing


# --------------------------------------------------------------------------- quality


def psnr_db(a: Tensor, b: Tensor) -> float:
    mse = float(torch.mean((a.double() - b.double()) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def brief_training(model: nn.Module, size: int, steps: int, device: torch.device) -> None:
    """A few fp32 Adam steps on the synthetic inpainting task, so outputs are not just init noise."""
    if steps <= 0:
        return
    gen = torch.Generator().manual_seed(3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = build_loss("ssim_l1")
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    model.train().to(device)
    for _ in range(steps):
        masked, clean = masked_pair(4, size, gen)
        training_step(model, masked.to(device), clean.to(device), loss_fn, optimizer, scaler, torch.float32)
    model.eval()


def quality_rows(name: str, filters: tuple[int, ...], args: argparse.Namespace, device: torch.device,
                 size: int) -> list[list[str]]:
    """Low-precision outputs (project inference path) against the fp32 output of the same network."""
    gen = torch.Generator().manual_seed(4)
    masked, clean = masked_pair(args.quality_batch, size, gen)
    base = new_model(name, filters, args.seed)
    brief_training(base, size, args.quality_steps, device)
    state = {k: v.detach().clone() for k, v in base.state_dict().items()}
    outputs = {}
    for dtype in ["fp32", *[d for d in args.dtypes if d != "fp32" and applicable(d, device)]]:
        model = build_model(name, filters=filters)
        model.load_state_dict(state)
        model, resolved = prepare_for_inference(model, device, dtype)
        outputs[dtype] = restore(model, masked, resolved).cpu()
    ref = outputs.pop("fp32")
    ref_psnr = psnr_db(ref, clean)
    return [[dtype, f"{float((out - ref).abs().max()):.2e}", f"{float((out - ref).abs().mean()):.2e}",
             f"{psnr_db(out, ref):.1f}", f"{ref_psnr:.2f}", f"{psnr_db(out, clean):.2f}"]
            for dtype, out in outputs.items()]


# --------------------------------------------------------------------------- tables


def fmt_s(value: float) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.3f}" if value < 100 else f"{value:.0f}"


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    print()
    sys.stdout.flush()


def _busy(timings: list[Timing]) -> str:
    loads = [t.busy for t in timings if not math.isnan(t.busy)]
    return f"{max(loads):.2f}" if loads else "-"


def main_table(args: argparse.Namespace, device: torch.device) -> None:
    filters = tuple(args.filters) if args.filters else DEFAULT_FILTERS
    header = ["device", "model", "size", "params", "dtype", f"train s/step b{args.train_batch}",
              *[f"infer s/img b{b}" for b in args.infer_batches], "busy"]
    rows, quality = [], []
    for name in args.models:
        params = f"{count_parameters(build_model(name, filters)) / 1e6:.2f}M"
        for size in args.sizes:
            for dtype in args.dtypes:
                if not applicable(dtype, device):
                    continue
                train = Timing() if args.no_train else time_training(name, filters, args, device, size,
                                                                      TrainVariant(dtype=dtype))
                infer = [Timing() if args.no_infer else time_inference(name, filters, args, device, size,
                                                                       InferVariant(dtype=dtype), b)
                         for b in args.infer_batches]
                row = [device.type, name, str(size), params, dtype, fmt_s(train.median),
                       *[fmt_s(t.median) for t in infer], _busy([train, *infer])]
                print("  ".join(row), flush=True)
                rows.append(row)
            if not args.no_quality:
                quality += [[device.type, name, str(size), *q] for q in quality_rows(name, filters, args, device, size)]
    print()
    print_table(header, rows)
    if quality:
        steps = f"{args.quality_steps} fp32 Adam steps" if args.quality_steps else "random init"
        print(f"Low precision vs fp32 outputs of the same network, project inference path ({steps}, "
              f"{args.quality_batch} synthetic masked images; PSNR in dB, data range 1):")
        print_table(["device", "model", "size", "dtype", "max|d|", "mean|d|", "PSNR vs fp32",
                     "fp32 PSNR vs target", "dtype PSNR vs target"], quality)


TRAIN_ABLATION = [
    TrainVariant("fp32", channels_last=False, dense_concat=False, retain_malloc=False, fused_adam=False,
                 label="fp32 NCHW (before)"),
    TrainVariant("fp32", channels_last=True, dense_concat=False, retain_malloc=False, fused_adam=False,
                 label="fp32 channels_last"),
    TrainVariant("fp32", channels_last=True, dense_concat=True, retain_malloc=False, fused_adam=False,
                 label="  + dense concat grads"),
    TrainVariant("bf16", channels_last=True, dense_concat=False, retain_malloc=False, fused_adam=False,
                 label="bf16 autocast channels_last"),
    TrainVariant("bf16", channels_last=True, dense_concat=True, retain_malloc=False, fused_adam=False,
                 label="  + dense concat grads"),
    # Last: glibc's dynamic mmap threshold stays off for the process after the first mallopt.
    TrainVariant("fp32", fused_adam=False, label="fp32 cl + dense + malloc"),
    TrainVariant("fp32", label="  + fused Adam (project fp32)"),
    TrainVariant("bf16", fused_adam=False, label="bf16 cl + dense + malloc"),
    TrainVariant("bf16", label="  + fused Adam (project bf16)"),
]
INFER_ABLATION = [
    InferVariant("fp32", project=False, channels_last=False, retain_malloc=False, label="fp32 NCHW (before)"),
    InferVariant("fp32", retain_malloc=False, label="fp32 channels_last"),
    InferVariant("fp32", label="  + malloc retention (project fp32)"),
    InferVariant("bf16", project=False, channels_last=True, retain_malloc=False, label="bf16 autocast channels_last"),
    InferVariant("bf16", retain_malloc=False, label="bf16 weights channels_last"),
    InferVariant("bf16", label="  + malloc retention (project bf16)"),
    InferVariant("bf16", compile=True, label="  + torch.compile (option)"),
]


def ablation(args: argparse.Namespace, device: torch.device) -> None:
    name, size = args.models[0], args.sizes[0]
    filters = tuple(args.filters) if args.filters else DEFAULT_FILTERS
    print(f"Ablation: {name} {list(filters)} at {size}x{size} on {device.type}; ratio = baseline / variant")
    jobs: list[tuple[str, TrainVariant | InferVariant, int]] = []
    if not args.no_train:
        jobs += [("train", v, args.train_batch) for v in TRAIN_ABLATION
                 if applicable(v.dtype, device) and not (args.quick and v.dtype == "fp32" and v.channels_last)]
    if not args.no_infer:
        jobs += [("infer", v, b) for b in args.infer_batches for v in INFER_ABLATION if args.compile or not v.compile]
    # Variants with malloc retention run last: the first mallopt call turns glibc's dynamic mmap
    # threshold off for the process, and the variants without it must see glibc as it comes.
    order = sorted(range(len(jobs)), key=lambda i: jobs[i][1].retain_malloc and device.type == "cpu")
    timings: dict[int, Timing] = {}
    for i in order:
        kind, variant, batch = jobs[i]
        if kind == "train":
            timings[i] = time_training(name, filters, args, device, size, variant)
        else:
            timings[i] = time_inference(name, filters, args, device, size, variant, batch)
        print(f"{kind} b{batch}  {variant.label}  {fmt_s(timings[i].median)}", flush=True)
    rows, base = [], {}
    for i, (kind, variant, batch) in enumerate(jobs):
        t = timings[i]
        base.setdefault((kind, batch), t.median)  # the first variant of each group is the baseline
        what = f"train step b{batch}" if kind == "train" else f"inference s/img b{batch}"
        label = variant.label + (f" (first call {t.first_call:.1f} s)" if getattr(variant, "compile", False) else "")
        rows.append([what, label, fmt_s(t.median), f"{base[(kind, batch)] / t.median:.2f}x", _busy([t])])
    print()
    print_table(["what", "variant", "seconds", "ratio", "busy"], rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["unet", "attention_unet", "ra_unet"],
                   choices=["unet", "attention_unet", "ra_unet"])
    p.add_argument("--sizes", nargs="+", type=int, default=[256, 128])
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16", "fp16"], choices=list(DTYPES),
                   help="fp16 is timed on CUDA only")
    p.add_argument("--devices", nargs="+", default=["cpu", "cuda"], choices=["cpu", "cuda"])
    p.add_argument("--filters", nargs="+", type=int, default=None, help="override filters, e.g. 4 8 16")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls first (oneDNN builds kernels on call 1)")
    p.add_argument("--train-batch", type=int, default=8)
    p.add_argument("--infer-batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: usable cores)")
    p.add_argument("--ablation", action="store_true",
                   help="before/after of each speed-up on the first model and size instead of the main table")
    p.add_argument("--compile", action="store_true", help="with --ablation: also time torch.compile inference")
    p.add_argument("--no-train", action="store_true", help="skip the training-step timing")
    p.add_argument("--no-infer", action="store_true", help="skip the inference timing")
    p.add_argument("--no-quality", action="store_true", help="skip the low-precision-vs-fp32 output comparison")
    p.add_argument("--quality-batch", type=int, default=4)
    p.add_argument("--quality-steps", type=int, default=0,
                   help="fp32 Adam steps on the synthetic task before comparing outputs (0: random init)")
    p.add_argument("--quiet-wait", type=float, default=30.0,
                   help="seconds to wait for other processes to leave the CPUs idle before each timed call")
    p.add_argument("--quick", action="store_true",
                   help="smoke-test subset: first model/size only, 1 repeat, 1 warm-up, batch 2, no waiting")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.sizes = args.models[:1], args.sizes[:1]
        args.repeats, args.warmup, args.train_batch = 1, 1, 2
        args.infer_batches, args.quality_batch, args.quiet_wait = [1, 2], 2, 0.0
    for name in ("repeats", "train_batch", "quality_batch"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if any(s < 1 for s in args.sizes) or any(b < 1 for b in args.infer_batches):
        p.error("--sizes and --infer-batches must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads or cpu_count())
    devices = []
    for name in dict.fromkeys(args.devices):
        if name == "cuda" and not torch.cuda.is_available():
            print("cuda     : not available, skipped")
            continue
        devices.append(torch.device(name))
    if not devices:
        print("no device to benchmark")
        return 1
    if any(d.type == "cuda" for d in devices):
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    for device in devices:
        print(describe_machine(device))
        print(f"settings : repeats {args.repeats} (median), warm-up {args.warmup}, layout "
              f"{'channels_last' if memory_format_for(device) == torch.channels_last else 'NCHW'}, "
              f"command {' '.join(sys.argv[1:]) or '(defaults)'}")
        print()
        if args.ablation:
            ablation(args, device)
        else:
            main_table(args, device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
