"""Tests for unmask.models.data: the epoch sampler (order, flips, sharding) and flipped samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from unmask.models.data import EpochSampler, PairedFaceDataset


def _pairs(sampler: EpochSampler, epoch: int) -> list[tuple[int, bool]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_order_and_flips_depend_only_on_seed_and_epoch() -> None:
    a = EpochSampler(50, shuffle=True, flip=True, seed=3)
    b = EpochSampler(50, shuffle=True, flip=True, seed=3)
    assert _pairs(a, 1) == _pairs(b, 1)
    assert _pairs(a, 1) != _pairs(a, 2)
    assert _pairs(a, 1) != _pairs(EpochSampler(50, shuffle=True, flip=True, seed=4), 1)
    indices = [i for i, _ in _pairs(a, 1)]
    assert sorted(indices) == list(range(50)) and indices != list(range(50))
    flips = [f for _, f in _pairs(a, 1)]
    assert 10 < sum(flips) < 40


def test_no_shuffle_no_flip_is_the_plain_order() -> None:
    sampler = EpochSampler(5, shuffle=False, flip=False)
    assert _pairs(sampler, 7) == [(i, False) for i in range(5)]


@pytest.mark.parametrize("size", [10, 11])
def test_ranks_get_disjoint_shares_that_cover_the_epoch(size: int) -> None:
    shards = [EpochSampler(size, shuffle=True, flip=True, seed=1, rank=r, world=3, pad=True) for r in range(3)]
    seen = [[i for i, _ in _pairs(s, 2)] for s in shards]
    assert {len(s) for s in seen} == {len(shards[0])} == {-(-size // 3)}  # equal step counts for DDP
    assert set().union(*map(set, seen)) == set(range(size))
    # Only the padding repeats samples.
    assert sum(map(len, seen)) - size == len(shards[0]) * 3 - size
    unpadded = [list(EpochSampler(size, shuffle=False, flip=False, rank=r, world=3)) for r in range(3)]
    assert sorted(i for share in unpadded for i, _ in share) == list(range(size))


def test_bad_sampler_arguments() -> None:
    with pytest.raises(ValueError, match="empty"):
        EpochSampler(0, shuffle=True, flip=False)
    with pytest.raises(ValueError, match="rank"):
        EpochSampler(4, shuffle=True, flip=False, rank=2, world=2)


def test_a_flipped_sample_mirrors_input_and_target_alike() -> None:
    rng = np.random.default_rng(0)
    clean, dirty = (rng.integers(0, 255, (4, 6, 3), dtype=np.uint8) for _ in range(2))
    dataset = PairedFaceDataset(["a"], {"a": lambda: Image.fromarray(dirty)}, {"a": lambda: Image.fromarray(clean)})
    masked, target = dataset[0]
    flipped_masked, flipped_target = dataset[(0, True)]
    assert torch.equal(flipped_masked, masked.flip(-1)) and torch.equal(flipped_target, target.flip(-1))
    assert torch.equal(dataset[(0, False)][0], masked)
