"""Smoke test: benchmarks/bench_model.py --quick runs end to end on a tiny network and prints its tables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_model.py"


def test_bench_model_quick_prints_table() -> None:
    cmd = [
        sys.executable, str(SCRIPT), "--quick", "--devices", "cpu", "--models", "ra_unet",
        "--sizes", "32", "--filters", "4", "8", "16", "--dtypes", "fp32", "bf16", "bf16-full",
        "--proposed",
        # One thread: with two OpenMP threads on a 2-core machine that something else is using,
        # every parallel region can wait a scheduler tick, which turns seconds into minutes.
        "--threads", "1",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(SCRIPT.parents[1] / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "CPU      :" in out and "torch    :" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("device  model"))
    assert "train s/step b2" in lines[header] and "infer s/img b1" in lines[header]
    end = lines.index("", header)
    rows = [line.split() for line in lines[header + 2:end]]
    # fp32 and bf16 as-is and proposed, bf16-full as-is and proposed (no training column).
    assert len(rows) == 6, out
    assert {row[4] for row in rows} == {"fp32", "bf16", "bf16-full"}
    for row in rows:
        assert row[3] == "0.01M"
        for cell in row[8:10]:  # inference seconds per image are numbers
            assert float(cell) >= 0.0
    quality = next(i for i, line in enumerate(lines) if "PSNR vs fp32" in line)
    variants = {" ".join(line.split()[3:-5]): line.split()[-5:] for line in lines[quality + 2:] if line.startswith("cpu ")}
    assert set(variants) == {"bf16", "bf16-full", "fp32 proposed", "bf16 proposed"}, out
    assert float(variants["bf16"][2]) > 30.0  # PSNR of bf16 vs fp32 output, even at random init
    assert float(variants["fp32 proposed"][2]) > 80.0  # the proposed changes keep fp32 maths
