"""The parameter check that runs before a pipeline: the groups its nodes read, nothing else."""

from __future__ import annotations

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node

from tests.conftest import base_params
from unmask.errors import ParamsError
from unmask.params import schema_for
from unmask.params.hooks import ParamsCheckHooks, groups_read
from unmask.params.split import SplitParams


def _identity(x, params):
    return x


PIPELINE = Pipeline([node(_identity, ["a", "params:split"], "b"), node(_identity, ["b", "params:faces.size"], "c")])


def _catalog(**groups) -> DataCatalog:
    return DataCatalog({"parameters": MemoryDataset(groups)})


def test_the_groups_a_pipeline_reads_are_found_and_their_schemas_looked_up():
    assert groups_read(PIPELINE) == ["faces", "split"]
    assert schema_for("split") is SplitParams


def test_a_bad_value_in_a_group_the_pipeline_reads_stops_the_run_before_it_starts():
    good = {"split": base_params("split"), "faces": base_params("faces")}
    ParamsCheckHooks().before_pipeline_run({}, PIPELINE, _catalog(**good))
    bad = {**good, "split": base_params("split", test_count=-5)}
    with pytest.raises(ParamsError, match=r"split\.test_count=-5"):
        ParamsCheckHooks().before_pipeline_run({}, PIPELINE, _catalog(**bad))
    # a group no node of this pipeline reads is the business of the run that reads it
    ParamsCheckHooks().before_pipeline_run({}, PIPELINE, _catalog(**good, train={"epochs": -1}))
