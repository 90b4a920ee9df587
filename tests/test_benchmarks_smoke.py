"""Smoke test: benchmarks/bench_model.py --quick runs end to end on a tiny network and prints its tables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_model.py"


def _run(*extra: str) -> str:
    cmd = [
        sys.executable, str(SCRIPT), "--quick", "--devices", "cpu", "--models", "ra_unet",
        "--sizes", "32", "--filters", "4", "8", "16", "--dtypes", "fp32", "bf16",
        # One thread: with two OpenMP threads on a 2-core machine that something else is using,
        # every parallel region can wait a scheduler tick, which turns seconds into minutes.
        "--threads", "1", *extra,
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(SCRIPT.parents[1] / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _table(lines: list[str], header_start: str) -> tuple[str, list[list[str]]]:
    header = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    end = lines.index("", header)
    return lines[header], [line.split() for line in lines[header + 2:end]]


def test_bench_model_quick_prints_the_main_table_and_bf16_check() -> None:
    out = _run()
    assert "CPU      :" in out and "torch    :" in out
    lines = out.splitlines()
    header, rows = _table(lines, "device  model")
    assert "train s/step b2" in header and "infer s/img b1" in header and "infer s/img b2" in header
    assert [row[4] for row in rows] == ["fp32", "bf16"], out
    for row in rows:
        assert row[3] == "0.01M"
        for cell in row[5:8]:  # seconds per step and per image are numbers
            assert float(cell) > 0.0
    _, quality = _table(lines, "device  model    size  dtype  max|d|")
    assert [q[3] for q in quality] == ["bf16"]
    assert float(quality[0][6]) > 30.0  # PSNR of bf16 vs fp32 output, even at random init


def test_bench_model_quick_ablation_prints_ratios() -> None:
    lines = _run("--ablation", "--no-quality").splitlines()
    _, rows = _table(lines, "what")
    joined = [" ".join(r) for r in rows]
    assert any("fp32 NCHW (before)" in r and "1.00x" in r for r in joined)
    assert any("project bf16" in r for r in joined)
    assert all(r[-2].endswith("x") for r in rows)


BENCH_DATA = SCRIPT.parent / "bench_data.py"


def test_bench_data_runs_every_data_stage_on_generated_demo_data(tmp_path) -> None:
    from unmask.imaging.demo_faces import generate_demo_celeba

    demo = generate_demo_celeba(tmp_path / "demo", n_images=24, n_identities=8)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(SCRIPT.parents[1] / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = [sys.executable, str(BENCH_DATA), "--celeba", str(demo), "--limit", "20", "--size", "32",
           "--test-count", "4", "--keep", str(tmp_path / "out")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    rows = {line[:22].strip(): line[22:].split() for line in lines if line[:22].strip() in
            ("ingest", "faces", "masks", "split", "end to end (i+f+m)", "all four stages")}
    assert len(rows) == 6, done.stdout
    for name, cells in rows.items():
        images, wall, rate = int(cells[0]), float(cells[1]), float(cells[2])
        assert images == 20 and wall > 0 and rate > 0, (name, cells)
        assert float(cells[4]) > 0 and float(cells[6]) > 0, (name, cells)  # peak RSS: this process, the tree
        assert cells[5] == "-" or float(cells[5]) > -1e6, (name, cells)  # what the stage added
    assert "test': 4" in done.stdout
    assert any(line.startswith("disk") and "face_crops" in line for line in lines)
    assert any(line.startswith("CelebA") and "202,599" in line for line in lines)
    assert len(list((tmp_path / "out" / "data/04_feature/masked_faces").glob("*.png"))) == 20

    missing = subprocess.run([sys.executable, str(BENCH_DATA), "--celeba", str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=60, env=env, check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def _ablation_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ablation", SCRIPT.parent / "ablation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_ablation_rejects_bad_arguments_before_running_anything(capsys) -> None:
    import pytest

    ablation = _ablation_module()
    for argv in (["--variants", "narrow,wider"], ["--epochs", "0"], ["--params", "[1]"], ["--params", "{x"],
                 ["--variants", "flip_average,batch_norm"]):
        with pytest.raises(SystemExit) as stop:
            ablation.main(argv)
        assert stop.value.code == 2, argv
    err = capsys.readouterr().err
    assert "unknown variant(s) ['wider']" in err and "list batch_norm before them" in err


def test_ablation_table_rows_baseline_and_held_out_style() -> None:
    ablation = _ablation_module()
    metrics = {"parameters": 9_770_000, "seconds_per_image_batch1_median": 0.009, "psnr_mask": 18.4,
               "ssim_mask": 0.576, "psnr": 24.6, "ssim": 0.884, "telea_psnr_mask": 15.4, "telea_ssim_mask": 0.362,
               "by_style": {"kn95": {"psnr_mask": 18.3, "ssim_mask": 0.57, "psnr": 25.2, "ssim": 0.90}}}
    best = ablation._row("fresh_masks", "the model", metrics, 6.0, [])
    held = ablation._row("holdout", "kn95 held out", metrics, 4.9, ["kn95"], compare_with="fresh_masks")
    text = ablation._table([best, held], epochs=3, paper_epochs=2)
    assert "| `fresh_masks`: the model | 18.40 | 0.5760 | 24.60 | 0.8840 | 9.77 M | 0.009 | 6.0 |" in text
    assert "| OpenCV Telea, given the true mask | 15.40 | 0.3620 |" in text
    assert "| `holdout` (unseen) | kn95 | 18.30 |" in text
    assert "| `fresh_masks` (trained on it) | kn95 | 18.30 |" in text



def test_ablation_variants_override_known_parameters_only() -> None:
    import yaml

    conf = SCRIPT.parents[1] / "conf" / "base"
    train = yaml.safe_load((conf / "parameters_train.yml").read_text())["train"]
    evaluate = yaml.safe_load((conf / "parameters_evaluate.yml").read_text())["evaluate"]
    variants = _ablation_module().VARIANTS
    for name, variant in variants.items():
        assert set(variant.train) <= set(train) and set(variant.evaluate) <= set(evaluate), name
        assert variant.reuses is None or variant.reuses in variants, name
