"""Device, numeric-precision and memory-layout choices shared by training, evaluation and inference.

Precision ``auto``:

* CUDA: bf16 where the GPU supports it (Ampere and newer), else fp16 (training adds a GradScaler).
* CPU: bf16 where the CPU has AMX or AVX512-BF16 (bf16 matrix units): 3.6x faster training
  steps and about 4x faster inference than fp32 here, with about 0.01 dB PSNR difference at inference
  and no loss found in training (:data:`CPU_BF16_TRAINING`); fp32 elsewhere, where bf16 is
  emulated and slower than fp32.
* Apple MPS: fp32.
"""

from __future__ import annotations

import contextlib
import ctypes
import platform
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")

#: Whether ``precision: auto`` trains in bf16 (autocast, float32 master weights) on CPUs with bf16
#: matrix units. Checked with benchmarks/bench_bf16_training.py (same seed, weights and batches,
#: fp32 vs bf16, validation on held-out real CelebA faces scored in fp32): final-step differences
#: of -0.02 and +0.24 dB PSNR (paper-width RA-UNet, 300 steps) and +0.38 and -0.06 dB (narrow
#: RA-UNet, 2000 steps), SSIM within +-0.005: inside the run-to-run noise, no systematic loss.
CPU_BF16_TRAINING = True


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; an explicit choice must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = str(name).split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise ValueError(f"Unknown device {name!r}: use one of {', '.join(DEVICE_CHOICES)} (or cuda:N).")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} was asked for but CUDA is not available here; use device=auto or cpu.")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={name!r} was asked for but Apple MPS is not available here; use device=auto or cpu.")
    return torch.device(name)


def cpu_has_bf16_units() -> bool:
    """True where the CPU multiplies bf16 in hardware (AMX tiles or AVX512-BF16), so bf16 pays off."""
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        check = getattr(cpu, probe, None)
        if check is not None:
            try:
                if check():
                    return True
            except RuntimeError:
                pass
    return False


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 runs natively (and so faster than fp32) on ``device``."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_bf16_units()
    return False


def resolve_precision(precision: str, device: torch.device, training: bool = False) -> torch.dtype:
    """Map a precision name to a dtype; ``auto`` follows the module docstring's policy."""
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"Unknown precision {precision!r}: use one of {', '.join(PRECISION_CHOICES)}.")
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and bf16_is_fast(device) and (CPU_BF16_TRAINING or not training):
            return torch.bfloat16
        return torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def precision_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bf16"`` (the names used in the parameters)."""
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


def memory_format_for(device: torch.device) -> torch.memory_format:
    """channels_last on CUDA and the CPU, where cuDNN and oneDNN convolutions prefer it; NCHW elsewhere."""
    return torch.channels_last if device.type in ("cuda", "cpu") else torch.contiguous_format


def autocast(device: torch.device, dtype: torch.dtype) -> AbstractContextManager:
    """Mixed-precision context for ``dtype``, or a no-op for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4  # mallopt parameters, glibc's malloc.h
# What glibc's dynamic thresholds settle at in a process that frees big buffers (64-bit glibc:
# mmap threshold at its 32 MiB maximum, trim threshold twice that). Any mallopt call turns the
# dynamic adjustment off for good, so "putting the defaults back" means these values, not the
# 128 KiB start-up ones, which would send every buffer above 128 KiB to mmap from then on.
_GLIBC_MMAP_MAX, _SETTLED_MMAP_THRESHOLD = 65536, 32 * 1024 * 1024
_SETTLED_TRIM_THRESHOLD = 2 * _SETTLED_MMAP_THRESHOLD


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


_kept_for_process = False  # keep_freed_memory() was called: contexts must not undo it


def _retain(libc: ctypes.CDLL) -> None:
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)


def _settle(libc: ctypes.CDLL) -> None:
    libc.mallopt(_M_MMAP_MAX, _GLIBC_MMAP_MAX)
    libc.mallopt(_M_MMAP_THRESHOLD, _SETTLED_MMAP_THRESHOLD)
    libc.mallopt(_M_TRIM_THRESHOLD, _SETTLED_TRIM_THRESHOLD)
    libc.malloc_trim(0)


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for the rest of the process (see :func:`retain_freed_memory`).

    For inference processes (evaluation, ``unmask predict``): 1.35x faster batch-8 inference of the
    paper's RA-UNet at 256x256 on this CPU; resident memory stays at the peak of one batch.
    Returns whether it could (glibc only).
    """
    global _kept_for_process
    libc = _glibc()
    if libc is None:
        return False
    _retain(libc)
    _kept_for_process = True
    return True


def release_freed_memory() -> None:
    """Undo :func:`keep_freed_memory` (glibc's settled thresholds back, free heap memory returned)."""
    global _kept_for_process
    libc = _glibc() if _kept_for_process else None
    _kept_for_process = False
    if libc is not None:
        _settle(libc)


@contextlib.contextmanager
def retain_freed_memory(enabled: bool = True) -> Iterator[bool]:
    """Make glibc keep freed memory in the heap for the block's duration; yields whether it could.

    glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh ``mmap``
    and unmaps it on free, so every CPU training step page-faults and zeroes its multi-GB
    activations again (a quarter of a bf16 step here). With ``M_MMAP_MAX = 0`` and a high
    ``M_TRIM_THRESHOLD`` the heap keeps those pages: resident memory stays near the peak of one
    step instead of going up and down. On exit mmap use comes back with the thresholds glibc's own
    dynamic adjustment settles at (any ``mallopt`` call turns that adjustment off for the process)
    and the heap is trimmed, unless :func:`keep_freed_memory` made the setting process-wide. A
    no-op off glibc (macOS, Windows, musl).
    """
    libc = _glibc() if enabled else None
    if libc is None:
        yield False
        return
    _retain(libc)
    try:
        yield True
    finally:
        if not _kept_for_process:
            _settle(libc)


def cpu_name() -> str:
    """The CPU's marketing name, from /proc/cpuinfo where available."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """A readable name for ``device``: the GPU's or the CPU's model, else the device type."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return cpu_name()
    return device.type
