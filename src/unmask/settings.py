"""Kedro project settings. kedro-mlflow registers its hooks itself through its plugin entry point."""

from kedro.config import OmegaConfigLoader

from unmask.run_guard import MlflowRunHooks, RunLockHooks

CONFIG_LOADER_CLASS = OmegaConfigLoader
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

# One run at a time per project, cleanup after killed runs, atomic single-file saves, MLflow runs of
# killed processes closed (unmask.run_guard).
HOOKS = (RunLockHooks(), MlflowRunHooks())
