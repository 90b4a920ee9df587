import functools
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from tests.conftest import base_params
from unmask.models import build_loss, build_model, distributed, training
from unmask.models.checkpoint import load_training_state, save_training_state
from unmask.models.data import PairedFaceDataset
from unmask.pipelines.train.nodes import plot_training_curves, train_model

# conf/base's train group, small and fast; no checkpoints unless a test asks for them
PARAMS = base_params(
    "train", model="ra_unet", filters=[4, 8, 16], loss="ssim_l1", loss_weight=1.0, learning_rate=1e-2,
    batch_size=8, epochs=3, early_stopping_patience=5, device="cpu", precision="fp32",
    num_workers=0, seed=0, sample_count=2, checkpoint_dir=None,
)
# Columns that measure the machine rather than the training.
TIMING_COLUMNS = ["train_images_per_s", "epoch_seconds"]


MASKS = base_params("masks", seed=0, styles=["surgical", "n95", "kn95", "cloth", "bandana"])


SOURCE = {"dataset": "demo"}


def _train(p: dict, params: dict, masks: dict = MASKS):
    return train_model(p["face_crops"], p["masked_faces"], p["mask_maps"], p["mask_metadata"], p["face_landmarks"],
                       p["data_split"], SOURCE, p.get("real_mask_cutouts", {}), params, masks)


def test_training_lowers_the_loss_and_returns_the_best_model(tiny_partitions):
    p = tiny_partitions
    model, history = _train(p, PARAMS)
    assert list(history["epoch"]) == [1, 2, 3]
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert all(math.isfinite(v) for v in history["val_psnr"])
    assert {"learning_rate", "train_images_per_s", "val_ssim"} <= set(history.columns)
    assert model.config["filters"] == [4, 8, 16] and not model.training
    # what `unmask predict` aligns photos to, and whether the model may be used on photos
    assert model.metadata == {"crop_size": 16, "trained_on": "demo"}
    with torch.no_grad():
        out = model(torch.rand(1, 3, 16, 16))
    assert out.shape == (1, 3, 16, 16) and float(out.min()) >= 0 and float(out.max()) <= 1


def test_bf16_training_follows_fp32(tiny_partitions):
    p = tiny_partitions
    # At the suite's learning rate (1e-2) this 4-8-16 network's path is chaotic enough that any change
    # of kernel (fused Adam moved it 0.5 dB); at 3e-3 bf16 stays within 0.1 dB of fp32.
    params = {**PARAMS, "learning_rate": 3e-3}
    _, bf16 = _train(p, {**params, "precision": "bf16"})
    _, fp32 = _train(p, params)
    assert bf16["train_loss"].iloc[-1] < bf16["train_loss"].iloc[0]
    assert list(bf16["train_loss"]) == pytest.approx(list(fp32["train_loss"]), rel=0.02)
    assert list(bf16["val_psnr"]) == pytest.approx(list(fp32["val_psnr"]), abs=0.25)


def test_the_returned_weights_are_those_of_the_best_validation_epoch(tiny_partitions):
    p = tiny_partitions
    # A large learning rate makes later epochs overshoot, so the best epoch is not always the last.
    params = {**PARAMS, "epochs": 4, "learning_rate": 0.05}
    model, history = _train(p, params)
    val_ids = sorted(p["data_split"].query("split == 'val'")["image_id"])
    val = PairedFaceDataset(val_ids, p["masked_faces"], p["face_crops"])
    masked = torch.stack([val[i][0] for i in range(len(val))])
    clean = torch.stack([val[i][1] for i in range(len(val))])
    with torch.no_grad():
        loss = float(build_loss("ssim_l1", 1.0)(model(masked), clean))
    assert loss == pytest.approx(history["val_loss"].min(), rel=1e-4)


def test_training_is_reproducible_for_a_seed(tiny_partitions):
    p = tiny_partitions
    params = {**PARAMS, "epochs": 1}
    first, _ = _train(p, params)
    second, _ = _train(p, params)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


def test_early_stopping_stops_when_validation_does_not_improve(tiny_partitions):
    p = tiny_partitions
    # A zero learning rate can never improve on the first epoch's validation loss.
    params = {**PARAMS, "epochs": 10, "early_stopping_patience": 2, "learning_rate": 1e-12}
    _, history = _train(p, params)
    assert len(history) == 3  # the first epoch, then two without improvement


@pytest.mark.parametrize(
    ("scheduler", "expected"),
    # cosine over 4 epochs: 0.01 * (1 + cos(pi * t / 4)) / 2 for t = 0..3
    [("cosine", [0.01, 0.0085355, 0.005, 0.0014645]), ("none", [0.01] * 4)],
)
def test_learning_rate_schedule_is_followed_and_logged(tiny_partitions, scheduler, expected):
    p = tiny_partitions
    params = {**PARAMS, "epochs": 4, "scheduler": scheduler, "learning_rate": 0.01}
    _, history = _train(p, params)
    assert list(history["learning_rate"]) == pytest.approx(expected, rel=1e-4)


def test_plateau_scheduler_lowers_the_rate_when_validation_stalls(tiny_partitions):
    p = tiny_partitions
    params = {**PARAMS, "epochs": 4, "learning_rate": 1e-6, "scheduler": "plateau", "plateau_patience": 1,
              "plateau_factor": 0.5, "early_stopping_patience": 10}
    _, history = _train(p, params)
    rates = list(history["learning_rate"])
    assert rates[0] == pytest.approx(1e-6) and rates[-1] == pytest.approx(5e-7)


@pytest.mark.parametrize(
    ("override", "message"),
    [({"epochs": 0}, "train.epochs=0"), ({"batch_size": "8"}, "train.batch_size='8'"),
     ({"learning_rate": -1}, "train.learning_rate=-1"), ({"model": "resnet"}, "train.model='resnet'"),
     ({"loss": "hinge"}, "train.loss='hinge'"), ({"scheduler": "step"}, "train.scheduler='step'"),
     ({"precision": "int8"}, "train.precision='int8'"), ({"devices": 0}, "train.devices=0"),
     ({"resume": "yes"}, "train.resume='yes'"), ({"lerning_rate": 1e-3}, "unknown parameter train.lerning_rate"),
     ({"filters": [4, 0]}, "train.filters.1=0"),
     ({"resume": True}, "train.resume=True: Value error, train.checkpoint_dir"),
     ({"plateau_factor": 1.5}, "train.plateau_factor=1.5"), ({"batch_norm": "yes"}, "train.batch_norm='yes'"),
     ({"validate_every": 0}, "train.validate_every=0"),
     ({"validate_every": 2, "scheduler": "plateau"},
      ("train.scheduler='plateau': Value error, plateau steps on every epoch's validation loss; it needs "
       "train.validate_every: 1"))],
)
def test_bad_parameters_are_rejected_before_training(tiny_partitions, override, message):
    p = tiny_partitions
    with pytest.raises(ValueError, match=re.escape(message)):
        _train(p, {**PARAMS, **override})


def test_missing_images_for_split_ids_say_how_to_fix(tiny_partitions):
    p = tiny_partitions
    crops = dict(p["face_crops"])
    crops.pop("000020")
    with pytest.raises(KeyError, match="--pipelines=faces,masks,split"):
        _train({**p, "face_crops": crops}, PARAMS)


def test_training_curves_figure_has_three_panels():
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [1, 0.5], "val_loss": [1, 0.6],
                            "val_psnr": [10, 12], "val_ssim": [0.3, 0.4]})
    assert len(plot_training_curves(history).axes) == 3


# --------------------------------------------------------------------------- checkpoints and resume


def _interrupting_loss(calls_before_interrupt: int):
    """build_loss replacement whose loss raises KeyboardInterrupt on a given call, like Ctrl-C mid-epoch."""
    calls = {"n": 0}

    def build(name, weight):
        loss = build_loss(name, weight)

        def interrupting(pred, target):
            calls["n"] += 1
            if calls["n"] > calls_before_interrupt:
                raise KeyboardInterrupt
            return loss(pred, target)

        return interrupting

    return build


def test_an_interrupted_run_resumes_to_the_same_weights(tiny_partitions, tmp_path, monkeypatch):
    p = tiny_partitions
    # Cosine schedule and flips on, so the scheduler state and the epoch's order and flips must all
    # come back right for the weights to match.
    params = {**PARAMS, "epochs": 4, "scheduler": "cosine", "flip": True, "learning_rate": 5e-3}
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    reference, reference_history = _train(p, {**params, "checkpoint_dir": str(full_dir)})

    # 24 train images at batch 8 = 3 loss calls per epoch, plus 1 for validation: stop in epoch 3.
    monkeypatch.setattr(training, "build_loss", _interrupting_loss(2 * 4 + 2))
    with pytest.raises(KeyboardInterrupt):
        _train(p, {**params, "checkpoint_dir": str(cut_dir)})
    monkeypatch.undo()
    assert load_training_state(cut_dir / "last.pt")["epoch"] == 2
    assert not [f for f in cut_dir.iterdir() if f.name != "last.pt"]  # no temporary files left behind

    resumed, resumed_history = _train(p, {**params, "checkpoint_dir": str(cut_dir), "resume": True})
    for key, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    pd.testing.assert_frame_equal(resumed_history.drop(columns=TIMING_COLUMNS),
                                  reference_history.drop(columns=TIMING_COLUMNS))
    full, cut = load_training_state(full_dir / "last.pt"), load_training_state(cut_dir / "last.pt")
    assert cut["epoch"] == full["epoch"] == 4
    for key, value in full["model"].items():
        assert torch.equal(cut["model"][key], value), key
    assert cut["scheduler"] == full["scheduler"]
    for index, state in full["optimizer"]["state"].items():
        assert torch.equal(cut["optimizer"]["state"][index]["exp_avg_sq"], state["exp_avg_sq"])


def test_resume_refuses_a_checkpoint_of_other_settings_and_continues_a_finished_run(tiny_partitions, tmp_path):
    p = tiny_partitions
    params = {**PARAMS, "epochs": 1, "checkpoint_dir": str(tmp_path)}
    first, _ = _train(p, params)
    with pytest.raises(ValueError, match=r"filters: checkpoint \[4, 8, 16\], now \[4, 8, 32\]"):
        _train(p, {**params, "filters": [4, 8, 32], "resume": True})
    # Asking for more epochs continues the finished run from its checkpoint.
    _, history = _train(p, {**params, "epochs": 2, "resume": True})
    assert list(history["epoch"]) == [1, 2]
    assert load_training_state(tmp_path / "last.pt")["epoch"] == 2


def test_a_checkpoint_from_before_the_mask_head_resumes_as_a_plain_network(tiny_partitions, tmp_path, monkeypatch):
    p = tiny_partitions
    params = {**PARAMS, "epochs": 1, "checkpoint_dir": str(tmp_path)}
    _train(p, params)
    state = load_training_state(tmp_path / "last.pt")
    for key in ("composite", "mask_loss_weight", "batch_norm"):  # what older checkpoints lack
        del state["fingerprint"][key]
    for group in state["optimizer"]["param_groups"]:  # written before fused Adam
        group["fused"] = None
    save_training_state(tmp_path / "last.pt", state)
    with pytest.raises(ValueError, match="composite: checkpoint False, now True"):
        _train(p, {**params, "epochs": 2, "resume": True, "composite": True})
    with pytest.raises(ValueError, match="batch_norm: checkpoint False, now True"):
        _train(p, {**params, "epochs": 2, "resume": True, "batch_norm": True})
    kernels = []
    step = training.training_step

    def recording_step(model, masked, clean, loss_fn, optimizer, *args, **kwargs):
        kernels.append(optimizer.param_groups[0]["fused"])
        return step(model, masked, clean, loss_fn, optimizer, *args, **kwargs)

    monkeypatch.setattr(training, "training_step", recording_step)
    _, history = _train(p, {**params, "epochs": 2, "resume": True})
    assert list(history["epoch"]) == [1, 2]
    assert kernels and all(kernels)  # the resumed run keeps this device's fused Adam


def test_build_optimizer_fuses_adam_on_cpu_and_matches_the_default_kernel():
    torch.manual_seed(0)
    # (not the UNet: the bias of a conv right before batch norm gets a zero-sum gradient whose
    # rounding noise Adam blows up to full steps, so there the two kernels disagree by design)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 1))
    reference = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 1))
    reference.load_state_dict(model.state_dict())
    fused = training.build_optimizer(model, 1e-2, torch.device("cpu"))
    plain = torch.optim.Adam(reference.parameters(), lr=1e-2)
    assert fused.param_groups[0]["fused"] is True and plain.param_groups[0]["fused"] is None
    x = torch.rand(2, 3, 8, 8)
    for _ in range(3):
        for net, optimizer in ((model, fused), (reference, plain)):
            optimizer.zero_grad()
            net(x).mean().backward()
            optimizer.step()
    for (name, a), b in zip(model.named_parameters(), reference.parameters()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), name


def test_batch_norm_network_trains_and_is_saved_with_its_config(tiny_partitions):
    p = tiny_partitions
    model, history = _train(p, {**PARAMS, "batch_norm": True, "composite": True, "epochs": 2})
    assert model.config["batch_norm"] is True and not model.training
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert all(math.isfinite(v) for v in history["val_psnr"])


# --------------------------------------------------------------------------- DistributedDataParallel


def _recording_load(array: np.ndarray, image_id: str, log_dir: str) -> Image.Image:
    """An image loader that notes which DDP rank asked for which image (runs in the spawned workers)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        with open(Path(log_dir) / f"rank{dist.get_rank()}.txt", "a") as log:
            log.write(image_id + "\n")
    return Image.fromarray(array)


def test_ddp_on_two_cpu_processes_splits_the_data_and_returns_rank_0s_weights(tiny_partitions, tmp_path,
                                                                                monkeypatch):
    p = tiny_partitions
    log_dir = tmp_path / "loads"
    log_dir.mkdir()
    # Spawned workers unpickle their data, so the loaders must be importable functions, not lambdas.
    crops = {i: functools.partial(_recording_load, np.array(load()), i, str(log_dir))
             for i, load in p["face_crops"].items()}
    masked = {i: functools.partial(_recording_load, np.array(load()), i, str(log_dir))
              for i, load in p["masked_faces"].items()}
    collected = {}

    def spy(scratch, world):
        collected["ranks"] = original(scratch, world)
        return collected["ranks"]

    original = distributed.collect_rank_results
    monkeypatch.setattr(distributed, "collect_rank_results", spy)
    params = {**PARAMS, "epochs": 1, "devices": 2, "checkpoint_dir": str(tmp_path / "ckpt")}
    model, history = _train({**p, "face_crops": crops, "masked_faces": masked}, params)

    train_ids = set(p["data_split"].query("split == 'train'")["image_id"])
    seen = {r: set((log_dir / f"rank{r}.txt").read_text().split()) & train_ids for r in (0, 1)}
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    assert seen[0] | seen[1] == train_ids
    assert len(history) == 1 and math.isfinite(history["val_loss"].iloc[0])

    rank0, rank1 = collected["ranks"]
    assert set(rank0["first_epoch_ids"]) == seen[0] and set(rank1["first_epoch_ids"]) == seen[1]
    returned = model.state_dict()
    for key, value in rank0["best_state"].items():
        assert torch.equal(returned[key], value), key
    # Parameters are kept in sync by DDP, BatchNorm running statistics are each rank's own: the
    # returned ones must be rank 0's (the only place where the ranks' weights can differ).
    buffers = [k for k in returned if "running_mean" in k]
    assert any(not torch.equal(rank0["final_state"][k], rank1["final_state"][k]) for k in buffers)
    for key in buffers:
        assert torch.equal(returned[key], rank0["final_state"][key]), key
    torch.manual_seed(PARAMS["seed"])  # the initial weights the run started from
    untrained = build_model("ra_unet", (4, 8, 16)).state_dict()
    assert not torch.equal(returned["head.weight"], untrained["head.weight"])
    checkpoint = load_training_state(tmp_path / "ckpt" / "last.pt")
    for key, value in checkpoint["model"].items():
        assert torch.equal(value, rank0["final_state"][key]), key


def test_composite_network_with_a_mask_loss_trains_and_keeps_unmasked_pixels(tiny_partitions):
    p = tiny_partitions
    params = {**PARAMS, "composite": True, "mask_loss_weight": 1.0, "epochs": 15, "loss": "ssim_mae",
              "early_stopping_patience": 15}
    model, history = _train(p, params)
    assert model.config["composite"] is True
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    masked = torch.stack([torch.from_numpy(np.array(p["masked_faces"][i]())).permute(2, 0, 1).float() / 255
                          for i in ("000001", "000002")])
    with torch.no_grad():
        out, logits = model(masked, with_mask=True)
    truth = torch.from_numpy(np.array(p["mask_maps"]["000001"]()) > 0)
    predicted = torch.sigmoid(logits[0, 0]) > 0.5
    assert (predicted == truth).float().mean() > 0.9  # the mask head learned where the mask is
    outside = ~truth
    assert (out[0][:, outside] - masked[0][:, outside]).abs().mean() < 0.05


def _data_given_to_fit(partitions: dict, params: dict, monkeypatch):
    """The ``TrainingData`` the train node hands to ``fit`` (stopped there: nothing is trained)."""
    seen = {}

    def spy(settings, data, mlflow_run=None):
        seen["data"] = data
        raise RuntimeError("stop")

    monkeypatch.setattr("unmask.pipelines.train.nodes.fit", spy)
    with pytest.raises(RuntimeError, match="stop"):
        _train(partitions, params)
    return seen["data"]


def test_holdout_styles_leave_those_masks_out_of_training(tiny_partitions, monkeypatch):
    p = tiny_partitions
    data = _data_given_to_fit(p, {**PARAMS, "holdout_styles": ["cloth"]}, monkeypatch)
    cloth = set(p["mask_metadata"].query("style == 'cloth'")["image_id"])
    assert data.train_ids and data.val_ids and not (set(data.train_ids) | set(data.val_ids)) & cloth
    assert data.mask_maps is None  # no mask loss: the true masks are not even read
    with pytest.raises(ValueError, match="not a mask style"):
        _train(p, {**PARAMS, "holdout_styles": ["scuba"]})
    with pytest.raises(ValueError, match=re.escape("train.mask_loss_weight=1.0: Value error, a mask loss needs "
                                                   "train.composite: true")):
        _train(p, {**PARAMS, "mask_loss_weight": 1.0})


def test_fresh_masks_draw_every_style_but_the_held_out_ones_on_every_training_face(tiny_partitions, monkeypatch):
    p = tiny_partitions
    data = _data_given_to_fit(p, {**PARAMS, "fresh_masks": True, "holdout_styles": ["cloth"]}, monkeypatch)
    train_ids = sorted(p["data_split"].query("split == 'train'")["image_id"])
    cloth = set(p["mask_metadata"].query("style == 'cloth'")["image_id"])
    assert data.train_ids == train_ids  # no face is lost to the held-out style: it is never drawn
    assert data.val_ids and not set(data.val_ids) & cloth  # validation keeps the stored masks
    assert data.fresh_masks.styles == ("surgical", "n95", "kn95", "bandana")
    assert set(data.fresh_masks.landmarks) == set(train_ids)
    with pytest.raises(ValueError, match="train.fresh_masks='yes': Input should be a valid boolean"):
        _train(p, {**PARAMS, "fresh_masks": "yes"})
    with pytest.raises(ValueError, match="nothing is left to draw"):
        _train(p, {**PARAMS, "fresh_masks": True, "holdout_styles": ["cloth"]}, {**MASKS, "styles": ["cloth"]})
    with pytest.raises(ValueError, match="masks.styles.0='scuba'"):
        _train(p, {**PARAMS, "fresh_masks": True}, {**MASKS, "styles": ["scuba"]})


def test_fresh_masks_train_a_composite_network(tiny_partitions):
    p = tiny_partitions
    params = {**PARAMS, "fresh_masks": True, "composite": True, "mask_loss_weight": 1.0, "epochs": 2}
    model, history = _train(p, params)
    assert list(history["epoch"]) == [1, 2] and history["val_loss"].notna().all()
    assert model.config["composite"] is True


def test_clean_faces_new_materials_and_degradations_train_a_composite_network(tiny_partitions, monkeypatch):
    p = tiny_partitions
    variety = {"clean_fraction": 0.3, "material_fraction": 0.5, "degrade_fraction": 0.4}
    params = {**PARAMS, "fresh_masks": True, "composite": True, "mask_loss_weight": 1.0, "epochs": 2, **variety}
    model, history = _train(p, params)
    assert list(history["epoch"]) == [1, 2] and history["train_loss"].notna().all()
    fresh = _data_given_to_fit(p, params, monkeypatch).fresh_masks
    assert (fresh.clean_fraction, fresh.material_fraction, fresh.degrade_fraction) == (0.3, 0.5, 0.4)
    assert "clean=0.3" in fresh.digest_text()  # a checkpoint never resumes under other variety
    with pytest.raises(ValueError, match=re.escape("train.clean_fraction=0.2: Value error, needs train.fresh_masks")):
        _train(p, {**PARAMS, "clean_fraction": 0.2})
    with pytest.raises(ValueError, match="train.material_fraction=2: Input should be less than or equal to 1"):
        _train(p, {**PARAMS, "fresh_masks": True, "material_fraction": 2})


def test_fresh_masks_need_landmarks_for_every_training_face(tiny_partitions):
    p = tiny_partitions
    landmarks = p["face_landmarks"].query("image_id != '000030'")  # a training face
    with pytest.raises(KeyError, match="--pipelines=faces"):
        _train({**p, "face_landmarks": landmarks}, {**PARAMS, "fresh_masks": True})


def test_validate_every_skips_validation_between_and_always_validates_the_last_epoch(tiny_partitions, monkeypatch,
                                                                                    tmp_path):
    p = tiny_partitions
    validations = []
    validate = training._validate

    def counting_validate(*args, **kwargs):
        validations.append(1)
        return validate(*args, **kwargs)

    monkeypatch.setattr(training, "_validate", counting_validate)
    model, history = _train(p, {**PARAMS, "epochs": 5, "validate_every": 2, "checkpoint_dir": str(tmp_path)})
    assert len(validations) == 3  # epochs 2, 4 and 5
    validated = history.dropna(subset=["val_loss"])
    assert list(validated["epoch"]) == [2, 4, 5]
    assert history["train_loss"].notna().all()
    figure = plot_training_curves(history)  # the validation curve joins the validated epochs
    val_line = next(line for line in figure.axes[0].lines if line.get_label() == "val_loss")
    assert list(val_line.get_xdata()) == [2, 4, 5]
    # the returned weights are those of the validated epoch with the lowest validation loss
    state = load_training_state(tmp_path / "last.pt")
    assert state["early_stopping"]["best_epoch"] == int(validated.loc[validated["val_loss"].idxmin(), "epoch"])
    for key, value in model.state_dict().items():
        assert torch.equal(state["best_model"][key], value), key


def test_init_weights_starts_a_run_from_a_saved_model(tiny_partitions, tmp_path):
    from unmask.models.checkpoint import save_model

    p = tiny_partitions
    start, _ = _train(p, {**PARAMS, "epochs": 2})
    path = tmp_path / "start.safetensors"
    save_model(start, path)
    # at a vanishing learning rate, a fine-tuned model is still the one it started from
    tuned, _ = _train(p, {**PARAMS, "epochs": 1, "learning_rate": 1e-12, "init_weights": str(path)})
    for name, value in start.state_dict().items():
        if value.is_floating_point() and "running" not in name:
            assert torch.allclose(tuned.state_dict()[name], value, atol=1e-6), name
    scratch, _ = _train(p, {**PARAMS, "epochs": 1, "learning_rate": 1e-12})  # the same run without init_weights
    first = next(k for k, v in start.state_dict().items() if v.dim() == 4)
    assert not torch.allclose(scratch.state_dict()[first], start.state_dict()[first], atol=1e-3)
    with pytest.raises(ValueError, match="same architecture"):
        _train(p, {**PARAMS, "filters": [4, 8, 8], "epochs": 1, "init_weights": str(path)})
    with pytest.raises(ValueError, match="train.init_weights='.*missing.safetensors': Value error, no model at"):
        _train(p, {**PARAMS, "init_weights": str(tmp_path / "missing.safetensors")})


def test_real_cutouts_from_the_catalog_are_mixed_into_training(tiny_partitions, monkeypatch):
    from PIL import Image as PILImage

    p = tiny_partitions
    rgba = np.zeros((24, 24, 4), np.uint8)
    rgba[14:23, 5:19] = (30, 60, 160, 255)
    cutouts = {"a": lambda: PILImage.fromarray(rgba, "RGBA"), "b": lambda: PILImage.fromarray(rgba[:, ::-1], "RGBA")}
    params = {**PARAMS, "fresh_masks": True, "composite": True, "mask_loss_weight": 1.0, "epochs": 1,
              "cutout_fraction": 0.5}
    model, history = _train({**p, "real_mask_cutouts": cutouts}, params)
    assert history["train_loss"].notna().all()
    fresh = _data_given_to_fit({**p, "real_mask_cutouts": cutouts}, params, monkeypatch).fresh_masks
    assert len(fresh.cutouts) == 2 and fresh.cutouts[0].shape == (24, 24, 4)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="needs mask cut-outs"):
        _train(p, params)  # an empty real_mask_cutouts folder
