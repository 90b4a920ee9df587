"""Test / train / validation split: seeded, stable, and identity-disjoint when identities are known."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
#: How test images are chosen: ``random`` (seeded) or ``last``: the highest image ids (a fixed,
#: documented test set such as 008001-009000 of a 9,000-image sample).
TEST_PICKS = ("random", "last")


def _validate_split_params(params: dict) -> None:
    test_count = params.get("test_count")
    if not isinstance(test_count, int) or isinstance(test_count, bool) or test_count < 1:
        raise ValueError(f"split.test_count must be a positive integer, got {test_count!r}.")
    val_fraction = params.get("val_fraction")
    if not isinstance(val_fraction, (int, float)) or not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"split.val_fraction must be a number strictly between 0 and 1, got {val_fraction!r}.")
    pick = params.get("test_pick", "random")
    if pick not in TEST_PICKS:
        raise ValueError(f"split.test_pick must be one of {', '.join(TEST_PICKS)}, got {pick!r}.")


def _sample_groups(sizes: pd.Series, target: int, order: np.ndarray) -> set:
    """Pick whole groups, in the seeded ``order``, until they hold exactly ``target`` images if possible.

    Groups that would overshoot are skipped so that smaller ones later in the order can fill the
    remainder; the result is at most ``target`` images and usually exactly that many.
    """
    chosen: set = set()
    total = 0
    for key in sizes.index[order]:
        size = int(sizes[key])
        if total + size <= target:
            chosen.add(key)
            total += size
            if total == target:
                break
    return chosen


def split_dataset(mask_metadata: pd.DataFrame, celeba_index: pd.DataFrame, params: dict) -> tuple[pd.DataFrame, dict]:
    """Assign every masked sample to ``test``, ``train`` or ``val``; return the table and a report."""
    _validate_split_params(params)
    ids = mask_metadata["image_id"].astype(str)
    samples = pd.DataFrame({"image_id": ids}).merge(
        celeba_index[["image_id", "identity"]].astype({"image_id": str}), on="image_id", how="left"
    )
    samples = samples.drop_duplicates("image_id").sort_values("image_id", kind="stable").reset_index(drop=True)
    n_total = len(samples)
    test_count = int(params["test_count"])
    val_fraction = float(params["val_fraction"])

    # Need at least one training and one validation image beyond the test set.
    if n_total < test_count + 2:
        raise ValueError(
            f"Too few images for the requested split: {n_total} masked samples, but split.test_count="
            f"{test_count} needs at least {test_count + 2} (the test set plus one train and one val image). "
            f"Lower split.test_count (e.g. --params split.test_count={max(1, n_total // 5)}) or ingest more images."
        )

    identities_known = bool(params.get("identity_disjoint", True)) and bool(samples["identity"].notna().any())
    # Images without a known identity are their own group, so they never tie other images together.
    group = samples["identity"].astype("string")
    group = group.where(samples["identity"].notna(), "img:" + samples["image_id"])
    samples["group"] = group.values if identities_known else ("img:" + samples["image_id"]).values

    rng = np.random.default_rng(int(params.get("seed", 0)))
    sizes = samples.groupby("group", sort=True).size()
    if params.get("test_pick", "random") == "last":
        # whole groups, latest first image id first (sizes is sorted by group, not by id)
        first_id = samples.groupby("group", sort=True)["image_id"].min().to_numpy()
        test_order = np.argsort(first_id, kind="stable")[::-1]
    else:
        test_order = rng.permutation(len(sizes))
    test_groups = _sample_groups(sizes, test_count, test_order)

    rest_sizes = sizes[~sizes.index.isin(test_groups)]
    n_rest = int(rest_sizes.sum())
    val_target = max(1, int(round(n_rest * val_fraction)))
    val_groups = _sample_groups(rest_sizes, val_target, rng.permutation(len(rest_sizes)))

    samples["split"] = np.where(
        samples["group"].isin(test_groups), "test", np.where(samples["group"].isin(val_groups), "val", "train")
    )
    counts = samples["split"].value_counts().reindex(SPLITS, fill_value=0)
    if counts["train"] == 0 or counts["val"] == 0:
        raise ValueError(
            f"The split left an empty set (train={counts['train']}, val={counts['val']}, test={counts['test']}) "
            f"from {n_total} images: use more images or a smaller split.test_count."
        )
    if counts["test"] != test_count:
        logger.warning(
            "Identity-disjoint split: test holds %d images instead of the requested %d because whole "
            "identities are kept together.", counts["test"], test_count,
        )

    report = {
        "n_images": n_total,
        "counts": {name: int(counts[name]) for name in SPLITS},
        "fractions": {name: round(float(counts[name]) / n_total, 4) for name in SPLITS},
        "requested_test_count": test_count,
        "val_fraction_of_rest": round(float(counts["val"]) / max(1, counts["val"] + counts["train"]), 4),
        "identity_disjoint": identities_known,
        "n_identities": {
            name: int(samples.loc[samples["split"] == name, "identity"].nunique()) for name in SPLITS
        },
        "seed": int(params.get("seed", 0)),
        "test_pick": params.get("test_pick", "random"),
    }
    logger.info("Split %d images: %s", n_total, report["counts"])
    table = samples[["image_id", "identity", "split"]].astype({"identity": "Int64"})
    return table, report
