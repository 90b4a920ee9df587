"""Tests for unmask.models.checkpoint: safetensors + JSON round trip, clear errors, atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from unmask.models import (
    build_model,
    load_model,
    load_model_metadata,
    load_training_state,
    save_model,
    save_training_state,
)

TINY = (4, 8, 16)


def _trained_tiny(name: str = "ra_unet") -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(name, TINY)
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 3, 16, 16))  # move BatchNorm running stats away from their defaults
    return model.eval()


def test_round_trip_identical_outputs(tmp_path: Path) -> None:
    model = _trained_tiny().to(memory_format=torch.channels_last)  # non-contiguous weights
    path = tmp_path / "models" / "ra_unet.safetensors"
    save_model(model, path, metadata={"epoch": 3, "val_loss": 0.05})
    assert path.is_file() and (tmp_path / "models" / "ra_unet.json").is_file()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]

    loaded = load_model(path)
    assert not loaded.training
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    # Same memory format as the saved model, so the same conv kernels run: bit-identical.
    loaded = loaded.to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))

    doc = load_model_metadata(path)
    assert doc["config"] == model.config
    assert doc["metadata"] == {"epoch": 3, "val_loss": 0.05}
    assert load_model(path).metadata == {"epoch": 3, "val_loss": 0.05}


def test_the_models_own_metadata_is_saved_and_loaded_back(tmp_path: Path) -> None:
    model = _trained_tiny()
    model.metadata = {"crop_size": 64, "epoch": 1}
    path = tmp_path / "m.safetensors"
    save_model(model, path, metadata={"epoch": 2})  # an explicit value wins
    assert load_model_metadata(path)["metadata"] == {"crop_size": 64, "epoch": 2}
    again = tmp_path / "again.safetensors"
    save_model(load_model(path), again)  # a loaded model keeps its metadata when saved again
    assert load_model(again).metadata == {"crop_size": 64, "epoch": 2}


def test_overwrite_and_compiled_wrapper(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_model(build_model("unet", TINY), path)
    model = _trained_tiny("attention_unet")
    save_model(torch.compile(model), path)  # wrapper keys ("_orig_mod.") must not leak
    loaded = load_model(path)
    assert loaded.config["name"] == "attention_unet"
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_missing_files_explain_how_to_train(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="kedro run --pipelines=train"):
        load_model(tmp_path / "nope.safetensors")
    path = tmp_path / "m.safetensors"
    save_model(build_model("unet", TINY), path)
    path.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match="kedro run"):
        load_model(path)


@pytest.mark.parametrize(
    "config_change",
    [{"filters": [4, 8, 32]}, {"name": "ra_unet"}, {"filters": [4, 8]}, {"name": "bogus"}],
)
def test_mismatched_config_and_weights(tmp_path: Path, config_change: dict) -> None:
    path = tmp_path / "m.safetensors"
    save_model(build_model("attention_unet", TINY), path)
    meta = path.with_suffix(".json")
    doc = json.loads(meta.read_text())
    doc["config"].update(config_change)
    meta.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"m\.(json|safetensors)"):
        load_model(path)


def test_corrupt_files(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_model(build_model("unet", TINY), path)
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="cannot read"):
        load_model(path)
    path.with_suffix(".json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_model_metadata(path)


def test_save_requires_config(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="config"):
        save_model(torch.nn.Linear(2, 2), tmp_path / "x.safetensors")
    with pytest.raises(TypeError):
        save_model(build_model("unet", TINY), tmp_path / "y.safetensors", metadata={"bad": object()})
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_training_state_round_trip(tmp_path: Path) -> None:
    model = build_model("unet", TINY)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    model(torch.rand(1, 3, 8, 8)).mean().backward()
    opt.step()
    state = {"epoch": 2, "optimizer": opt.state_dict(), "rng": torch.get_rng_state(), "history": [0.5, 0.4]}
    path = tmp_path / "state" / "train_state.pt"
    save_training_state(path, state)
    assert [p.name for p in path.parent.iterdir()] == ["train_state.pt"]
    loaded = load_training_state(path)
    assert loaded["epoch"] == 2 and loaded["history"] == [0.5, 0.4]
    assert torch.equal(loaded["rng"], state["rng"])
    opt2 = torch.optim.Adam(build_model("unet", TINY).parameters(), lr=1e-4)
    opt2.load_state_dict(loaded["optimizer"])
    exp_avg = opt.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], exp_avg)
    with pytest.raises(FileNotFoundError):
        load_training_state(tmp_path / "missing.pt")


def test_saved_files_get_the_usual_permissions(tmp_path: Path) -> None:
    import os
    import stat

    umask = os.umask(0o022)
    os.umask(umask)
    path = tmp_path / "m.safetensors"
    save_model(build_model("unet", TINY), path)
    save_training_state(tmp_path / "last.pt", {"epoch": 1})
    for file in (path, path.with_suffix(".json"), tmp_path / "last.pt"):
        assert stat.S_IMODE(file.stat().st_mode) == 0o666 & ~umask, file
