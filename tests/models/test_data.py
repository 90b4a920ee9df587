"""Tests for unmask.models.data: the epoch sampler (order, flips, sharding), flipped samples, fresh masks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from unmask.imaging.mask_renderer import image_seed, rasterize_mask, sample_mask_spec
from unmask.models.data import (
    EpochSampler,
    FreshlyMaskedFaceDataset,
    FreshMasks,
    PairedFaceDataset,
    TrainingData,
)


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


def test_a_sampler_with_epoch_adds_it_to_each_pair() -> None:
    plain = EpochSampler(6, shuffle=True, flip=True, seed=2)
    tagged = EpochSampler(6, shuffle=True, flip=True, seed=2, with_epoch=True)
    assert _pairs(tagged, 3) == [(i, f, 3) for i, f in _pairs(plain, 3)]


# --------------------------------------------------------------------------- fresh masks

# five landmarks of a 32 px aligned face, x then y
LANDMARKS = (11.0, 12.0, 21.0, 12.0, 16.0, 18.0, 12.0, 23.0, 20.0, 23.0)


def _crop(size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(60, 200, (size, size, 3), dtype=np.uint8)


def test_fresh_masks_are_a_function_of_seed_id_and_epoch() -> None:
    fresh = FreshMasks({"000001": LANDMARKS, "000002": LANDMARKS}, seed=0, styles=["surgical", "cloth"])
    crop = _crop()
    masked, target, mask = fresh("000001", crop, epoch=1)
    assert target is crop  # no degradation drawn: the target is the face itself
    again, _, _ = FreshMasks({"000001": LANDMARKS}, seed=0, styles=["surgical", "cloth"])("000001", crop, epoch=1)
    assert np.array_equal(masked, again)
    assert not np.array_equal(masked, fresh("000001", crop, epoch=2)[0])
    assert not np.array_equal(masked, fresh("000002", crop, epoch=1)[0])
    # the renderer's contract: exactly the pixels of the map change
    changed = (masked != crop).any(axis=2)
    assert mask.any() and not changed[mask == 0].any()
    # the map is that of the spec drawn from variant `epoch` of the image's seed
    points = np.asarray(LANDMARKS, np.float32).reshape(5, 2)
    rng = np.random.default_rng(image_seed(0, "000001", variant=1))
    spec = sample_mask_spec(points, 32, rng, ["surgical", "cloth"])
    assert np.array_equal(mask, rasterize_mask(spec, 32))


def test_fresh_masks_reject_incomplete_landmarks_and_empty_styles() -> None:
    with pytest.raises(ValueError, match="landmarks"):
        FreshMasks({"a": LANDMARKS[:8]}, seed=0, styles=["cloth"])
    with pytest.raises(ValueError, match="landmarks"):
        FreshMasks({"a": (float("nan"),) * 10}, seed=0, styles=["cloth"])
    with pytest.raises(ValueError, match="style"):
        FreshMasks({"a": LANDMARKS}, seed=0, styles=[])


def test_freshly_masked_samples_follow_the_epoch_and_flip_with_their_mask() -> None:
    crop = _crop()
    fresh = FreshMasks({"a": LANDMARKS}, seed=0, styles=["kn95"])
    dataset = FreshlyMaskedFaceDataset(["a"], {"a": lambda: Image.fromarray(crop)}, fresh, with_mask=True)
    masked, clean, mask = dataset[(0, False, 4)]
    expected_masked, _, expected_mask = fresh("a", crop, 4)
    assert torch.equal(masked, torch.from_numpy(expected_masked).permute(2, 0, 1).float() / 255)
    assert torch.equal(clean, torch.from_numpy(crop).permute(2, 0, 1).float() / 255)
    assert mask.shape == (1, 32, 32) and torch.equal(mask[0], torch.from_numpy(expected_mask).float())
    flipped = dataset[(0, True, 4)]
    assert all(torch.equal(f, t.flip(-1)) for f, t in zip(flipped, (masked, clean, mask)))
    assert not torch.equal(dataset[(0, False, 5)][0], masked)
    assert len(FreshlyMaskedFaceDataset(["a"], {"a": lambda: Image.fromarray(crop)}, fresh)[0]) == 2
    with pytest.raises(KeyError, match="--pipelines=faces"):
        FreshlyMaskedFaceDataset(["a", "b"], {"a": lambda: crop, "b": lambda: crop}, fresh)


def test_a_clean_fraction_of_one_shows_every_face_unmasked_with_an_empty_map() -> None:
    crop = _crop()
    fresh = FreshMasks({"a": LANDMARKS}, seed=0, styles=["cloth"], clean_fraction=1.0)
    for epoch in (1, 2, 3):
        masked, target, mask = fresh("a", crop, epoch)
        assert np.array_equal(masked, crop) and np.array_equal(target, crop) and not mask.any()


def test_about_the_clean_fraction_of_draws_are_unmasked() -> None:
    ids = {f"{i:06d}": LANDMARKS for i in range(200)}
    fresh = FreshMasks(ids, seed=0, styles=["surgical"], clean_fraction=0.25)
    crop = _crop()
    clean = sum(not fresh(i, crop, 1)[2].any() for i in ids)
    assert 30 <= clean <= 70


def test_new_materials_change_only_the_masked_pixels_and_depend_on_the_draw() -> None:
    crop, donor = _crop(), _crop()[::-1].copy()
    plain = FreshMasks({"a": LANDMARKS}, seed=0, styles=["surgical"])
    varied = FreshMasks({"a": LANDMARKS}, seed=0, styles=["surgical"], material_fraction=1.0)
    rendered, _, mask = plain("a", crop, 1)
    masked, target, same_mask = varied("a", crop, 1, donor)
    assert np.array_equal(mask, same_mask) and target is crop
    assert not np.array_equal(masked, rendered)  # a new material ...
    assert np.array_equal(masked[mask == 0], crop[mask == 0])  # ... inside the map only
    assert np.array_equal(masked, varied("a", crop, 1, donor)[0])


def test_degraded_pairs_stay_identical_away_from_the_mask() -> None:
    from unmask.imaging.mask_appearance import degrade_pair

    crop = _crop(64)
    masked = crop.copy()
    masked[10:20, 10:20] = 255
    rng_seeds = range(40)
    saw_change = False
    for seed in rng_seeds:
        a, b = degrade_pair(masked, crop, np.random.default_rng(seed))
        assert a.shape == b.shape == crop.shape and a.dtype == b.dtype == np.uint8
        saw_change |= not np.array_equal(b, crop)
        # beyond the blur's reach and the JPEG blocks (16 px with chroma subsampling, whose decoder
        # interpolates one row further) of the changed
        # square, input and target got the same degradation, noise field included
        assert np.array_equal(a[40:], b[40:])
    assert saw_change


def test_variety_fractions_are_checked() -> None:
    with pytest.raises(ValueError, match="clean_fraction"):
        FreshMasks({"a": LANDMARKS}, seed=0, styles=["cloth"], clean_fraction=1.5)
    with pytest.raises(ValueError, match="degrade_fraction"):
        FreshMasks({"a": LANDMARKS}, seed=0, styles=["cloth"], degrade_fraction=True)


def _cutout(size: int = 48) -> np.ndarray:
    """An RGBA mask cut-out in the canonical frame: a dark blue lower-face patch, soft-edged."""
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., :3] = (20, 40, 120)
    alpha = np.zeros((size, size), np.float32)
    alpha[int(size * 0.55):int(size * 0.95), int(size * 0.2):int(size * 0.8)] = 255
    rgba[..., 3] = cv2.GaussianBlur(alpha, (0, 0), 1.0).astype(np.uint8)
    return rgba


def test_real_cutouts_are_pasted_inside_their_map_only() -> None:
    from unmask.imaging.mask_appearance import paste_cutout

    crop = _crop()
    for seed in range(10):
        masked, mask = paste_cutout(crop, _cutout(), np.random.default_rng(seed))
        changed = (masked != crop).any(axis=2)
        assert 0.15 < mask.mean() < 0.5 and changed.any()
        assert not changed[mask == 0].any()
        assert masked[mask > 0].mean(axis=0)[2] > masked[mask > 0].mean(axis=0)[0]  # blue: the cut-out's colour
    with pytest.raises(ValueError, match="RGBA"):
        paste_cutout(crop, _cutout()[..., :3], np.random.default_rng(0))


def test_a_cutout_fraction_of_one_draws_only_real_masks() -> None:
    crop = _crop()
    fresh = FreshMasks({"a": LANDMARKS}, seed=0, styles=["surgical"], cutouts=[_cutout()], cutout_fraction=1.0)
    for epoch in (1, 2):
        masked, _, mask = fresh("a", crop, epoch)
        assert masked[mask > 0].mean(axis=0)[2] > masked[mask > 0].mean(axis=0)[0]
    assert "cutouts=1:" in fresh.digest_text()
    with pytest.raises(ValueError, match="needs mask cut-outs"):
        FreshMasks({"a": LANDMARKS}, seed=0, styles=["surgical"], cutout_fraction=0.5)
    with pytest.raises(ValueError, match="RGBA"):
        FreshMasks({"a": LANDMARKS}, seed=0, styles=["surgical"], cutouts=[crop], cutout_fraction=0.5)


def test_training_data_fingerprints_the_split_and_the_fresh_masks() -> None:
    crops = {i: (lambda: Image.new("RGB", (32, 32))) for i in ("a", "b", "c")}
    data = TrainingData(["a", "b"], ["c"], crops, crops)
    assert data.digest() == TrainingData(["a", "b"], ["c"], crops, crops).digest()
    assert data.digest() != TrainingData(["a"], ["b", "c"], crops, crops).digest()
    fresh = FreshMasks({"a": LANDMARKS, "b": LANDMARKS}, seed=0, styles=["surgical"])
    with_fresh = TrainingData(["a", "b"], ["c"], crops, crops, fresh_masks=fresh)
    assert with_fresh.digest() != data.digest()
    train, val = with_fresh.datasets()
    assert isinstance(train, FreshlyMaskedFaceDataset) and isinstance(val, PairedFaceDataset)
    assert val.image_ids == ["c"]
