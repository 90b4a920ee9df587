"""Ablation of the restoration model: train and evaluate each variant on the same data, one table.

    .venv/bin/python benchmarks/ablation.py --env celeba_sample --epochs 3

Each variant is a set of ``train`` (and ``evaluate``) parameter overrides on top of the Kedro
environment ``--env`` (``conf/celeba_sample`` by default); a test-time-only variant re-evaluates the
model of the variant it names instead of training again. For each one this runs
``kedro run --env ENV --pipelines=train,evaluate`` with those overrides in a fresh process (so every
variant is its own MLflow run, comparable in the MLflow UI), on the data the environment already
prepared (run ``kedro run --env celeba_sample --pipelines=ingest,faces,masks,split --params
ingest.celeba_path=...`` first, or pass ``--celeba PATH`` to do it here). Every variant gets the
same number of epochs (``--epochs``; the paper's network, 3.4x slower per epoch at 64 px, gets
``--paper-epochs``) and the cosine schedule spans them, so short runs still end at a low learning
rate.

Printed and written to ``--out`` (Markdown): per variant, PSNR and SSIM inside the mask and on the
whole image, the same figures on the held-out style for ``holdout`` variants, parameters, batch-1
CPU seconds per image, and training minutes. Each variant's ``metrics.json``, ``evaluation.md`` and
grid are kept under ``data/08_reporting/ablation/<variant>/``. The model and reports that were in
``data/`` before are put back at the end, so the default model is not replaced by an ablation one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "data" / "08_reporting"
#: What train + evaluate overwrite: saved before the ablation, restored after it.
OUTPUTS = [ROOT / "data" / "06_models" / "model.safetensors", ROOT / "data" / "06_models" / "model.json",
           ROOT / "data" / "07_model_output" / "training_history.csv", REPORTS / "training_curves.png",
           REPORTS / "metrics.json", REPORTS / "per_image_metrics.csv", REPORTS / "evaluation.md",
           REPORTS / "restoration_grid.png"]
KEPT = ("metrics.json", "evaluation.md", "restoration_grid.png")

PAPER = {"filters": [64, 128, 256, 512, 1024], "composite": False, "mask_loss_weight": 0.0, "loss": "ssim_l1",
         "learning_rate": 1.0e-4, "scheduler": "none", "batch_size": 8, "fresh_masks": False, "batch_norm": False}
NARROW = {"composite": False, "mask_loss_weight": 0.0, "loss": "ssim_l1", "fresh_masks": False, "batch_norm": False}
PLAIN = {"flip_average": False}  # evaluation without test-time flip averaging


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row: ``train`` and ``evaluate`` overrides on top of the environment.

    ``reuses`` names an earlier variant whose trained model this one only re-evaluates (the
    change is at test time), so it is not trained again. ``compare_with`` names the variant whose
    score on the held-out style (trained on it) sits beside this one's (held out).
    """

    description: str
    train: dict
    evaluate: dict = dataclasses.field(default_factory=lambda: dict(PLAIN))
    reuses: str | None = None
    compare_with: str | None = None


#: each row adds one change to the row before it
VARIANTS: dict[str, Variant] = {
    "paper": Variant("The paper's RA-UNet and recipe: 64..1024 filters, (1-SSIM)+MSE, Adam 1e-4, batch 8", PAPER),
    "narrow": Variant("32..512 filters, Adam 1e-3 with a cosine schedule, batch 16", NARROW),
    "composite": Variant("+ mask head, output composited with the input", {**NARROW, "composite": True}),
    "mask_loss": Variant("+ BCE on the predicted mask against the true one (training only)",
                         {**NARROW, "composite": True, "mask_loss_weight": 1.0}),
    "ssim_mae": Variant("+ (1-SSIM)+L1 instead of (1-SSIM)+MSE", {"fresh_masks": False, "batch_norm": False}),
    "fresh_masks": Variant("+ a fresh mask on every training face each epoch", {"batch_norm": False}),
    "batch_norm": Variant("+ batch norm after every convolution of the conv blocks: the `conf/celeba_sample` "
                          "network", {}),
    "flip_average": Variant("+ flip averaging at test time (the `batch_norm` weights): the `conf/celeba_sample` "
                            "model", {}, {"flip_average": True}, reuses="batch_norm"),
    "holdout": Variant("the `conf/celeba_sample` network with the kn95 style held out of training",
                       {"holdout_styles": ["kn95"]}, compare_with="batch_norm"),
}


def _run_kedro(env: str, pipelines: str, runtime: dict) -> None:
    """``kedro run`` in a child process with nested runtime parameters (lists included)."""
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from kedro.framework.session import KedroSession\n"
        "from kedro.framework.startup import bootstrap_project\n"
        "bootstrap_project(Path.cwd())\n"
        "with KedroSession.create(env=sys.argv[1], runtime_params=json.loads(sys.argv[3])) as session:\n"
        "    session.run(pipeline_names=sys.argv[2].split(','))\n"
    )
    env_vars = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}
    subprocess.run([sys.executable, "-c", code, env, pipelines, json.dumps(runtime)], cwd=ROOT, check=True,
                   env=env_vars)


def _row(name: str, description: str, metrics: dict, train_minutes: float, holdout: list[str],
         compare_with: str | None = None) -> dict:
    row = {"variant": name, "description": description, "parameters": metrics["parameters"],
           "seconds": metrics["seconds_per_image_batch1_median"], "train_minutes": train_minutes,
           "by_style": metrics.get("by_style", {})}
    for key in ("psnr_mask", "ssim_mask", "psnr", "ssim"):
        row[key] = metrics[key]
    row["telea_psnr_mask"], row["telea_ssim_mask"] = metrics["telea_psnr_mask"], metrics["telea_ssim_mask"]
    if holdout:
        style = metrics["by_style"][holdout[0]]
        row["heldout"] = {"style": holdout[0], "psnr_mask": style["psnr_mask"], "ssim_mask": style["ssim_mask"],
                          "psnr": style["psnr"], "ssim": style["ssim"], "compare_with": compare_with}
    return row


def _table(rows: list[dict], epochs: int, paper_epochs: int) -> str:
    lines = [
        f"Each variant adds one change to the row above it; {epochs} epochs each ({paper_epochs} for the "
        "paper's network), same data, test set and masks; figures from the `evaluate` pipeline.",
        "",
        "| Variant | PSNR in mask (dB) | SSIM in mask | PSNR (dB) | SSIM | Parameters | CPU s/image | Training min |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| `{r['variant']}`: {r['description']} | {r['psnr_mask']:.2f} | {r['ssim_mask']:.4f} | "
                     f"{r['psnr']:.2f} | {r['ssim']:.4f} | {r['parameters'] / 1e6:.2f} M | {r['seconds']:.3f} | "
                     f"{r['train_minutes']:.1f} |")
    if rows:
        r = rows[0]
        lines.append(f"| OpenCV Telea, given the true mask | {r['telea_psnr_mask']:.2f} | {r['telea_ssim_mask']:.4f} "
                     "| | | | | |")
    held = [r for r in rows if "heldout" in r]
    if held:
        lines += ["", "Held-out style (never seen in training) against the same style when trained on:", "",
                  "| Variant | Style | PSNR in mask (dB) | SSIM in mask | PSNR (dB) | SSIM |",
                  "| --- | --- | ---: | ---: | ---: | ---: |"]
        by_name = {r["variant"]: r for r in rows}
        for r in held:
            h = r["heldout"]
            lines.append(f"| `{r['variant']}` (unseen) | {h['style']} | {h['psnr_mask']:.2f} | {h['ssim_mask']:.4f} | "
                         f"{h['psnr']:.2f} | {h['ssim']:.4f} |")
            reference = h.get("compare_with")
            seen = by_name.get(reference, {}).get("by_style", {}).get(h["style"])
            if seen:
                lines.append(f"| `{reference}` (trained on it) | {h['style']} | {seen['psnr_mask']:.2f} | "
                             f"{seen['ssim_mask']:.4f} | {seen['psnr']:.2f} | {seen['ssim']:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="celeba_sample", help="Kedro environment the variants start from")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per variant")
    parser.add_argument("--paper-epochs", type=int, default=2, help="epochs for the paper's (slower) network")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--celeba", help="prepare the data first from this CelebA folder or zip")
    parser.add_argument("--out", default=str(REPORTS / "ablation.md"), help="Markdown table written here")
    parser.add_argument("--params", default="{}", help='more runtime parameters for every run, as JSON, e.g. '
                        '\'{"evaluate": {"limit": 200}}\'')
    args = parser.parse_args(argv)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    try:
        extra = json.loads(args.params)
    except json.JSONDecodeError as exc:
        parser.error(f"--params is not JSON: {exc}")
    if not isinstance(extra, dict):
        parser.error("--params must be a JSON object")
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or args.epochs < 1 or args.paper_epochs < 1:
        parser.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}" if unknown
                     else "--epochs and --paper-epochs must be at least 1")
    orphans = [v for v in names if VARIANTS[v].reuses and VARIANTS[v].reuses not in names[: names.index(v)]]
    if orphans:
        parser.error(f"variant(s) {orphans} re-evaluate another variant's model: list "
                     f"{', '.join(VARIANTS[v].reuses for v in orphans)} before them")
    if args.celeba:
        if not Path(args.celeba).exists():
            print(f"error: {args.celeba} does not exist", file=sys.stderr)
            return 2
        _run_kedro(args.env, "ingest,faces,masks,split", {"ingest": {"celeba_path": str(Path(args.celeba).resolve())}})

    backup = Path(tempfile.mkdtemp(prefix="unmask-ablation-"))
    saved = [p for p in OUTPUTS if p.exists()]
    for p in saved:
        shutil.copy2(p, backup / p.name)
    rows: list[dict] = []
    try:
        trained: dict[str, float] = {}  # variant -> training minutes
        for name in names:
            variant = VARIANTS[name]
            epochs = args.paper_epochs if name == "paper" else args.epochs
            started = time.perf_counter()
            runtime = {**extra, "evaluate": {**extra.get("evaluate", {}), **variant.evaluate}}
            if variant.reuses:
                print(f"== {name}: {variant.description} (re-evaluating {variant.reuses})", flush=True)
                _run_kedro(args.env, "evaluate", runtime)
                train_minutes = trained[variant.reuses]
            else:
                train = {**variant.train, "epochs": epochs, "early_stopping_patience": epochs, "resume": False,
                         "checkpoint_dir": str(backup / "checkpoints")}
                print(f"== {name}: {variant.description} ({epochs} epochs)", flush=True)
                _run_kedro(args.env, "train,evaluate", {**runtime, "train": {**extra.get("train", {}), **train}})
                history = (ROOT / "data" / "07_model_output" / "training_history.csv").read_text().splitlines()
                header = history[0].split(",")
                train_minutes = sum(float(line.split(",")[header.index("epoch_seconds")]) for line in history[1:]) / 60
                trained[name] = train_minutes
            metrics = json.loads((REPORTS / "metrics.json").read_text())
            keep = REPORTS / "ablation" / name
            keep.mkdir(parents=True, exist_ok=True)
            for file in KEPT:
                shutil.copy2(REPORTS / file, keep / file)
            row = _row(name, variant.description, metrics, train_minutes,
                       list(variant.train.get("holdout_styles", [])), variant.compare_with)
            rows.append(row)
            print(f"   {name}: PSNR in mask {row['psnr_mask']:.2f} dB, SSIM in mask {row['ssim_mask']:.4f}, "
                  f"PSNR {row['psnr']:.2f} dB, SSIM {row['ssim']:.4f} ({(time.perf_counter() - started) / 60:.1f} min)",
                  flush=True)
    finally:
        for p in saved:
            shutil.copy2(backup / p.name, p)
        shutil.rmtree(backup, ignore_errors=True)
    text = _table(rows, args.epochs, args.paper_epochs)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
