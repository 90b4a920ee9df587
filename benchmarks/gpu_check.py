"""The GPU path, proven: one command that runs every CUDA code path of the project and measures it.

``make gpu-check`` (= ``python benchmarks/gpu_check.py``). On a machine with CUDA it runs, in at most
8 minutes on one GPU (each step has a wall-time budget, and a step is not started when the time
left cannot hold its budget), and checks, failing with a non-zero exit and the failing step named
on any error or non-finite number:

* ``faces``: a few hundred real CelebA faces from ``../shared/data/celeba_dev_9k_89x109.zip``
  (read with ``unmask.imaging.celeba``, aligned, masked by the project's renderer) or, without
  the zip, the embedded procedural demo faces, at 256x256;
* ``train_bf16`` / ``train_fp16_scaler``: the paper's RA-UNet (filters 64..1024) trained for a
  few dozen steps with the project's own ``training_step``, ``build_optimizer`` (fused Adam),
  autocast, ``GradScaler`` (fp16) and channels-last layout; the loss must fall;
* ``inference``: ``prepare_for_inference`` + ``restore`` at batch 1 and 8, bf16 and fp32;
* ``throughput``: training images/s at batch 8 and at the largest batch that fits (doubling until
  CUDA runs out of memory), peak GPU memory;
* ``train_node_resume``: the ``train`` node end to end (2 epochs, checkpoints), interrupted in
  epoch 2 and resumed with ``train.resume: true``; its weights against an uninterrupted run's,
  against the run-to-run noise of a second uninterrupted run, and which ops of the training step
  have no deterministic CUDA kernel;
* ``ddp``: ``train.devices: N`` over every visible GPU (NCCL), when there are two or more;
* ``evaluate``: ``kedro run --pipelines=evaluate`` in a temporary copy of the project (tiny demo
  data, the model of ``train_node_resume``), on CUDA;
* ``predict``: ``unmask predict --device cuda --checkpoint ...`` on three photos (matplotlib's
  grace_hopper.jpg sample);
* ``train_compile``: the same training steps through ``torch.compile`` (``--no-compile`` skips it);

then prints the figures, one per line (images/s, s/image, peak memory, the time of one epoch of
full CelebA and of the paper's 40 epochs), and writes them with every step's result to ``--out``
(JSON, rewritten after every step, so a killed run still leaves what it measured).

Without CUDA (or with ``--cpu-tiny``) the same steps run in a tiny CPU mode (32x32 faces, filters
4..16, a few steps) that the test suite calls, so the script cannot rot between GPU sessions;
what needs CUDA says ``skipped: no CUDA``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

# Kedro's telemetry would try the network; nothing here may.
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # one line per step here, not the trainer's progress bars

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
try:
    import unmask  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO / "src"))

from unmask.models import build_loss, build_model, count_parameters
from unmask.models.checkpoint import load_training_state, save_model
from unmask.models.devices import memory_format_for, precision_name, resolve_precision
from unmask.models.inference import prepare_for_inference, restore
from unmask.models.training import build_optimizer, training_step

SHARED_ZIP = REPO.parent / "shared" / "data" / "celeba_dev_9k_89x109.zip"
DEFAULT_OUT = Path(tempfile.gettempdir()) / "unmask_gpu_check.json"
CELEBA_TRAIN_IMAGES = 162_770  # CelebA's official training partition
PAPER_EPOCHS = 40
PAPER_FILTERS = (64, 128, 256, 512, 1024)
NO_CUDA = "skipped: no CUDA"


@dataclasses.dataclass(frozen=True)
class Mode:
    """Sizes and budgets of one mode: ``cuda`` (the paper's network) or ``cpu-tiny`` (the test suite's)."""

    name: str
    size: int
    filters: tuple[int, ...]
    learning_rate: float
    steps: int  # training steps per precision (the loss must fall over them)
    n_train: int
    n_val: int
    max_batch: int  # the throughput search doubles the batch up to this
    infer_repeats: int
    num_workers: int
    demo_images: int  # of the temporary Kedro project (evaluate, predict)
    test_count: int
    time_limit: float
    budgets: dict[str, float]  # seconds per step


# Budgets on one H200 (the paper's network at 256x256, batch 8, runs some 30-60 steps/s there):
# they add up to 455 s (+ 10-20 s of start-up), and the steps with the largest unknowns (DDP, which
# is skipped on one GPU, and torch.compile) come last. A step starts only when its budget fits in
# what is left of the time limit.
CUDA_MODE = Mode(
    name="cuda", size=256, filters=PAPER_FILTERS, learning_rate=1e-4, steps=48, n_train=320, n_val=64,
    max_batch=1024, infer_repeats=20, num_workers=4, demo_images=48, test_count=16, time_limit=480.0,
    budgets={"faces": 20, "train_bf16": 20, "train_fp16_scaler": 20, "inference": 15, "throughput": 45,
             "train_node_resume": 45, "evaluate": 55, "predict": 25, "ddp": 60, "train_compile": 150},
)
# The CPU mode only keeps the script honest; its budgets are generous for a shared 1-2 core machine.
CPU_MODE = Mode(
    name="cpu-tiny", size=32, filters=(4, 8, 16), learning_rate=3e-3, steps=24, n_train=48, n_val=16,
    max_batch=32, infer_repeats=3, num_workers=0, demo_images=24, test_count=4, time_limit=900.0,
    budgets={"faces": 30, "train_bf16": 60, "train_fp16_scaler": 90, "inference": 30, "throughput": 60,
             "train_node_resume": 120, "evaluate": 180, "predict": 90, "ddp": 60, "train_compile": 300},
)
STEP_ORDER = ("faces", "train_bf16", "train_fp16_scaler", "inference", "throughput", "train_node_resume",
              "evaluate", "predict", "ddp", "train_compile")


class Skip(Exception):
    """Raised by a step that cannot run here; the message says why (``skipped: ...``)."""


class CheckFailed(AssertionError):
    """A check of a step did not hold (wrong result, non-finite number)."""


class _Interrupted(Exception):
    """Stands in for Ctrl-C in the middle of a training epoch."""


def base_params(group: str) -> dict[str, Any]:
    """``params:<group>`` as ``conf/base/parameters_<group>.yml`` declares it (the nodes take every key)."""
    import yaml

    return dict(yaml.safe_load((REPO / "conf" / "base" / f"parameters_{group}.yml").read_text())[group])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_finite(what: str, values: Any) -> None:
    """Raise :class:`CheckFailed` naming ``what`` when any number in ``values`` is NaN or infinite."""
    if isinstance(values, torch.Tensor):
        if not bool(torch.isfinite(values.detach().float()).all()):
            raise CheckFailed(f"{what}: non-finite values (NaN or inf)")
        return
    if isinstance(values, dict):
        for key, value in values.items():
            check_finite(f"{what}[{key}]", value)
        return
    if isinstance(values, (list, tuple)):
        bad = [i for i, v in enumerate(values) if not math.isfinite(float(v))]
        if bad:
            raise CheckFailed(f"{what}: non-finite value at position(s) {bad[:5]}: {[values[i] for i in bad[:5]]}")
        return
    if not math.isfinite(float(values)):
        raise CheckFailed(f"{what}: {values}")


def loss_falls(losses: list[float], factor: float = 0.9) -> tuple[float, float]:
    """(mean of the first, mean of the last fifth): the second must be below ``factor`` x the first."""
    check_finite("training loss", losses)
    k = max(2, len(losses) // 5)
    first, last = statistics.fmean(losses[:k]), statistics.fmean(losses[-k:])
    if not last < factor * first:
        raise CheckFailed(f"the loss did not fall: {first:.4f} over the first {k} steps, {last:.4f} over the "
                          f"last {k} (needs < {factor} x)")
    return first, last


def max_abs_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest absolute difference between two state dicts' floating-point tensors (same keys)."""
    if a.keys() != b.keys():
        raise CheckFailed(f"state dicts have different keys: {sorted(set(a) ^ set(b))[:5]}")
    worst = 0.0
    for key, value in a.items():
        if value.is_floating_point():
            worst = max(worst, float((value.float() - b[key].float()).abs().max()) if value.numel() else 0.0)
        elif not torch.equal(value, b[key]):
            worst = math.inf
    return worst


# --------------------------------------------------------------------------- faces


@dataclasses.dataclass
class Faces:
    """Aligned face crops and their masked versions: uint8 N x S x S x 3, mask maps N x S x S in {0, 1}."""

    source: str
    ids: list[str]
    clean: np.ndarray
    masked: np.ndarray
    masks: np.ndarray
    styles: list[str]

    def tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked, clean) as float NCHW in [0, 1] on ``device``."""
        def convert(images: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255).to(device)
        return convert(self.masked), convert(self.clean)


def _masked_pair(crop: np.ndarray, points: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    from unmask.imaging.mask_renderer import rasterize_mask, render_masked_face, sample_mask_spec

    spec = sample_mask_spec(points, size, np.random.default_rng([seed, 20_220]))
    return render_masked_face(crop, spec), rasterize_mask(spec), spec.style


def load_faces(count: int, size: int, celeba: Path | None, workers: int = 1) -> Faces:
    """``count`` aligned, masked faces: from the CelebA zip or folder ``celeba``, else the demo generator.

    CelebA images are read with :mod:`unmask.imaging.celeba` (the shared zip has no annotations:
    the aligned-CelebA template landmarks place them, as ``benchmarks/celeba_pairs.py`` does); the
    demo faces come with exact landmarks. Masks are drawn by the project's renderer, seeded per image.
    """
    from unmask.imaging.alignment import align_face

    if celeba is not None:
        from unmask.imaging.celeba import image_id, list_images, locate_celeba, read_image, template_landmarks

        source = locate_celeba(celeba)
        members = list_images(source)[:count]
        if len(members) < count:
            raise ValueError(f"{celeba} has {len(members)} images; {count} are needed")

        def one(i: int) -> tuple:
            image = read_image(source, members[i])
            crop, points, _ = align_face(image, template_landmarks(image.shape[1], image.shape[0]), size)
            return (image_id(members[i]), crop, *_masked_pair(crop, points, size, i))
        label = f"real CelebA faces from {celeba}"
    else:
        from unmask.imaging.demo_faces import render_demo_face

        def one(i: int) -> tuple:
            image, landmarks = render_demo_face(i // 3, 1_000 + i)  # three images per identity
            crop, points, _ = align_face(image, landmarks, size)
            return (f"{i + 1:06d}", crop, *_masked_pair(crop, points, size, i))
        label = "procedural demo faces (unmask.imaging.demo_faces)"
    with ThreadPoolExecutor(max(1, workers)) as pool:
        rows = list(pool.map(one, range(count)))
    ids, clean, masked, masks, styles = zip(*rows)
    return Faces(label, list(ids), np.stack(clean), np.stack(masked), np.stack(masks), list(styles))


# --------------------------------------------------------------------------- the check


@dataclasses.dataclass
class StepResult:
    name: str
    status: str  # ok | skipped | failed
    seconds: float
    budget_s: float
    summary: str
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    over_budget: bool = False


class GpuCheck:
    """Runs the steps in order, prints one line per step and per figure, keeps the JSON up to date."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cuda = torch.cuda.is_available() and not args.cpu_tiny
        self.mode = CUDA_MODE if self.cuda else CPU_MODE
        self.device = torch.device("cuda" if self.cuda else "cpu")
        self.fmt = memory_format_for(self.device)
        self.time_limit = args.time_limit if args.time_limit is not None else self.mode.time_limit
        self.started = time.perf_counter()
        self.results: list[StepResult] = []
        self.figures: dict[str, dict[str, Any]] = {}
        self.faces: Faces | None = None
        self.tensors: tuple[torch.Tensor, torch.Tensor] | None = None
        self.trained_state: dict[str, torch.Tensor] | None = None
        self.node_model: torch.nn.Module | None = None
        self.project_model = ""
        self.eager_rate_b8: float | None = None
        self.peak_gpu_bytes = 0
        self.scratch = Path(tempfile.mkdtemp(prefix="unmask-gpu-check-"))
        self.environment = self._environment()

    # ----------------------------------------------------------------- plumbing

    def _environment(self) -> dict[str, Any]:
        env: dict[str, Any] = {
            "mode": self.mode.name, "torch": torch.__version__, "python": platform.python_version(),
            "cpu_threads": torch.get_num_threads(), "cuda_available": torch.cuda.is_available(),
        }
        if self.cuda:
            env.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                       gpus=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
                       bf16_supported=torch.cuda.is_bf16_supported(),
                       capability=".".join(map(str, torch.cuda.get_device_capability(0))))
        return env

    def _bf16_ok(self) -> bool:
        return (not self.cuda) or torch.cuda.is_bf16_supported()

    def _train_dtype(self) -> torch.dtype:
        """What ``train.precision: auto`` trains in here (bf16 on bf16 GPUs, else fp16; CPU: bf16 or fp32)."""
        return resolve_precision("auto", self.device, training=True)

    def left(self) -> float:
        return self.time_limit - (time.perf_counter() - self.started)

    def figure(self, name: str, value: float | str, unit: str, note: str = "") -> None:
        self.figures[name] = {"value": value, "unit": unit, "note": note}

    def write_json(self) -> None:
        doc = {
            "ok": not any(r.status == "failed" for r in self.results),
            "failed": [r.name for r in self.results if r.status == "failed"],
            "mode": self.mode.name, "device": str(self.device), "environment": self.environment,
            "time_limit_s": self.time_limit, "elapsed_s": round(time.perf_counter() - self.started, 1),
            "budgets_s": dict(self.mode.budgets), "steps": [dataclasses.asdict(r) for r in self.results],
            "figures": self.figures, "command": " ".join(sys.argv),
        }
        out = Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")
        os.replace(tmp, out)

    def run_step(self, name: str, fn: Callable[[], tuple[str, dict[str, Any]]]) -> None:
        budget = float(self.mode.budgets[name])
        start = time.perf_counter()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        status, data = "ok", {}
        try:
            if name in self.args.skip:
                raise Skip("skipped: --skip")
            if self.args.only and name not in self.args.only and name != "faces":
                raise Skip("skipped: not in --only")
            left = self.left()
            if left < budget:
                raise CheckFailed(f"not started: {left:.0f} s of the {self.time_limit:.0f} s limit left, "
                                  f"its budget is {budget:.0f} s")
            if self.args.fail_step == name:
                raise RuntimeError("failure injected with --fail-step")
            summary, data = fn()
        except Skip as skip:
            status, summary = "skipped", str(skip)
        except Exception as exc:  # every failure is reported with the step's name, and the run goes on
            status, summary = "failed", f"{type(exc).__name__}: {exc}"
            print(f"\n--- step {name} FAILED ---\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        seconds = time.perf_counter() - start
        gc.collect()
        if self.cuda and status != "skipped":
            try:  # after a CUDA error these can fail too; the step is already reported as failed then
                peak = torch.cuda.max_memory_allocated(self.device)
                data["peak_gpu_memory_gib"] = round(peak / 2**30, 2)
                self.peak_gpu_bytes = max(self.peak_gpu_bytes, peak)
                torch.cuda.empty_cache()  # hand cached memory back: the Kedro and predict subprocesses share the GPU
            except Exception as exc:
                data["cuda_cleanup_error"] = f"{type(exc).__name__}: {exc}"
        result = StepResult(name, status, round(seconds, 2), budget, summary, data,
                            over_budget=status != "skipped" and seconds > budget)
        self.results.append(result)
        tag = {"ok": "[ ok ]", "skipped": "[skip]", "failed": "[FAIL]"}[status]
        timing = f"{seconds:6.1f} s / {budget:3.0f} s" if status != "skipped" else " " * 16
        print(f"{tag} {name:<18} {timing}  {summary}", flush=True)
        if data.get("detail"):
            print(f"       {data['detail']}", flush=True)
        if result.over_budget:
            print(f"       WARNING: {name} took {seconds:.0f} s, over its {budget:.0f} s budget", flush=True)
        self.write_json()

    # ----------------------------------------------------------------- steps

    def step_faces(self) -> tuple[str, dict[str, Any]]:
        count = self.mode.n_train + self.mode.n_val
        choice = self.args.faces
        celeba = Path(self.args.celeba) if self.args.celeba else None
        if choice == "celeba" and (celeba is None or not celeba.exists()):
            raise CheckFailed(f"--faces celeba but {celeba} does not exist")
        use = celeba if choice != "demo" and celeba is not None and celeba.exists() else None
        self.faces = load_faces(count, self.mode.size, use, workers=min(8, os.cpu_count() or 1))
        self.tensors = self.faces.tensors(self.device)
        coverage = float(self.faces.masks.mean())
        return (f"{count} faces at {self.mode.size}x{self.mode.size}: {self.faces.source}; "
                f"mask coverage {coverage:.0%}"), {"count": count, "source": self.faces.source, "coverage": coverage}

    def _need_faces(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.tensors is None:
            raise Skip("skipped: needs the faces step")
        return self.tensors

    def _new_model(self, seed: int = 0) -> torch.nn.Module:
        torch.manual_seed(seed)
        model = build_model("ra_unet", self.mode.filters).to(self.device, memory_format=self.fmt).train()
        weight = next(p for p in model.parameters() if p.dim() == 4)
        if self.fmt == torch.channels_last and not weight.is_contiguous(memory_format=torch.channels_last):
            raise CheckFailed("the model's weights are not channels_last")
        return model

    def _batches(self, steps: int, batch: int, seed: int = 0) -> list[torch.Tensor]:
        """The same index batches for every run, so precisions and compile see the same data."""
        gen = torch.Generator().manual_seed(seed)
        n, out, perm = self.mode.n_train, [], torch.empty(0, dtype=torch.long)
        while len(out) < steps:
            if len(perm) < batch:
                perm = torch.randperm(n, generator=gen)
            out.append(perm[:batch].to(self.device))
            perm = perm[batch:]
        return out

    def _train_steps(self, model: torch.nn.Module, dtype: torch.dtype, steps: int, batch: int = 8,
                     warmup: int = 3) -> dict[str, Any]:
        """``steps`` project training steps (``training_step``: autocast, float32 loss, scaler, fused Adam)."""
        masked, clean = self._need_faces()
        optimizer = build_optimizer(model, self.mode.learning_rate, self.device)
        scaler = torch.amp.GradScaler(self.device.type, enabled=dtype == torch.float16)
        loss_fn = build_loss("ssim_l1", 1.0)
        losses: list[torch.Tensor] = []
        first_step = timed_from = 0.0
        start = time.perf_counter()
        for step, idx in enumerate(self._batches(steps, batch)):
            x = masked.index_select(0, idx).contiguous(memory_format=self.fmt)
            y = clean.index_select(0, idx)
            losses.append(training_step(model, x, y, loss_fn, optimizer, scaler, dtype))
            if step == 0:
                _sync(self.device)
                first_step = time.perf_counter() - start
            if step == warmup - 1:
                _sync(self.device)
                timed_from = time.perf_counter()
        _sync(self.device)
        rate = batch * (steps - warmup) / (time.perf_counter() - timed_from)
        values = [float(v) for v in losses]
        first, last = loss_falls(values)
        for name, parameter in model.named_parameters():
            check_finite(f"parameter {name}", parameter)
        return {"losses": values, "loss_first": first, "loss_last": last, "images_per_s": rate,
                "first_step_s": first_step, "scale": scaler.get_scale() if scaler.is_enabled() else None}

    def _train_precision(self, precision: str) -> tuple[str, dict[str, Any]]:
        self._need_faces()
        if precision == "bf16" and not self._bf16_ok():
            raise Skip("skipped: this GPU has no bf16 (train.precision auto trains in fp16 with the scaler)")
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        model = self._new_model()
        out = self._train_steps(model, dtype, self.mode.steps)
        if precision == "bf16" or self.trained_state is None:
            self.trained_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if precision == "fp16":
            if out["scale"] is None or not out["scale"] >= 1.0:
                raise CheckFailed(f"the gradient scaler's scale collapsed to {out['scale']}")
        layout = "channels_last" if self.fmt == torch.channels_last else "NCHW"
        scale = f", final loss scale {out['scale']:.0f}" if out["scale"] is not None else ""
        return (f"{precision} autocast, {layout}, eager: loss {out['loss_first']:.4f} -> {out['loss_last']:.4f} "
                f"over {self.mode.steps} steps (batch 8), {out['images_per_s']:.1f} images/s{scale}"), out

    def step_train_bf16(self) -> tuple[str, dict[str, Any]]:
        return self._train_precision("bf16")

    def step_train_fp16_scaler(self) -> tuple[str, dict[str, Any]]:
        return self._train_precision("fp16")

    def _time(self, fn: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
        for _ in range(warmup):
            fn()
        _sync(self.device)
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            _sync(self.device)
            runs.append(time.perf_counter() - start)
        return statistics.median(runs)

    def step_inference(self) -> tuple[str, dict[str, Any]]:
        masked, _ = self._need_faces()
        state = self.trained_state
        outputs, data, parts = {}, {}, []
        for precision in ("bf16", "fp32"):
            if precision == "bf16" and not self._bf16_ok():
                data["bf16"] = "skipped: this GPU has no bf16"
                continue
            model = build_model("ra_unet", self.mode.filters)
            if state is not None:
                model.load_state_dict(state)
            model, dtype = prepare_for_inference(model, self.device, precision)
            for batch in (1, 8):
                x = masked[:batch]
                seconds = self._time(lambda m=model, x=x, d=dtype: restore(m, x, d), self.mode.infer_repeats) / batch
                out = restore(model, x, dtype)
                check_finite(f"{precision} restoration at batch {batch}", out)
                if not (float(out.min()) >= 0.0 and float(out.max()) <= 1.0):
                    raise CheckFailed(f"{precision} restoration outside [0, 1]")
                outputs[precision] = out
                data[f"{precision}_b{batch}_s_per_image"] = seconds
                self.figure(f"infer_s_per_image_b{batch}_{precision}", round(seconds, 5), "s/image",
                            "prepare_for_inference + restore, median")
                parts.append(f"{precision} b{batch} {seconds * 1e3:.2f} ms")
            del model
        if "bf16" in outputs:
            mse = float(((outputs["bf16"] - outputs["fp32"]) ** 2).mean())
            data["bf16_vs_fp32_psnr_db"] = 100.0 if mse == 0 else 10 * math.log10(1 / mse)
            parts.append(f"bf16 vs fp32 output {data['bf16_vs_fp32_psnr_db']:.1f} dB")
        trained = "the train_bf16 weights" if state is not None else "untrained weights"
        return f"s/image ({trained}): " + ", ".join(parts), data

    def step_throughput(self) -> tuple[str, dict[str, Any]]:
        masked, clean = self._need_faces()
        dtype = self._train_dtype()
        model = self._new_model()
        optimizer = build_optimizer(model, self.mode.learning_rate, self.device)
        scaler = torch.amp.GradScaler(self.device.type, enabled=dtype == torch.float16)
        loss_fn = build_loss("ssim_l1", 1.0)
        deadline = time.perf_counter() + 0.9 * self.mode.budgets["throughput"]
        n = masked.shape[0]

        def measure(batch: int) -> tuple[float, float]:
            idx = torch.arange(batch, device=self.device) % n
            x = masked.index_select(0, idx).contiguous(memory_format=self.fmt)
            y = clean.index_select(0, idx)
            if self.cuda:
                torch.cuda.reset_peak_memory_stats(self.device)
            losses = []

            def step() -> None:
                losses.append(training_step(model, x, y, loss_fn, optimizer, scaler, dtype))
            for _ in range(2):  # warm-up (cuDNN autotuning of a new shape)
                step()
            _sync(self.device)
            count, start = 0, time.perf_counter()
            while count < 3 or (count < 20 and time.perf_counter() - start < 1.0):
                step()
                _sync(self.device)
                count += 1
            rate = batch * count / (time.perf_counter() - start)
            check_finite(f"loss at batch {batch}", [float(v) for v in losses])
            peak = torch.cuda.max_memory_allocated(self.device) / 2**30 if self.cuda else float("nan")
            return rate, peak

        rates: dict[int, dict[str, float]] = {}
        batch, stop = 8, ""
        while True:
            started = time.perf_counter()
            try:
                rate, peak = measure(batch)
            except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is one
                if batch == 8:
                    raise  # the paper's batch must train: any error there is a failure
                # Beyond it, the search ends at the first batch that does not run: out of memory, or
                # a kernel's size limit (a 512 x 64 x 256 x 256 activation has 2**31 elements).
                first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                oom = isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in first_line.lower()
                stop = f"out of memory at batch {batch}" if oom else f"batch {batch} failed: {first_line}"
                optimizer.zero_grad(set_to_none=True)
                gc.collect()
                if self.cuda:
                    torch.cuda.empty_cache()
                break
            rates[batch] = {"images_per_s": rate, "peak_gpu_memory_gib": peak}
            if batch * 2 > self.mode.max_batch:
                stop = f"cap of {self.mode.max_batch} reached"
                break
            # twice the batch takes about twice as long (and autotunes its shapes anew)
            if time.perf_counter() + 2.2 * (time.perf_counter() - started) > deadline:
                stop = f"the step's time budget ends before batch {batch * 2} could be measured"
                break
            batch *= 2
        if 8 not in rates:
            raise CheckFailed(f"batch 8 does not train: {stop}")
        largest = max(rates)
        self.eager_rate_b8 = rates[8]["images_per_s"]
        what = f"{precision_name(dtype)}, channels_last, eager, the paper's network" if self.cuda else \
            f"{precision_name(dtype)}, cpu tiny network (not representative)"
        self.figure("train_images_per_s_b8", round(self.eager_rate_b8, 1), "images/s", what)
        self.figure("train_images_per_s_max_batch", round(rates[largest]["images_per_s"], 1), "images/s",
                    f"batch {largest} ({stop}), {what}")
        self.figure("largest_training_batch", largest, "images", stop)
        if self.cuda:
            self.figure("peak_gpu_memory_gib_max_batch", round(rates[largest]["peak_gpu_memory_gib"], 2), "GiB",
                        f"training at batch {largest}")
        for label, rate in (("b8", self.eager_rate_b8), ("max_batch", rates[largest]["images_per_s"])):
            epoch_s = CELEBA_TRAIN_IMAGES / rate
            self.figure(f"celeba_epoch_minutes_{label}", round(epoch_s / 60, 1), "min",
                        f"{CELEBA_TRAIN_IMAGES:,} training images at {rate:.0f} images/s")
            self.figure(f"paper_40_epochs_hours_{label}", round(epoch_s * PAPER_EPOCHS / 3600, 2), "h",
                        "training only, no validation")
        table = ", ".join(f"b{b} {r['images_per_s']:.0f}" for b, r in rates.items())
        return (f"training images/s ({precision_name(dtype)}): {table}; largest batch {largest} ({stop})",
                {"rates": rates, "largest_batch": largest, "stop": stop})

    # ----------------------------------------------------------------- the train node

    def _node_params(self, **overrides: Any) -> dict[str, Any]:
        params = {
            **base_params("train"), "checkpoint_dir": None,
            "model": "ra_unet", "filters": list(self.mode.filters), "loss": "ssim_l1", "loss_weight": 1.0,
            "learning_rate": self.mode.learning_rate, "batch_size": 8, "epochs": 2, "early_stopping_patience": 5,
            "scheduler": "cosine", "device": self.device.type, "devices": 1, "precision": "auto",
            "channels_last": "auto", "compile": False, "num_workers": self.mode.num_workers, "flip": True,
            "seed": 0, "sample_count": 2, "validate_every": 1,
        }
        params.update(overrides)
        return params

    def _node_inputs(self) -> dict[str, Any]:
        """The ``train`` node's inputs as the catalog would hand them over (picklable loaders, for DDP)."""
        import pandas as pd
        from PIL import Image

        faces = self.faces
        if faces is None:
            raise Skip("skipped: needs the faces step")
        ids = faces.ids
        n_train = self.mode.n_train

        def loaders(images: np.ndarray) -> dict[str, Callable]:
            return {i: functools.partial(Image.fromarray, images[k]) for k, i in enumerate(ids)}
        split = pd.DataFrame({"image_id": ids, "identity": pd.array([None] * len(ids), dtype="Int64"),
                              "split": ["train"] * n_train + ["val"] * (len(ids) - n_train)})
        return {
            "face_crops": loaders(faces.clean), "masked_faces": loaders(faces.masked),
            "mask_maps": loaders(faces.masks * 255),
            "mask_metadata": pd.DataFrame({"image_id": ids, "style": faces.styles}),
            "face_landmarks": pd.DataFrame({"image_id": ids}), "data_split": split,
            "celeba_source": {"dataset": "celeba" if "CelebA" in faces.source else "demo"},
            "masks_params": {**base_params("masks"), "seed": 0, "styles": sorted(set(faces.styles))},
        }

    def _train_node(self, inputs: dict[str, Any], params: dict[str, Any]) -> tuple[torch.nn.Module, Any]:
        from unmask.pipelines.train.nodes import train_model

        return train_model(inputs["face_crops"], inputs["masked_faces"], inputs["mask_maps"], inputs["mask_metadata"],
                           inputs["face_landmarks"], inputs["data_split"], inputs["celeba_source"],
                           {}, params, inputs["masks_params"])  # {}: no real mask cut-outs

    def _interrupted_run(self, inputs: dict[str, Any], params: dict[str, Any], after_calls: int) -> None:
        """Run the node with a loss that raises after ``after_calls`` calls, like Ctrl-C mid-epoch."""
        import unmask.models.training as training

        real = training.build_loss

        def build(name: str, weight: float) -> Callable:
            loss, calls = real(name, weight), [0]

            def interrupting(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
                calls[0] += 1
                if calls[0] > after_calls:
                    raise _Interrupted
                return loss(pred, target)
            return interrupting

        training.build_loss = build
        try:
            self._train_node(inputs, params)
        except _Interrupted:
            return
        finally:
            training.build_loss = real
        raise CheckFailed("the interrupted run was not interrupted")

    def _determinism_probe(self) -> list[str]:
        """Ops of one training step without a deterministic kernel on this device (PyTorch's own warnings)."""
        masked, clean = self._need_faces()
        model = self._new_model()
        optimizer = build_optimizer(model, self.mode.learning_rate, self.device)
        scaler = torch.amp.GradScaler(self.device.type, enabled=self._train_dtype() == torch.float16)
        x, y = masked[:8].contiguous(memory_format=self.fmt), clean[:8]
        before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.use_deterministic_algorithms(True, warn_only=True)
            try:
                training_step(model, x, y, build_loss("ssim_l1", 1.0), optimizer, scaler, self._train_dtype())
                _sync(self.device)
            finally:
                torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        ops = set()
        for warning in caught:
            text = str(warning.message)
            if "CUBLAS_WORKSPACE_CONFIG" in text:
                ops.add("cuBLAS (without CUBLAS_WORKSPACE_CONFIG=:4096:8)")
            elif "does not have a deterministic" in text:
                ops.add(text.split(" does not have a deterministic")[0].strip())
            elif "deterministic" in text:
                ops.add(text[:160])
        return sorted(ops)

    def step_train_node_resume(self) -> tuple[str, dict[str, Any]]:
        inputs = self._node_inputs()
        root = self.scratch / "resume"
        steps_per_epoch = math.ceil(self.mode.n_train / 8)
        val_batches = math.ceil(self.mode.n_val / 8)
        runs = {"uninterrupted": root / "full", "interrupted": root / "cut", "second_uninterrupted": root / "again"}
        reference, history = self._train_node(inputs, self._node_params(checkpoint_dir=str(runs["uninterrupted"])))
        check_finite("train node history", history.drop(columns=["epoch"]).to_dict("list"))
        # the run-to-run noise: the same run again (bitwise the same on the CPU, not on CUDA)
        self._train_node(inputs, self._node_params(checkpoint_dir=str(runs["second_uninterrupted"])))
        # epoch 1 (its steps and its validation), then two steps into epoch 2
        self._interrupted_run(inputs, self._node_params(checkpoint_dir=str(runs["interrupted"])),
                              steps_per_epoch + val_batches + 2)
        saved = load_training_state(runs["interrupted"] / "last.pt")
        if saved["epoch"] != 1:
            raise CheckFailed(f"the interrupted run's checkpoint is at epoch {saved['epoch']}, not 1")
        resumed, resumed_history = self._train_node(
            inputs, self._node_params(checkpoint_dir=str(runs["interrupted"]), resume=True))
        if list(resumed_history["epoch"]) != [1, 2]:
            raise CheckFailed(f"the resumed run's history has epochs {list(resumed_history['epoch'])}")
        final = {k: load_training_state(d / "last.pt")["model"] for k, d in runs.items()}
        diff = max_abs_difference(final["uninterrupted"], final["interrupted"])
        best_diff = max_abs_difference(reference.state_dict(), resumed.state_dict())
        moved = max_abs_difference(saved["model"], final["uninterrupted"])  # how far epoch 2 moved the weights
        data: dict[str, Any] = {
            "max_abs_difference_final": diff, "max_abs_difference_best": best_diff,
            "max_abs_change_in_epoch_2": moved, "history": resumed_history.to_dict("list"),
            "uninterrupted_images_per_s": float(history["train_images_per_s"].iloc[-1]),
        }
        ops = self._determinism_probe()
        noise = max_abs_difference(final["uninterrupted"], final["second_uninterrupted"])
        data["nondeterministic_ops"] = ops
        data["noise_floor_max_abs_difference"] = noise
        if self.cuda:
            data["detail"] = data["determinism"] = (
                "CUDA training is not bitwise reproducible as the trainer runs it: cudnn.benchmark picks "
                "kernels by timing, and " + (f"these ops have no deterministic CUDA kernel: {', '.join(ops)}"
                                            if ops else "no op of the step warned under use_deterministic_algorithms")
                + ". Bitwise equality would need torch.use_deterministic_algorithms(True), "
                  "CUBLAS_WORKSPACE_CONFIG=:4096:8 and cudnn.benchmark off; the resumed run is held to the "
                  "noise of a second uninterrupted run instead.")
            tolerance = max(1e-6, 10 * noise)
            verdict = (f"max |resumed - uninterrupted| {diff:.2e}, two uninterrupted runs differ by {noise:.2e} "
                       f"(epoch 2 moved weights by up to {moved:.2e})")
        else:
            tolerance = 1e-6
            data["determinism"] = "CPU: the resumed run must match the uninterrupted one exactly (or within 1e-6)"
            verdict = (f"max |resumed - uninterrupted| {diff:.2e} ({'exact' if diff == 0 else 'not bitwise equal'}; "
                       f"two uninterrupted runs: {noise:.2e})")
        data["tolerance"] = tolerance
        if not diff <= tolerance:
            raise CheckFailed(f"the resumed weights are not the uninterrupted run's: {verdict}, "
                              f"tolerance {tolerance:.1e}")
        self.node_model = resumed
        return (f"train node 2 epochs ({self.mode.n_train} train / {self.mode.n_val} val faces, "
                f"{data['uninterrupted_images_per_s']:.0f} images/s), interrupted in epoch 2 and resumed: {verdict}"
                + (f"; nondeterministic ops: {', '.join(ops)}" if ops else "")), data

    def step_ddp(self) -> tuple[str, dict[str, Any]]:
        if self.cuda:
            count, backend, where = torch.cuda.device_count(), "NCCL", "GPUs"
            if count < 2:
                raise Skip(f"skipped: {count} CUDA device visible; train.devices: N needs two or more")
        elif self.args.ddp_cpu >= 2:  # the same node and spawn path, gloo between CPU processes
            count, backend, where = self.args.ddp_cpu, "gloo", "CPU processes"
        else:
            raise Skip(f"{NO_CUDA} (--ddp-cpu 2 runs the same path with gloo on the CPU)")
        inputs = self._node_inputs()
        model, history = self._train_node(inputs, self._node_params(
            devices=count, epochs=1, device=self.device.type, checkpoint_dir=str(self.scratch / "ddp")))
        check_finite("DDP history", history.drop(columns=["epoch"]).to_dict("list"))
        check_finite("DDP weights", {k: v for k, v in model.state_dict().items() if v.is_floating_point()})
        rate = float(history["train_images_per_s"].iloc[-1])
        self.figure("train_images_per_s_ddp", round(rate, 1), "images/s",
                    f"train node, {count} {where} x batch 8 ({backend}), first epoch (includes start-up)")
        note = "" if self.cuda else f"; NCCL {NO_CUDA}"
        return (f"train.devices: {count} ({backend}, {where}), 1 epoch: {rate:.0f} images/s, replicas identical "
                f"(checked by the trainer){note}"), {"devices": count, "backend": backend, "images_per_s": rate}

    # ----------------------------------------------------------------- Kedro and `unmask predict`

    def _subprocess_env(self) -> dict[str, str]:
        env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1",
               "TQDM_DISABLE": "1"}
        if self.args.threads:
            env["OMP_NUM_THREADS"] = str(self.args.threads)
        return env

    def _run(self, cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
        done = subprocess.run(cmd, cwd=cwd, env=self._subprocess_env(), capture_output=True, text=True,
                              timeout=timeout, check=False)
        if done.returncode != 0:
            tail = (done.stdout[-2000:] + "\n" + done.stderr[-6000:]).strip()
            raise CheckFailed(f"`{' '.join(cmd[2:])}` exited with {done.returncode}:\n{tail}")
        return done

    def _project(self) -> Path:
        """A temporary copy of the project's configuration with a ``gpucheck`` environment and tiny demo data."""
        import yaml

        root = self.scratch / "project"
        if (root / "data/05_model_input/data_split.parquet").exists():
            return root
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(REPO / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
        (root / "conf" / "local").mkdir()
        for name in ("pyproject.toml", ".telemetry"):
            if (REPO / name).exists():
                shutil.copy(REPO / name, root / name)
        (root / "src").mkdir()  # Kedro wants one; the code comes from the installed package
        for layer in ("01_raw", "02_intermediate", "03_primary", "04_feature", "05_model_input", "06_models",
                      "07_model_output", "08_reporting"):
            (root / "data" / layer).mkdir(parents=True)
        m = self.mode
        params = {
            "ingest": {"source": "demo", "demo_images": m.demo_images, "demo_identities": max(3, m.demo_images // 3)},
            "faces": {"size": m.size},
            "split": {"test_count": m.test_count},
            "evaluate": {"device": self.device.type, "batch_size": 8 if self.cuda else 4,
                         "timing_images": 5 if self.cuda else 2, "grid_images": 4 if self.cuda else 2,
                         "num_workers": 2 if self.cuda else 0, "identity": False},
        }
        (root / "conf" / "gpucheck").mkdir()
        (root / "conf" / "gpucheck" / "parameters.yml").write_text(yaml.safe_dump(params))
        self._run([sys.executable, "-m", "kedro", "run", "--env=gpucheck", "--pipelines=ingest,faces,masks,split"],
                  root, timeout=600)
        return root

    def _model_for_project(self, root: Path) -> tuple[Path, str]:
        target = root / "data/06_models/model.safetensors"
        if not target.exists():
            model, self.project_model = self.node_model, "the resumed train-node model"
            if model is None:  # the train node failed or was skipped: an untrained network runs every path too
                model = build_model("ra_unet", self.mode.filters)
                model.metadata = {"crop_size": self.mode.size, "trained_on": "demo"}
                self.project_model = "an untrained network (train_node_resume did not run)"
            save_model(model, target)
        return target, self.project_model

    def step_evaluate(self) -> tuple[str, dict[str, Any]]:
        root = self._project()
        _, what = self._model_for_project(root)
        metrics_file = root / "data/08_reporting/metrics.json"
        metrics_file.unlink(missing_ok=True)
        started = time.perf_counter()
        self._run([sys.executable, "-m", "kedro", "run", "--env=gpucheck", "--pipelines=evaluate"], root,
                  timeout=max(300.0, 3 * self.mode.budgets["evaluate"]))
        seconds = time.perf_counter() - started
        metrics = json.loads(metrics_file.read_text())
        for key in ("psnr", "ssim", "psnr_mask", "ssim_mask", "seconds_per_image_batch1_median"):
            check_finite(f"metrics.json {key}", metrics[key])
        if metrics["n_images"] != self.mode.test_count:
            raise CheckFailed(f"evaluated {metrics['n_images']} images, expected {self.mode.test_count}")
        if not str(metrics["device"]).startswith(self.device.type):
            raise CheckFailed(f"evaluate ran on {metrics['device']}, not {self.device.type}")
        note = "" if self.cuda else f"; ran on the CPU, the CUDA run {NO_CUDA}"
        data = {k: metrics.get(k) for k in ("device", "device_name", "precision", "n_images", "psnr", "ssim",
                                            "psnr_mask", "seconds_per_image_batch1_median")}
        data["kedro_seconds"] = seconds
        return (f"`kedro run --pipelines=evaluate` on {metrics['device']} ({metrics.get('device_name')}, "
                f"{metrics.get('precision')}), {metrics['n_images']} demo test faces, {what}: "
                f"PSNR {metrics['psnr']:.2f} dB, {metrics['seconds_per_image_batch1_median'] * 1e3:.1f} ms/image "
                f"at batch 1, {seconds:.0f} s{note}"), data

    def step_predict(self) -> tuple[str, dict[str, Any]]:
        from matplotlib import cbook
        from PIL import Image

        root = self._project()
        checkpoint, what = self._model_for_project(root)
        photos = root / "photos"
        photos.mkdir(exist_ok=True)
        hopper = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
        sizes = {}
        for name, image in (("hopper", hopper), ("hopper_large", hopper.resize((hopper.width * 2, hopper.height * 2))),
                            ("hopper_mirrored", hopper.transpose(Image.Transpose.FLIP_LEFT_RIGHT))):
            image.save(photos / f"{name}.jpg", quality=95)
            sizes[name] = image.size
        out = root / "predicted"
        shutil.rmtree(out, ignore_errors=True)
        started = time.perf_counter()
        done = self._run([sys.executable, "-m", "unmask", "predict", str(photos), "-o", str(out), "--device",
                          self.device.type, "--checkpoint", str(checkpoint), "--save-mask"], root,
                         timeout=max(300.0, 3 * self.mode.budgets["predict"]))
        seconds = time.perf_counter() - started
        if f"on {self.device.type}" not in done.stderr:
            raise CheckFailed(f"unmask predict did not say it runs on {self.device.type}:\n{done.stderr[-2000:]}")
        if f"{len(sizes)} of {len(sizes)} photos restored" not in done.stderr:
            raise CheckFailed(f"unmask predict did not restore every photo:\n{done.stderr[-2000:]}")
        for name, size in sizes.items():
            for suffix in (".png", ".mask.png"):
                with Image.open(out / f"{name}{suffix}") as result:
                    if result.size != size:
                        raise CheckFailed(f"{name}{suffix} is {result.size}, the photo was {size}")
        note = "" if self.cuda else f"; ran on the CPU, the CUDA run {NO_CUDA}"
        line = next((ln for ln in done.stderr.splitlines() if "photos restored" in ln), "")
        line = line.removeprefix("unmask predict: ").split("; results in")[0].strip()
        return (f"`unmask predict --device {self.device.type}` with {what}: {line}{note}"), \
            {"seconds": seconds, "photos": len(sizes), "output": line}

    # ----------------------------------------------------------------- torch.compile

    def step_train_compile(self) -> tuple[str, dict[str, Any]]:
        if self.args.no_compile:
            raise Skip("skipped: --no-compile")
        if not self.cuda and not self.args.compile:
            raise Skip(f"{NO_CUDA} (CPU tiny mode: --compile compiles the tiny network on the CPU)")
        self._need_faces()
        dtype = self._train_dtype()
        model = self._new_model()
        compiled = torch.compile(model)  # as the trainer does with train.compile: true
        out = self._train_steps(compiled, dtype, self.mode.steps)
        rate = out["images_per_s"]
        self.figure("train_images_per_s_b8_compiled", round(rate, 1), "images/s",
                    f"{precision_name(dtype)}, channels_last, torch.compile, after compiling")
        self.figure("compile_first_step_s", round(out["first_step_s"], 1), "s", "compiling forward and backward")
        versus = (f", {rate / self.eager_rate_b8:.2f}x the eager rate" if self.eager_rate_b8 else "")
        return (f"{precision_name(dtype)} + torch.compile: first step {out['first_step_s']:.0f} s (compiling), "
                f"loss {out['loss_first']:.4f} -> {out['loss_last']:.4f} over {self.mode.steps} steps, "
                f"{rate:.1f} images/s{versus}"), out

    # ----------------------------------------------------------------- main

    def run(self) -> int:
        env = self.environment
        if self.cuda:
            where = (f"{len(env['gpus'])} x {env['gpus'][0]} (compute {env['capability']}, CUDA {env['cuda']}, "
                     f"cuDNN {env['cudnn']}, bf16 {'yes' if env['bf16_supported'] else 'no'})")
        else:
            why = "--cpu-tiny" if torch.cuda.is_available() else "no CUDA"
            where = f"CPU ({why}): tiny mode, {self.mode.size}x{self.mode.size}, filters {list(self.mode.filters)}"
        parameters = count_parameters(build_model("ra_unet", self.mode.filters)) / 1e6
        print(f"unmask gpu-check: {where}; torch {torch.__version__}, {torch.get_num_threads()} CPU threads; "
              f"ra_unet {list(self.mode.filters)} ({parameters:.2f} M "
              f"parameters); time limit {self.time_limit:.0f} s; JSON -> {self.args.out}", flush=True)
        if self.cuda:
            torch.backends.cudnn.benchmark = True  # fixed shapes, as the trainer sets it
        try:
            for name in STEP_ORDER:
                self.run_step(name, getattr(self, f"step_{name}"))
        finally:
            if self.args.keep:
                print(f"temporary files kept in {self.scratch}")
            else:
                shutil.rmtree(self.scratch, ignore_errors=True)
        if self.cuda:
            self.figure("peak_gpu_memory_gib", round(self.peak_gpu_bytes / 2**30, 2), "GiB",
                        "torch.cuda.max_memory_allocated over every step run in this process")
        else:
            self.figure("peak_gpu_memory_gib", NO_CUDA, "", "")
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
            self.figure("peak_rss_gib", round(rss, 2), "GiB", "this process (CPU tiny mode)")
        print("\nfigures:")
        for name, f in self.figures.items():
            note = f"  ({f['note']})" if f["note"] else ""
            print(f"  {name:<34} {f['value']} {f['unit']}{note}".rstrip())
        self.write_json()
        failed = [r.name for r in self.results if r.status == "failed"]
        over = [r.name for r in self.results if r.over_budget]
        total = time.perf_counter() - self.started
        print(f"\ntotal {total:.0f} s of the {self.time_limit:.0f} s limit"
              + (f"; over budget: {', '.join(over)}" if over else ""))
        if failed:
            print(f"gpu-check FAILED: {', '.join(failed)} (tracebacks above, results in {self.args.out})", flush=True)
            return 1
        print(f"gpu-check passed ({sum(r.status == 'ok' for r in self.results)} steps ok, "
              f"{sum(r.status == 'skipped' for r in self.results)} skipped); results in {self.args.out}", flush=True)
        return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return str(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu-tiny", action="store_true", help="the tiny CPU mode even where CUDA is available "
                   "(it is chosen automatically without CUDA)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"JSON results (default {DEFAULT_OUT})")
    p.add_argument("--celeba", default=str(SHARED_ZIP), help="CelebA zip or folder for the faces "
                   "(default: the shared 9k zip; the demo faces when it is missing)")
    p.add_argument("--faces", choices=("auto", "celeba", "demo"), default="auto",
                   help="auto: CelebA when --celeba exists, else the procedural demo faces")
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds for the whole check; a step whose budget no longer fits fails "
                        "(default 480 with CUDA, 900 in CPU tiny mode)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile step (its budget is 150 s)")
    p.add_argument("--compile", action="store_true", help="CPU tiny mode: run the torch.compile step too")
    p.add_argument("--skip", nargs="+", default=[], choices=STEP_ORDER, metavar="STEP",
                   help=f"steps to skip: {', '.join(STEP_ORDER)}")
    p.add_argument("--only", nargs="+", default=[], choices=STEP_ORDER, metavar="STEP",
                   help="run only these steps (and faces, which they need)")
    p.add_argument("--ddp-cpu", type=int, default=0, metavar="N",
                   help="without CUDA: run the ddp step with N gloo CPU processes (default: skipped)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch and the subprocesses)")
    p.add_argument("--keep", action="store_true", help="keep the temporary project, checkpoints and photos")
    p.add_argument("--fail-step", choices=STEP_ORDER, default=None, help=argparse.SUPPRESS)  # tests the failure report
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return GpuCheck(args).run()


if __name__ == "__main__":
    raise SystemExit(main())
