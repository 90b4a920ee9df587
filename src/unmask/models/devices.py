"""Device and numeric-precision choices shared by training, evaluation and inference."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")


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


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """Map a precision name to the autocast dtype; ``auto`` is bf16 on GPUs that support it, else fp32."""
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"Unknown precision {precision!r}: use one of {', '.join(PRECISION_CHOICES)}.")
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device, dtype: torch.dtype) -> ContextManager:
    """Mixed-precision context for ``dtype``, or a no-op for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
