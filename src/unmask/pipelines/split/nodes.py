"""Test / train / validation split: seeded, stable, and identity-disjoint when identities are known."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from unmask.errors import ParamsError
from unmask.params import validated
from unmask.params.split import SplitParams

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


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


def _samples(mask_metadata: pd.DataFrame, celeba_index: pd.DataFrame) -> pd.DataFrame:
    """One row per masked image (``image_id``, ``identity``), sorted by id so that the split ignores input order."""
    ids = mask_metadata["image_id"].astype(str)
    samples = pd.DataFrame({"image_id": ids}).merge(
        celeba_index[["image_id", "identity"]].astype({"image_id": str}), on="image_id", how="left"
    )
    return samples.drop_duplicates("image_id").sort_values("image_id", kind="stable").reset_index(drop=True)


def _require_enough(n_total: int, test_count: int) -> None:
    """Fail with the numbers unless one training and one validation image remain beyond the test set."""
    if n_total < test_count + 2:
        raise ParamsError(
            f"Too few images for the requested split: {n_total} masked samples, but split.test_count="
            f"{test_count} needs at least {test_count + 2} (the test set plus one train and one val image). "
            f"Lower split.test_count (e.g. --params split.test_count={max(1, n_total // 5)}) or ingest more images."
        )


def _groups(samples: pd.DataFrame, by_identity: bool) -> np.ndarray | pd.api.extensions.ExtensionArray:
    """The unit kept inside one split: the identity when grouping by it, else the image itself."""
    own = "img:" + samples["image_id"]
    if not by_identity:
        return own.values
    # Images without a known identity are their own group, so they never tie other images together.
    return samples["identity"].astype("string").where(samples["identity"].notna(), own).values


def _assign(samples: pd.DataFrame, settings: SplitParams) -> np.ndarray:
    """``test``, ``val`` or ``train`` per sample: whole groups, test first, then val from the rest."""
    rng = np.random.default_rng(settings.seed)
    sizes = samples.groupby("group", sort=True).size()
    if settings.test_pick == "last":
        # whole groups, latest first image id first (sizes is sorted by group, not by id)
        first_id = samples.groupby("group", sort=True)["image_id"].min().to_numpy()
        test_order = np.argsort(first_id, kind="stable")[::-1]
    else:
        test_order = rng.permutation(len(sizes))
    test_groups = _sample_groups(sizes, settings.test_count, test_order)

    rest_sizes = sizes[~sizes.index.isin(test_groups)]
    val_target = max(1, round(int(rest_sizes.sum()) * settings.val_fraction))
    val_groups = _sample_groups(rest_sizes, val_target, rng.permutation(len(rest_sizes)))
    in_test, in_val = samples["group"].isin(test_groups), samples["group"].isin(val_groups)
    return np.where(in_test, "test", np.where(in_val, "val", "train"))


def _check_counts(counts: pd.Series, n_total: int, test_count: int) -> None:
    """Fail on an empty train or val set; warn when whole identities made test smaller than asked."""
    if counts["train"] == 0 or counts["val"] == 0:
        raise ParamsError(
            f"The split left an empty set (train={counts['train']}, val={counts['val']}, test={counts['test']}) "
            f"from {n_total} images: use more images or a smaller split.test_count."
        )
    if counts["test"] != test_count:
        logger.warning(
            "Identity-disjoint split: test holds %d images instead of the requested %d because whole "
            "identities are kept together.", counts["test"], test_count,
        )


def _report(samples: pd.DataFrame, counts: pd.Series, by_identity: bool, settings: SplitParams) -> dict:
    """The ``split_report`` JSON: counts, fractions and identities per split, and the settings used."""
    n_total = len(samples)
    return {
        "n_images": n_total,
        "counts": {name: int(counts[name]) for name in SPLITS},
        "fractions": {name: round(float(counts[name]) / n_total, 4) for name in SPLITS},
        "requested_test_count": settings.test_count,
        "val_fraction_of_rest": round(float(counts["val"]) / max(1, counts["val"] + counts["train"]), 4),
        "identity_disjoint": by_identity,
        "n_identities": {
            name: int(samples.loc[samples["split"] == name, "identity"].nunique()) for name in SPLITS
        },
        "seed": settings.seed,
        "test_pick": settings.test_pick,
    }


def split_dataset(mask_metadata: pd.DataFrame, celeba_index: pd.DataFrame, params: dict) -> tuple[pd.DataFrame, dict]:
    """Assign every masked sample to ``test``, ``train`` or ``val``; return the table and a report."""
    settings = validated(SplitParams, "split", params)
    samples = _samples(mask_metadata, celeba_index)
    _require_enough(len(samples), settings.test_count)
    by_identity = settings.identity_disjoint and bool(samples["identity"].notna().any())
    samples["group"] = _groups(samples, by_identity)
    samples["split"] = _assign(samples, settings)
    counts = samples["split"].value_counts().reindex(SPLITS, fill_value=0)
    _check_counts(counts, len(samples), settings.test_count)
    report = _report(samples, counts, by_identity, settings)
    logger.info("Split %d images: %s", len(samples), report["counts"])
    table = samples[["image_id", "identity", "split"]].astype({"identity": "Int64"})
    return table, report
