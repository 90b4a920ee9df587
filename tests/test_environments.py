"""Every Kedro environment in conf/ merges over base (as the project's settings merge them) into
parameters each group's declared schema accepts; the renamed ``cpu`` environment still runs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from unmask import settings
from unmask.params import schema_for, validated

CONF = Path(__file__).resolve().parents[1] / "conf"
ENVIRONMENTS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("base", "local"))
GROUPS = sorted(p.stem.removeprefix("parameters_") for p in (CONF / "base").glob("parameters_*.yml"))


def _parameters(env: str) -> dict:
    loader = settings.CONFIG_LOADER_CLASS(str(CONF), **{**settings.CONFIG_LOADER_ARGS, "default_run_env": env})
    return loader["parameters"]


@pytest.mark.parametrize("env", ["base", *ENVIRONMENTS])
@pytest.mark.parametrize("group", GROUPS)
def test_environment_parameters_are_valid(env, group):
    validated(schema_for(group), group, _parameters(env)[group])


def test_every_environment_is_known():
    assert {"celeba", "celeba_sample", "test"} <= set(ENVIRONMENTS) and "cpu" not in ENVIRONMENTS


def test_celeba_sample_environment_is_the_documented_configuration():
    params = _parameters("celeba_sample")
    assert params["ingest"]["source"] == "celeba"
    assert params["split"] == {**params["split"], "test_count": 1000, "test_pick": "last"}
    assert set(params["evaluate"]["grid_ids"]) <= {f"{i:06d}" for i in range(8001, 9001)}
    assert len(params["evaluate"]["grid_ids"]) == 16
    assert params["train"]["composite"] is True and 64 <= params["faces"]["size"] <= 128
    assert params["train"]["fresh_masks"] is True and params["evaluate"]["flip_average"] is True
    assert params["train"]["batch_norm"] is True


@pytest.mark.parametrize("argument", ["env", "default_run_env"])
def test_the_old_cpu_name_runs_celeba_sample_with_a_deprecation_warning(argument, caplog):
    args = {**settings.CONFIG_LOADER_ARGS, argument: "cpu"}
    with caplog.at_level(logging.WARNING, logger="unmask.settings"):
        loader = settings.CONFIG_LOADER_CLASS(str(CONF), **args)
    assert loader["parameters"] == _parameters("celeba_sample")
    (record,) = [r for r in caplog.records if r.name == "unmask.settings"]
    assert "--env=cpu is deprecated" in record.getMessage() and "--env=celeba_sample" in record.getMessage()


def test_other_environments_load_without_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="unmask.settings"):
        settings.CONFIG_LOADER_CLASS(str(CONF), env="celeba", **settings.CONFIG_LOADER_ARGS)["parameters"]
    assert not [r for r in caplog.records if r.name == "unmask.settings"]


def test_the_test_environment_is_tiny():
    params = _parameters("test")
    assert params["ingest"]["source"] == "demo" and params["ingest"]["demo_images"] <= 64
    assert params["faces"]["size"] == 32 and params["train"]["epochs"] == 1
    assert params["train"]["filters"] == [4, 8, 16]
