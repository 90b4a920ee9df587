"""Tests for unmask.models.inference: prepare_for_inference + restore in fp32 and bf16."""

from __future__ import annotations

import pytest
import torch

from unmask.models import build_model
from unmask.models.inference import prepare_for_inference, restore

TINY = (4, 8, 16)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("ra_unet", TINY)


def test_fp32_inference_matches_a_plain_forward() -> None:
    x = torch.rand(2, 3, 16, 16)
    reference = _model().eval()
    with torch.no_grad():
        expected = reference(x)
    model, dtype = prepare_for_inference(_model(), "cpu", "fp32")
    assert dtype == torch.float32 and not model.training
    assert model.head.weight.is_contiguous(memory_format=torch.channels_last)
    out = restore(model, x, dtype)
    assert out.dtype == torch.float32 and out.shape == x.shape
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_bf16_inference_casts_the_weights_and_stays_close_to_fp32() -> None:
    x = torch.rand(2, 3, 16, 16)
    fp32, _ = prepare_for_inference(_model(), "cpu", "fp32")
    expected = restore(fp32, x)
    model, dtype = prepare_for_inference(_model(), torch.device("cpu"), "bf16")
    assert dtype == torch.bfloat16
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    out = restore(model, x, dtype)
    assert out.dtype == torch.float32
    assert float((out - expected).abs().max()) < 2e-2
    # A float32 model with a bf16 dtype runs under autocast instead.
    autocast_out = restore(fp32, x, torch.bfloat16)
    assert float((autocast_out - expected).abs().max()) < 2e-2


def test_bad_precision_is_rejected() -> None:
    with pytest.raises(ValueError, match="precision"):
        prepare_for_inference(_model(), "cpu", "half")


def test_flip_average_is_the_mean_of_the_face_and_its_mirror_image_restored() -> None:
    x = torch.rand(3, 3, 16, 16)
    model, dtype = prepare_for_inference(_model(), "cpu", "fp32")
    plain, mirrored = restore(model, x, dtype), restore(model, x.flip(-1), dtype).flip(-1)
    averaged = restore(model, x, dtype, flip_average=True)
    assert averaged.shape == x.shape
    torch.testing.assert_close(averaged, (plain + mirrored) / 2, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(plain, mirrored)  # an untrained network is not mirror-symmetric
