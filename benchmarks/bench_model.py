"""Speed (and bf16 numerics) of the UNet / Attention UNet / RA-UNet variants.

For each device, model, image size, precision and memory layout this prints one row:
parameters, seconds per training step (forward + ``ssim_l1`` loss + backward + Adam step,
batch ``--train-batch``), and inference seconds per image at batch 1 and batch 8
(``torch.inference_mode``). It then compares the bf16 and fp32 outputs of the same network
(max abs difference and PSNR between them, plus each one's PSNR to the target), as evidence
that bf16 does not cost quality.

Precisions (``--dtypes``):
  fp32       plain float32.
  bf16       ``torch.autocast(device, torch.bfloat16)``; weights stay float32 (mixed precision).
  bf16-full  the whole model cast with ``model.to(torch.bfloat16)``, inputs cast too
             (inference only: Adam on bf16 weights loses small updates, so it is not timed
             for training).
  fp32-bf16conv  float32 tensors, but oneDNN convolutions compute in bf16
             (``torch.backends.mkldnn.conv.fp32_precision = "bf16"``; CPU only).
  fp16       ``torch.autocast(..., torch.float16)`` with a GradScaler (CUDA only).

``--proposed`` additionally times every variant with the proposed changes, so one run gives
before/after ratios: ``net`` = the changes proposed for ``unmask/models/networks.py``, applied
at run time by ``apply_proposed`` (the package is not edited), and ``malloc`` = glibc told to
keep freed memory (``retained_malloc``). ``--configs`` picks single variants, e.g.
``fp32:nchw bf16:cl:net bf16:cl:proposed``.

Timings: ``--warmup`` untimed calls, then the median of ``--repeats`` timed calls. On a shared
machine other processes distort CPU timings badly (with 2 OpenMP threads on 2 cores, one busy
core can make a step 10-100x slower), so before every timed call the script waits up to
``--quiet-wait`` seconds for the CPUs to go idle, re-runs a call during which other processes
used more than 0.1 core (a few times at most), and reports in the ``busy`` column the most
cores other processes used during a kept call (0.00 = the machine was ours).

Examples::

    python benchmarks/bench_model.py                          # ra_unet, 256, fp32+bf16, cpu+cuda
    python benchmarks/bench_model.py --models unet attention_unet ra_unet --sizes 256 128
    python benchmarks/bench_model.py --proposed --dtypes fp32 bf16 bf16-full
    python benchmarks/bench_model.py --quick --filters 4 8 16 --sizes 32   # smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import math
import os
import platform
import statistics
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

try:
    from unmask.models import build_loss, build_model, count_parameters
    from unmask.models.networks import InpaintingUNet
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from unmask.models import build_loss, build_model, count_parameters
    from unmask.models.networks import InpaintingUNet

DTYPES = ("fp32", "bf16", "bf16-full", "fp32-bf16conv", "fp16")
LAYOUTS = ("channels_last", "contiguous")
CONTENDED = 0.1  # cores used by other processes during a timed call that make it void


# --------------------------------------------------------------------------- machine


def cpu_count() -> int:
    """CPUs this process may run on (cgroup/affinity aware where the OS tells us)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's marketing name, from /proc/cpuinfo where available."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
        f"CPU      : {cpu_model()} ({cpu_count()} usable cores; torch threads {torch.get_num_threads()}, "
        f"ISA {' '.join(isa) or 'unknown'}; torch sees {torch.backends.cpu.get_cpu_capability()})",
        f"torch    : {torch.__version__} (oneDNN {'on' if torch.backends.mkldnn.is_available() else 'off'}, "
        f"python {platform.python_version()}, {platform.system()} {platform.release()})",
    ]
    if device.type == "cuda":
        lines.append(f"GPU      : {torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})")
    return "\n".join(lines)


# --------------------------------------------------------------------------- proposed changes


class _CatDenseGrads(torch.autograd.Function):
    """``torch.cat((a, b), dim=1)`` whose backward hands each input a dense gradient.

    Plain ``cat`` backward returns channel slices of the incoming gradient. In channels_last those
    views are not dense, and two kernels that receive them have no fast strided path on the CPU:
    ``upsample_nearest2d_backward`` (~19x slower than on a dense copy at the 256x256 level) and,
    behind the attention gate, ``native_batch_norm_backward`` (20-30x slower). One copy each fixes it.
    """

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:  # type: ignore[override]
        ctx.split = a.shape[1]
        return torch.cat((a, b), dim=1)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        fmt = torch.channels_last if grad.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        return (grad[:, : ctx.split].contiguous(memory_format=fmt), grad[:, ctx.split :].contiguous(memory_format=fmt))


def _unet_forward_proposed(self: InpaintingUNet, x: Tensor) -> Tensor:
    """InpaintingUNet.forward with ``torch.cat`` -> ``_CatDenseGrads`` when gradients are on."""
    h, w = x.shape[-2:]
    if h % self.divisor or w % self.divisor:
        raise ValueError(f"input height and width must be divisible by {self.divisor}; got {h}x{w}")
    skips: list[Tensor] = []
    for level, block in enumerate(self.encoder):
        if level:
            x = F.max_pool2d(x, kernel_size=2)
        x = block(x)
        skips.append(x)
    d = skips.pop()
    for step, block in enumerate(self.decoder):
        skip = skips.pop()
        if self.attention:
            g = self.gate_signals[step](d)
            skip = self.gates[step](skip, g)
        up = F.interpolate(d, scale_factor=2, mode="nearest")
        cat = _CatDenseGrads.apply(up, skip) if torch.is_grad_enabled() else torch.cat((up, skip), dim=1)
        d = block(cat)
    return torch.sigmoid(self.head_bn(self.head(d)))


def _fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Fold an eval-mode BatchNorm into the preceding convolution (exact up to rounding)."""
    fused = torch.nn.utils.fusion.fuse_conv_bn_eval(conv.eval(), bn.eval())
    if conv.weight.is_contiguous(memory_format=torch.channels_last):
        fused = fused.to(memory_format=torch.channels_last)
    return fused


def apply_proposed(model: nn.Module, inference: bool) -> nn.Module:
    """Return a copy of ``model`` with the changes proposed for networks.py applied at run time.

    Training and inference: ``_unet_forward_proposed`` (dense gradients out of the decoder's
    concatenation). Inference only (``inference=True``; eval mode): each gate's ``project`` +
    ``bn`` and the network's ``head`` + ``head_bn`` are folded into one convolution each.
    (Measured and left out: ``repeat_interleave`` or a broadcast view instead of
    ``F.interpolate`` for nearest upsampling -- slower or no faster; a Conv2d in place of the
    gate's stride-1 ConvTranspose2d -- same speed.)
    """
    model = copy.deepcopy(model)
    if not isinstance(model, InpaintingUNet):
        return model
    model.forward = types.MethodType(_unet_forward_proposed, model)
    if inference:
        for gate in model.gates:
            gate.project = _fuse_conv_bn(gate.project, gate.bn)
            gate.bn = nn.Identity()
        model.head = _fuse_conv_bn(model.head, model.head_bn)
        model.head_bn = nn.Identity()
    return model


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters from glibc's malloc.h


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


@contextlib.contextmanager
def retained_malloc(enabled: bool) -> Iterator[bool]:
    """Make glibc keep freed memory instead of returning it to the OS, for the block's duration.

    glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh mmap and
    unmaps it on free, so each training step page-faults and zeroes its multi-GB activations
    again (about a third of the CPU time of a bf16 step here). With ``M_MMAP_MAX = 0`` and a high
    ``M_TRIM_THRESHOLD`` the heap keeps the pages; RSS stays near the peak. On exit the defaults
    are put back (except glibc's dynamic threshold, which mallopt turns off for good) and the heap
    is trimmed. The same two lines are what a training entry point would call once.
    """
    libc = _glibc() if enabled else None
    if libc is None:
        yield False
        return
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    try:
        yield True
    finally:
        libc.mallopt(_M_MMAP_MAX, 65536)
        libc.mallopt(_M_TRIM_THRESHOLD, 128 * 1024)
        libc.malloc_trim(0)


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
    """fp16 autocast is timed on CUDA only, the oneDNN bf16-conv mode on the CPU only."""
    if dtype == "fp16":
        return device.type == "cuda"
    if dtype == "fp32-bf16conv":
        return device.type == "cpu" and hasattr(getattr(torch.backends.mkldnn, "conv", None), "fp32_precision")
    return True


@contextlib.contextmanager
def _mkldnn_conv_precision(value: str) -> Iterator[None]:
    conv = torch.backends.mkldnn.conv
    old = conv.fp32_precision
    conv.fp32_precision = value
    try:
        yield
    finally:
        conv.fp32_precision = old


def autocast_for(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    if dtype == "fp32-bf16conv":
        return _mkldnn_conv_precision("bf16")
    if dtype == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if dtype == "fp16":
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def prepare(model: nn.Module, x: Tensor, device: torch.device, dtype: str, layout: str) -> tuple[nn.Module, Tensor]:
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    model = model.to(device, memory_format=fmt)
    x = x.to(device).contiguous(memory_format=fmt)
    if dtype == "bf16-full":
        model, x = model.to(torch.bfloat16), x.to(torch.bfloat16)
    return model, x


def maybe_compile(model: nn.Module, enabled: bool, freeze: bool = False) -> nn.Module:
    """torch.compile (inductor); ``freeze`` turns on inductor freezing (constant weights: oneDNN
    weight prepacking, conv+BN folding, conv+ReLU/add fusion), valid for inference only."""
    if not enabled:
        return model
    if freeze:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
    return torch.compile(model)


def time_training(
    base: nn.Module, args: argparse.Namespace, device: torch.device, size: int, dtype: str, layout: str, net: bool
) -> Timing:
    gen = torch.Generator().manual_seed(1)
    masked, clean = masked_pair(args.train_batch, size, gen)
    model = apply_proposed(base, inference=False) if net else copy.deepcopy(base)
    model, x = prepare(model.train(), masked, device, dtype, layout)
    y = clean.to(device)
    step_model = maybe_compile(model, args.compile)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = build_loss("ssim_l1")
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == "fp16")

    def step() -> None:
        with autocast_for(device, dtype):
            out = step_model(x)
        loss = loss_fn(out.float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    timing = time_call(step, device, args.warmup, args.repeats, args.quiet_wait)
    del model, step_model, optimizer
    return timing


def time_inference(
    base: nn.Module, args: argparse.Namespace, device: torch.device, size: int, dtype: str, layout: str,
    net: bool, batch: int,
) -> Timing:
    gen = torch.Generator().manual_seed(2)
    masked, _ = masked_pair(batch, size, gen)
    model = apply_proposed(base.eval(), inference=True) if net else copy.deepcopy(base).eval()
    model, x = prepare(model, masked, device, dtype, layout)
    run_model = maybe_compile(model, args.compile, freeze=args.freeze)

    def infer() -> None:
        with torch.inference_mode(), autocast_for(device, dtype):
            run_model(x)

    timing = time_call(infer, device, args.warmup, args.repeats, args.quiet_wait)
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
    model.train().to(device)
    for _ in range(steps):
        masked, clean = masked_pair(4, size, gen)
        loss = loss_fn(model(masked.to(device)), clean.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()


@torch.inference_mode()
def quality_rows(base: nn.Module, args: argparse.Namespace, device: torch.device, size: int) -> list[list[str]]:
    """bf16 (and proposed-change) outputs against the fp32 output of the same network."""
    gen = torch.Generator().manual_seed(4)
    masked, clean = masked_pair(args.quality_batch, size, gen)
    masked, clean = masked.to(device), clean.to(device)
    fmt = torch.channels_last if "channels_last" in args.layouts else torch.contiguous_format
    ref_model = copy.deepcopy(base).eval().to(device, memory_format=fmt)
    x = masked.contiguous(memory_format=fmt)
    ref = ref_model(x).float()
    variants: list[tuple[str, Callable[[], Tensor]]] = []
    for dtype in args.dtypes:
        if dtype == "fp32" or not applicable(dtype, device):
            continue
        if dtype == "bf16-full":
            full = copy.deepcopy(ref_model).to(torch.bfloat16)
            variants.append((dtype, lambda m=full: m(x.to(torch.bfloat16)).float()))
        else:
            variants.append((dtype, lambda d=dtype: _autocast_run(ref_model, x, device, d)))
    if args.net_changes:
        prop = apply_proposed(ref_model, inference=True)
        variants.append(("fp32 proposed", lambda m=prop: m(x).float()))
        if "bf16" in args.dtypes:
            variants.append(("bf16 proposed", lambda m=prop: _autocast_run(m, x, device, "bf16")))
    rows = []
    ref_psnr = psnr_db(ref, clean)
    for name, run in variants:
        out = run()
        rows.append([
            name, f"{float((out - ref).abs().max()):.2e}", f"{float((out - ref).abs().mean()):.2e}",
            f"{psnr_db(out, ref):.1f}", f"{ref_psnr:.2f}", f"{psnr_db(out, clean):.2f}",
        ])
    return rows


def _autocast_run(model: nn.Module, x: Tensor, device: torch.device, dtype: str) -> Tensor:
    with autocast_for(device, dtype):
        return model(x).float()


# --------------------------------------------------------------------------- table


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
    sys.stdout.flush()


FLAGS = ("net", "malloc")  # a variant's changes: networks.py proposals, glibc malloc retention
FLAG_ALIASES = {"as-is": (), "proposed": FLAGS, "net": ("net",), "malloc": ("malloc",)}


def variant_grid(args: argparse.Namespace) -> list[tuple[str, str, tuple[str, ...]]]:
    """(dtype, layout, flags) triples: ``--configs`` as given, else dtypes x layouts (x as-is/proposed)."""
    if args.configs:
        return args.configs
    return [(d, lay, flags) for d in args.dtypes for lay in args.layouts
            for flags in (((), FLAGS) if args.proposed else ((),))]


def variant_name(flags: tuple[str, ...]) -> str:
    if not flags:
        return "as-is"
    return "proposed" if set(flags) == set(FLAGS) else "+".join(flags)


def _config(text: str) -> tuple[str, str, tuple[str, ...]]:
    parts = text.split(":")
    layouts = {"cl": "channels_last", "nchw": "contiguous"}
    flags: list[str] = []
    for word in (parts[2].split("+") if len(parts) == 3 else []):
        if word not in FLAG_ALIASES:
            flags = ["?"]
            break
        flags += [f for f in FLAG_ALIASES[word] if f not in flags]
    if len(parts) not in (2, 3) or parts[0] not in DTYPES or layouts.get(parts[1], parts[1]) not in LAYOUTS \
            or "?" in flags:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected DTYPE:LAYOUT[:VARIANT] with VARIANT as-is, proposed, net, malloc or net+malloc; "
            "e.g. fp32:contiguous or bf16:channels_last:proposed")
    return parts[0], layouts.get(parts[1], parts[1]), tuple(f for f in FLAGS if f in flags)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["ra_unet"], choices=["unet", "attention_unet", "ra_unet"])
    p.add_argument("--sizes", nargs="+", type=int, default=[256])
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=DTYPES)
    p.add_argument("--devices", nargs="+", default=["cpu", "cuda"], choices=["cpu", "cuda"])
    p.add_argument("--layouts", nargs="+", default=["channels_last"], choices=LAYOUTS,
                   help="memory format(s); channels_last is what oneDNN and cuDNN want (default)")
    p.add_argument("--configs", nargs="+", type=_config, default=None, metavar="DTYPE:LAYOUT[:VARIANT]",
                   help="explicit variants instead of the dtypes x layouts grid, e.g. fp32:nchw "
                        "bf16:cl:net bf16:cl:proposed (VARIANT: as-is, net = networks.py changes, "
                        "malloc = glibc keeps freed memory, proposed = net+malloc)")
    p.add_argument("--filters", nargs="+", type=int, default=None, help="override filters, e.g. 4 8 16")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first (oneDNN builds kernels on call 1)")
    p.add_argument("--train-batch", type=int, default=8)
    p.add_argument("--infer-batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: usable cores)")
    p.add_argument("--proposed", action="store_true",
                   help="also time each variant with the proposed changes (networks.py + malloc retention)")
    p.add_argument("--compile", action="store_true", help="wrap the model in torch.compile (inductor)")
    p.add_argument("--freeze", action="store_true",
                   help="with --compile: inductor freezing for the inference models (weights as constants)")
    p.add_argument("--no-train", action="store_true", help="skip the training-step timing")
    p.add_argument("--no-infer", action="store_true", help="skip the inference timing")
    p.add_argument("--no-quality", action="store_true", help="skip the bf16-vs-fp32 output comparison")
    p.add_argument("--quality-batch", type=int, default=4)
    p.add_argument("--quality-steps", type=int, default=0,
                   help="fp32 Adam steps on the synthetic task before comparing outputs (0: random init)")
    p.add_argument("--quiet-wait", type=float, default=60.0,
                   help="seconds to wait for other processes to leave the CPUs idle before each timed call")
    p.add_argument("--quick", action="store_true",
                   help="smoke-test subset: first model/size only, 1 repeat, 1 warm-up, batch 2, no waiting")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.configs:  # the quality check follows the variants that are timed
        args.dtypes = list(dict.fromkeys(c[0] for c in args.configs))
        args.layouts = list(dict.fromkeys(c[1] for c in args.configs))
        args.proposed = any(c[2] for c in args.configs)
    args.net_changes = any("net" in flags for _, _, flags in variant_grid(args))
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
    threads = args.threads or cpu_count()
    torch.set_num_threads(threads)
    devices = []
    for name in dict.fromkeys(args.devices):
        if name == "cuda" and not torch.cuda.is_available():
            print("cuda     : not available, skipped")
            continue
        devices.append(torch.device(name))
    if any(d.type == "cuda" for d in devices):
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    if not devices:
        print("no device to benchmark")
        return 1

    infer_cols = [f"infer s/img b{b}" for b in args.infer_batches]
    header = ["device", "model", "size", "params", "dtype", "layout", "variant",
              f"train s/step b{args.train_batch}", *infer_cols, "busy"]
    for device in devices:
        print(describe_machine(device))
        print(f"settings : repeats {args.repeats} (median), warm-up {args.warmup}, compile {args.compile}, "
              f"mkldnn {torch.backends.mkldnn.enabled}")
        print()
        rows: list[list[str]] = []
        quality: list[list[str]] = []
        for model_name in args.models:
            filters = tuple(args.filters) if args.filters else (64, 128, 256, 512, 1024)
            for size in args.sizes:
                torch.manual_seed(args.seed)
                base = build_model(model_name, filters=filters)
                params = f"{count_parameters(base) / 1e6:.2f}M"
                # Variants that change glibc's malloc run last: the setting cannot be fully undone.
                grid = variant_grid(args)
                order = sorted(range(len(grid)), key=lambda i: "malloc" in grid[i][2])
                results: dict[int, list[str]] = {}
                for i in order:
                    dtype, layout, flags = grid[i]
                    if not applicable(dtype, device):
                        continue
                    net = "net" in flags
                    busy = []
                    train = Timing()
                    with retained_malloc("malloc" in flags):
                        if not args.no_train and dtype != "bf16-full":
                            train = time_training(base, args, device, size, dtype, layout, net)
                            busy.append(train.busy)
                        infer = []
                        for batch in args.infer_batches:
                            if args.no_infer:
                                infer.append(Timing())
                                continue
                            infer.append(time_inference(base, args, device, size, dtype, layout, net, batch))
                            busy.append(infer[-1].busy)
                    busy = [b for b in busy if not math.isnan(b)]
                    row = [device.type, model_name, str(size), params, dtype, layout,
                           variant_name(flags), fmt_s(train.median),
                           *[fmt_s(t.median) for t in infer], f"{max(busy):.2f}" if busy else "-"]
                    if args.compile:
                        firsts = [t.first_call for t in (train, *infer) if not math.isnan(t.first_call)]
                        row[6] += f" (1st calls {'/'.join(fmt_s(f) for f in firsts)}s)"
                    results[i] = row
                    print("  ".join(row), flush=True)
                rows.extend(results[i] for i in sorted(results))
                if not args.no_quality:
                    brief_training(base, size, args.quality_steps, device)
                    for q in quality_rows(base, args, device, size):
                        quality.append([device.type, model_name, str(size), *q])
                del base
        print()
        print_table(header, rows)
        if quality:
            print()
            print(f"bf16 vs fp32 outputs of the same network ({'random init' if not args.quality_steps else f'{args.quality_steps} fp32 Adam steps'}, "
                  f"{args.quality_batch} synthetic masked images; PSNR in dB, data range 1):")
            print_table(["device", "model", "size", "variant", "max|d|", "mean|d|", "PSNR vs fp32",
                         "fp32 PSNR vs target", "variant PSNR vs target"], quality)
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
