"""Tests for unmask.models.release: the float16 copy shipped with the repository."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from unmask.models import build_model
from unmask.models.checkpoint import load_model, save_model
from unmask.models.release import main, ship_model


def _saved(tmp_path: Path, trained_on: str | None) -> Path:
    torch.manual_seed(0)
    model = build_model("ra_unet", filters=[4, 8, 16], composite=True, batch_norm=True).eval()
    model.metadata = {"crop_size": 16, **({"trained_on": trained_on} if trained_on else {})}
    path = tmp_path / "model.safetensors"
    save_model(model, path)
    return path


def test_the_shipped_copy_is_float16_half_the_size_and_restores_like_the_original(tmp_path: Path) -> None:
    source = _saved(tmp_path, "celeba")
    target = tmp_path / "models" / "shipped.safetensors"
    metadata = ship_model(source, target)
    tensors = load_file(str(target))
    assert {t.dtype for t in tensors.values() if t.is_floating_point()} == {torch.float16}
    floats = sum(t.numel() * t.element_size() for t in tensors.values() if t.is_floating_point())
    assert floats == sum(t.numel() * 2 for t in load_file(str(source)).values() if t.is_floating_point())
    doc = json.loads(target.with_suffix(".json").read_text())
    assert doc["metadata"]["trained_on"] == "celeba" and doc["metadata"]["crop_size"] == 16
    assert doc["metadata"]["sha256"] == metadata["sha256"] and len(metadata["sha256"]) == 64
    x = torch.rand(2, 3, 16, 16)
    with torch.inference_mode():
        gap = (load_model(source)(x) - load_model(target)(x)).abs().max()
    assert float(gap) <= 2 / 255
    assert load_model(target).mask_head.weight.dtype == torch.float32  # runs in float32 after loading


@pytest.mark.parametrize("trained_on", ["demo", None])
def test_a_model_not_trained_on_real_faces_is_never_shipped(tmp_path: Path, trained_on: str | None) -> None:
    with pytest.raises(ValueError, match="not real CelebA faces"):
        ship_model(_saved(tmp_path, trained_on), tmp_path / "shipped.safetensors")
    assert not (tmp_path / "shipped.safetensors").exists()


def test_the_command_line_says_what_it_wrote(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    main([str(_saved(tmp_path, "celeba")), str(tmp_path / "out.safetensors")])
    assert "float16" in capsys.readouterr().out and (tmp_path / "out.json").is_file()
