"""Kedro project settings. kedro-mlflow registers its hooks itself through its plugin entry point."""

from kedro.config import OmegaConfigLoader

from unmask.mlflow_hooks import MlflowRunHooks

# Around kedro-mlflow's hooks: run names, the git commit tag and the logged model (unmask.mlflow_hooks).
HOOKS = (MlflowRunHooks(),)

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
