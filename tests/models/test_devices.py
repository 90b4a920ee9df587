"""Tests for unmask.models.devices: precision policy, memory layout, malloc retention."""

from __future__ import annotations

import pytest
import torch

from unmask.models import devices


@pytest.mark.parametrize("fast", [True, False])
def test_auto_precision_on_the_cpu_follows_the_hardware(monkeypatch: pytest.MonkeyPatch, fast: bool) -> None:
    monkeypatch.setattr(devices, "cpu_has_bf16_units", lambda: fast)
    cpu = torch.device("cpu")
    assert devices.resolve_precision("auto", cpu) == (torch.bfloat16 if fast else torch.float32)
    expected_training = torch.bfloat16 if fast and devices.CPU_BF16_TRAINING else torch.float32
    assert devices.resolve_precision("auto", cpu, training=True) == expected_training
    assert devices.resolve_precision("auto", torch.device("mps")) == torch.float32


def test_explicit_precisions_and_errors() -> None:
    cpu = torch.device("cpu")
    assert devices.resolve_precision("bf16", cpu, training=True) == torch.bfloat16
    assert devices.resolve_precision("fp32", cpu) == torch.float32
    assert devices.resolve_precision("fp16", cpu) == torch.float16
    with pytest.raises(ValueError, match="fp32, bf16, fp16"):
        devices.resolve_precision("float8", cpu)
    assert devices.precision_name(torch.bfloat16) == "bf16"


def test_channels_last_on_cpu_and_cuda_only() -> None:
    assert devices.memory_format_for(torch.device("cpu")) == torch.channels_last
    assert devices.memory_format_for(torch.device("cuda")) == torch.channels_last
    assert devices.memory_format_for(torch.device("mps")) == torch.contiguous_format


def test_unknown_or_missing_devices_explain_the_choices() -> None:
    with pytest.raises(ValueError, match="auto, cpu, cuda, mps"):
        devices.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            devices.resolve_device("cuda")


def test_retain_freed_memory_is_a_reentrant_context() -> None:
    with devices.retain_freed_memory() as active:
        assert isinstance(active, bool)
        big = torch.empty(64 * 1024 * 1024, dtype=torch.uint8)  # above glibc's mmap threshold
        del big
    with devices.retain_freed_memory(enabled=False) as active:
        assert active is False
