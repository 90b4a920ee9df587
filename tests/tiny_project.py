"""A tiny copy of the project for tests that run ``kedro run`` in a subprocess, and a way to kill such a run.

``kedro(project, "--pipelines=faces", kill_at="unmask.datasets.image_partitions:write_png:10")`` runs
``kedro run`` whose process SIGKILLs itself on the 10th call of that function (``:after`` kills once the
call returned; ``:raise`` raises a RuntimeError, a bug, instead), so a kill lands at the same point on
every machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("01_raw", "02_intermediate", "03_primary", "04_feature", "05_model_input", "06_models",
          "07_model_output", "08_reporting")
# The tests' environment, conf/test (48 demo images at 32x32, one epoch of a very narrow RA-UNet), with
# data loading in the main process: a SIGKILL then lands in the one process that writes.
TEST_ENV = "test"
EXTRA = {"train": {"num_workers": 0}}

# Run as a script: patch KILL_AT (module:attribute.path:N[:after|:raise]) to SIGKILL this process (or raise),
# then be `kedro`.
_KILLER = '''
import functools, importlib, os, signal, sys
module, path, n, *when = os.environ["UNMASK_TEST_KILL_AT"].split(":")
owner = importlib.import_module(module)
*parents, name = path.split(".")
for part in parents:
    owner = getattr(owner, part)
original, calls, after = getattr(owner, name), [0], when == ["after"]
@functools.wraps(original)
def killing(*args, **kwargs):
    calls[0] += 1
    if calls[0] == int(n) and when == ["raise"]:
        raise RuntimeError("injected bug")
    if calls[0] == int(n) and not after:
        os.kill(os.getpid(), signal.SIGKILL)
    result = original(*args, **kwargs)
    if calls[0] == int(n):
        os.kill(os.getpid(), signal.SIGKILL)
    return result
setattr(owner, name, killing)
from kedro.framework.cli.cli import main
sys.argv = ["kedro", *sys.argv[1:]]
main()
'''


def copy_project(root: Path) -> Path:
    """The project's configuration, ``pyproject.toml`` and empty data layers under ``root`` (no code: runs
    import the tested checkout)."""
    shutil.copytree(REPO / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    for name in ("pyproject.toml", ".telemetry"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, root / name)
    (root / "src").mkdir()  # Kedro wants one; the code comes from the tested checkout (PYTHONPATH)
    for layer in LAYERS:
        (root / "data" / layer).mkdir(parents=True)
    return root


def make_project(root: Path, overrides: dict | None = None) -> Path:
    """:func:`copy_project`, its ``conf/test`` with ``EXTRA`` and ``overrides`` merged per group."""
    copy_project(root)
    test_params = root / "conf" / TEST_ENV / "parameters.yml"
    params = yaml.safe_load(test_params.read_text(encoding="utf-8"))
    for group, values in [*EXTRA.items(), *(overrides or {}).items()]:
        params[group] = {**params.get(group, {}), **values}
    test_params.write_text(yaml.safe_dump(params), encoding="utf-8")
    return root


def env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess run: no telemetry, this checkout's code first on the path."""
    path = os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    base = {key: value for key, value in os.environ.items() if key != "UNMASK_VERBOSE"}
    return {**base, "KEDRO_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": path, "COLUMNS": "200", **extra}


def kedro(project: Path, *args: str, kill_at: str | None = None, command: tuple[str, ...] | None = None,
          timeout: float = 600, **extra_env: str) -> subprocess.CompletedProcess:
    """``kedro run --env=test *args`` in ``project`` (``command`` replaces ``kedro run``); see the module doc."""
    if kill_at:
        head = [sys.executable, "-c", _KILLER, "run"]
        extra_env = {**extra_env, "UNMASK_TEST_KILL_AT": kill_at}
    else:
        head = list(command) if command else [sys.executable, "-m", "kedro", "run"]
    return subprocess.run([*head, f"--env={TEST_ENV}", *args], check=False, cwd=project, env=env(**extra_env),
                          capture_output=True,
                          text=True, timeout=timeout)
