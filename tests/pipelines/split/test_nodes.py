import pandas as pd
import pytest

from tests.conftest import base_params
from unmask.pipelines.split.nodes import split_dataset

PARAMS = base_params("split", test_count=20, test_pick="random", val_fraction=0.2, seed=0, identity_disjoint=True)


def _tables(n: int, images_per_identity: int | None = 3):
    ids = [f"{i:06d}" for i in range(1, n + 1)]
    identity = [i // images_per_identity for i in range(n)] if images_per_identity else [pd.NA] * n
    index = pd.DataFrame({"image_id": ids, "identity": pd.array(identity, dtype="Int64")})
    return pd.DataFrame({"image_id": ids}), index


def test_counts_follow_test_count_then_80_20():
    metadata, index = _tables(120, images_per_identity=None)
    table, report = split_dataset(metadata, index, PARAMS)
    counts = table["split"].value_counts()
    assert counts["test"] == 20
    assert counts["val"] == 20 and counts["train"] == 80
    assert report["counts"] == {"train": 80, "val": 20, "test": 20}
    assert set(table["image_id"]) == set(metadata["image_id"])


def test_no_identity_crosses_splits():
    metadata, index = _tables(150, images_per_identity=3)
    table, report = split_dataset(metadata, index, PARAMS)
    splits_per_identity = table.groupby("identity")["split"].nunique()
    assert (splits_per_identity == 1).all()
    assert report["identity_disjoint"] is True
    # Groups of 3 cannot make exactly 20: the closest identity-disjoint fill below it is 18.
    assert report["counts"]["test"] == 18


def test_seeded_and_stable():
    metadata, index = _tables(100)
    first, _ = split_dataset(metadata, index, PARAMS)
    again, _ = split_dataset(metadata.sample(frac=1, random_state=3), index, PARAMS)
    other, _ = split_dataset(metadata, index, {**PARAMS, "seed": 1})
    pd.testing.assert_frame_equal(first, again)
    assert not first["split"].equals(other["split"])


def test_too_few_images_gives_the_numbers():
    metadata, index = _tables(15)
    with pytest.raises(ValueError, match=r"15 masked samples.*test_count=20"):
        split_dataset(metadata, index, PARAMS)


@pytest.mark.parametrize(
    "override, message",
    [({"test_count": 0}, "split.test_count=0"), ({"test_count": "10"}, "split.test_count='10'"),
     ({"val_fraction": 1.5}, "split.val_fraction=1.5"), ({"val_fraction": 0}, "split.val_fraction=0"),
     ({"test_pick": "first"}, "split.test_pick='first'.*'random' or 'last'"), ({"seed": True}, "split.seed=True"),
     ({"identity_disjoint": "yes"}, "split.identity_disjoint='yes'"),
     ({"test_size": 10}, "unknown parameter split.test_size")],
)
def test_bad_parameters_are_rejected(override, message):
    metadata, index = _tables(100)
    with pytest.raises(ValueError, match=message):
        split_dataset(metadata, index, {**PARAMS, **override})


def test_without_identities_images_split_one_by_one_and_the_report_is_json():
    import json

    metadata, index = _tables(60, images_per_identity=None)  # e.g. the 9k zip: no identity_CelebA.txt
    table, report = split_dataset(metadata, index, {**PARAMS, "test_count": 10})
    assert report["identity_disjoint"] is False
    assert report["counts"] == {"train": 40, "val": 10, "test": 10}
    assert table["identity"].isna().all() and table["image_id"].is_unique
    assert json.loads(json.dumps(report)) == report  # what the split_report JSONDataset writes


def test_test_pick_last_takes_the_highest_ids_whole_identities_included():
    metadata, index = _tables(100, images_per_identity=None)  # 000001..000100; test: 000081..000100
    table, report = split_dataset(metadata, index, {**PARAMS, "test_pick": "last"})
    assert sorted(table.loc[table["split"] == "test", "image_id"]) == [f"{i:06d}" for i in range(81, 101)]
    assert report["test_pick"] == "last" and report["counts"]["val"] == 16
    metadata, index = _tables(99, images_per_identity=3)
    table, _ = split_dataset(metadata, index, {**PARAMS, "test_pick": "last"})
    test = table.loc[table["split"] == "test"]
    assert sorted(test["image_id"]) == [f"{i:06d}" for i in range(82, 100)]  # 6 whole identities of 3
    assert (table.groupby("identity")["split"].nunique() == 1).all()
