"""unmask.models.distributed: device checks, the single-process path and the replicas' agreement check.

The spawned two-process run itself is tested through the train node (tests/pipelines/train).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unmask.models import save_training_state
from unmask.models.distributed import (
    all_reduce_sum,
    check_device,
    collect_rank_results,
    process_group,
    rank_device,
)


def test_one_process_needs_no_process_group_and_sums_nothing():
    device = torch.device("cpu")
    with process_group(device, 0, 1, None):
        assert not torch.distributed.is_initialized()
    assert all_reduce_sum([1.5, 2.0], device, distributed=False) == [1.5, 2.0]
    assert rank_device("cpu", 1, 2) == device


def test_a_device_ddp_cannot_spread_over_is_refused():
    with pytest.raises(ValueError, match="names one GPU"):
        check_device("cuda:1", 2)
    with pytest.raises(ValueError, match="Apple MPS"):
        check_device("mps", 2)
    check_device("cpu", 2)


def _summary(rank: int, weight: torch.Tensor) -> dict:
    return {"rank": rank, "final_state": {"w": weight}, "parameter_names": ["w"]}


def test_replicas_that_diverged_are_reported(tmp_path: Path):
    save_training_state(tmp_path / "rank0.pt", _summary(0, torch.ones(2)))
    save_training_state(tmp_path / "rank1.pt", _summary(1, torch.ones(2)))
    assert [r["rank"] for r in collect_rank_results(str(tmp_path), 2)] == [0, 1]
    save_training_state(tmp_path / "rank1.pt", _summary(1, torch.tensor([1.0, 2.0])))
    with pytest.raises(RuntimeError, match="parameter 'w' differs between rank 0 and rank 1"):
        collect_rank_results(str(tmp_path), 2)
