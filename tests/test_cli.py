"""unmask.cli: a user's mistake ends ``kedro run`` with one sentence; --verbose shows the traceback; bugs keep it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from kedro.io.core import DatasetError

from tests.tiny_project import kedro, make_project
from unmask.cli import explain
from unmask.errors import DataError, MissingInputError, ParamsError

TRACEBACK = "Traceback (most recent call last)"


def _wrapped(inner: BaseException, outer: str) -> DatasetError:
    """``inner`` as Kedro's catalog hands it on: a DatasetError raised from it."""
    try:
        try:
            raise inner
        except BaseException as exc:
            raise DatasetError(outer) from exc
    except DatasetError as wrapped:
        return wrapped


def test_explain_tells_mistakes_from_bugs() -> None:
    assert explain(ParamsError("Bad parameters in split: split.test_count=-5: ...")).startswith("Bad parameters")
    assert explain(_wrapped(MissingInputError("model weights m.safetensors not found. Train a model first."),
                            "trained_model: Failed while loading data")) == (
        "model weights m.safetensors not found. Train a model first.")
    assert "line 3" in explain(DataError("list_eval_partition.txt, line 3: 'x' is not an integer"))
    missing = _wrapped(FileNotFoundError(2, "No such file or directory", "data/05_model_input/data_split.parquet"),
                       "data_split: Failed while loading data from dataset ParquetDataset(...)")
    sentence = explain(missing)
    assert sentence.startswith("Cannot load the dataset data_split: data/05_model_input/data_split.parquet does not "
                               "exist.") and "kedro run" in sentence
    assert explain(RuntimeError("a bug")) is None
    assert explain(ValueError("a bug that happens to be a ValueError")) is None
    assert explain(_wrapped(FileNotFoundError("x"), "face_crops: Failed while saving data")) is None


@pytest.fixture(scope="module")
def fresh_project(tmp_path_factory) -> Path:
    """A tiny project where nothing has run yet."""
    return make_project(tmp_path_factory.mktemp("fresh"))


def _one_sentence(result, *expected: str) -> None:
    assert result.returncode == 1, result.stderr[-4000:]
    output = result.stdout + result.stderr
    assert TRACEBACK not in output and "╭" not in output, output[-4000:]
    error = output[output.index("Error: "):]
    for text in expected:
        assert text in error, error
    assert "--verbose or UNMASK_VERBOSE=1" in error


@pytest.mark.slow
def test_a_missing_celeba_folder_is_one_sentence_and_verbose_shows_the_traceback(fresh_project: Path) -> None:
    args = ("--pipelines=ingest", "--params", "ingest.source=celeba,ingest.celeba_path=data/01_raw/no_such_celeba")
    _one_sentence(kedro(fresh_project, *args), "No usable CelebA at 'data/01_raw/no_such_celeba'",
                  "set `ingest.source: demo`")
    flagged = kedro(fresh_project, *args, "--verbose", command=(sys.executable, "-m", "unmask", "run"))
    assert flagged.returncode == 1 and TRACEBACK in flagged.stderr and "MissingInputError" in flagged.stderr


def test_the_environment_variable_also_asks_for_the_traceback(monkeypatch) -> None:
    from unmask.cli import VERBOSE_ENV, _verbose

    assert _verbose(True)
    for value, verbose in (("", False), ("0", False), ("no", False), ("1", True), ("yes", True)):
        monkeypatch.setenv(VERBOSE_ENV, value)
        assert _verbose(False) is verbose


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "sentence"), [
    ("evaluate", "model weights"),  # no trained model
    ("split", "Cannot load the dataset "),  # an earlier stage has not run
])
def test_running_a_stage_before_its_inputs_exist_is_one_sentence(fresh_project: Path, stage: str,
                                                                 sentence: str) -> None:
    _one_sentence(kedro(fresh_project, f"--pipelines={stage}"), sentence, "kedro run")


@pytest.mark.slow
def test_a_bad_parameter_is_one_sentence(fresh_project: Path) -> None:
    pytest.importorskip("unmask.params.split", reason="split's parameter schema (issue 15) is not in this checkout")
    _one_sentence(kedro(fresh_project, "--pipelines=split", "--params", "split.test_count=-5"),
                  "split.test_count=-5")


@pytest.mark.slow
def test_a_bug_keeps_its_traceback(fresh_project: Path) -> None:
    # the demo ingest fails while saving its index: not the user's doing
    result = kedro(fresh_project, "--pipelines=ingest", kill_at="pandas:DataFrame.to_parquet:1:raise")
    assert result.returncode == 1
    assert TRACEBACK in result.stderr and "RuntimeError: injected bug" in result.stderr
    assert "--verbose or UNMASK_VERBOSE=1" not in result.stderr
