"""Kedro project settings. kedro-mlflow registers its hooks itself through its plugin entry point."""

from __future__ import annotations

import logging

from kedro.config import OmegaConfigLoader

from unmask.mlflow_hooks import MlflowRunHooks
from unmask.params.hooks import ParamsCheckHooks
from unmask.run_guard import KilledRunHooks, RunLockHooks

# Parameters checked before anything runs (unmask.params.hooks); one run at a time per project,
# cleanup after killed runs, atomic single-file saves, MLflow runs of killed processes closed
# (unmask.run_guard); around kedro-mlflow's hooks: run names, the git commit tag and the logged
# model (unmask.mlflow_hooks).
HOOKS = (ParamsCheckHooks(), RunLockHooks(), KilledRunHooks(), MlflowRunHooks())

#: Old environment names still accepted for one release, and the environment each now means.
RENAMED_ENVIRONMENTS = {"cpu": "celeba_sample"}


class ConfigLoader(OmegaConfigLoader):
    """Kedro's ``OmegaConfigLoader`` that runs a renamed environment under its new name, with a warning."""

    def __init__(self, conf_source, env: str | None = None, *args, default_run_env: str | None = None, **kwargs):
        super().__init__(conf_source, _renamed(env), *args, default_run_env=_renamed(default_run_env), **kwargs)


def _renamed(env: str | None) -> str | None:
    """``env``, or the new name of a renamed one (logged as deprecated)."""
    if env not in RENAMED_ENVIRONMENTS:
        return env
    new = RENAMED_ENVIRONMENTS[env]
    logging.getLogger(__name__).warning(
        "--env=%s is deprecated and will be removed in the next release: use --env=%s (conf/%s).", env, new, new)
    return new


CONFIG_LOADER_CLASS = ConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"],
    },
    # An environment such as conf/celeba overrides single keys (faces.size) without restating
    # the whole group.
    "merge_strategy": {"parameters": "soft"},
}
