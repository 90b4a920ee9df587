"""Every Kedro environment in conf/ merges over base (as the project's settings merge them) into
parameters the nodes accept."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from unmask import settings
from unmask.params import validated
from unmask.params.evaluate import EvaluateParams
from unmask.pipelines.faces.nodes import validate_faces_params
from unmask.pipelines.ingest.nodes import _check_params as check_ingest_params
from unmask.pipelines.masks.nodes import validate_masks_params
from unmask.pipelines.split.nodes import _validate_split_params
from unmask.pipelines.train.nodes import parse_train_params

CONF = Path(__file__).resolve().parents[1] / "conf"
ENVIRONMENTS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("base", "local"))


def _parameters(env: str) -> dict:
    loader = OmegaConfigLoader(str(CONF), **{**settings.CONFIG_LOADER_ARGS, "default_run_env": env})
    return loader["parameters"]


@pytest.mark.parametrize("env", ["base", *ENVIRONMENTS])
def test_environment_parameters_are_valid(env):
    params = _parameters(env)
    check_ingest_params(params["ingest"])
    validate_faces_params(params["faces"])
    validate_masks_params(params["masks"])
    _validate_split_params(params["split"])
    parse_train_params(params["train"])
    validated(EvaluateParams, "evaluate", params["evaluate"])


def test_cpu_environment_is_the_documented_configuration():
    params = _parameters("cpu")
    assert params["ingest"]["source"] == "celeba"
    assert params["split"] == {**params["split"], "test_count": 1000, "test_pick": "last"}
    assert set(params["evaluate"]["grid_ids"]) <= {f"{i:06d}" for i in range(8001, 9001)}
    assert len(params["evaluate"]["grid_ids"]) == 16
    assert params["train"]["composite"] is True and 64 <= params["faces"]["size"] <= 128
    assert params["train"]["fresh_masks"] is True and params["evaluate"]["flip_average"] is True
    assert params["train"]["batch_norm"] is True
