"""The project's own ``kedro`` commands (Kedro loads ``<package>.cli`` and prefers its commands).

``run`` is Kedro's ``kedro run`` with one difference: a mistake that is the user's (a bad
parameter, missing or unreadable data, no trained model, a run already in progress: the
exceptions of :mod:`unmask.errors`, and a dataset not made yet) ends the run with the project's
one-sentence message and exit status 1, without the framework's traceback. ``--verbose`` or
``UNMASK_VERBOSE=1`` shows the traceback as before (for bug reports); any other exception is a bug
and always keeps it.
``unmask run`` and every ``dvc repro`` stage go through this command too.
"""

from __future__ import annotations

import os
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run
from kedro.io.core import DatasetError

from unmask.errors import chain, find_user_error

__all__ = ["VERBOSE_ENV", "cli", "explain", "run"]

VERBOSE_ENV = "UNMASK_VERBOSE"


def _verbose(flag: bool) -> bool:
    return flag or os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def explain(exc: BaseException) -> str | None:
    """The sentence for the user when ``exc`` is their mistake, else None (a bug).

    A mistake is an exception of :mod:`unmask.errors` (Kedro may have wrapped it), or a dataset that
    fails to load because its file is not there: an earlier stage has not run yet.
    """
    mistake = find_user_error(exc)
    if mistake is not None:
        return str(mistake)
    missing = next((e for e in chain(exc) if isinstance(e, FileNotFoundError)), None)
    if missing is None or not isinstance(exc, DatasetError) or "while loading" not in str(exc):
        return None
    name = str(exc).split(":", 1)[0]
    what = f"{missing.filename} does not exist" if missing.filename else str(missing)
    return (f"Cannot load the dataset {name}: {what}. The stage that makes it has not run yet: run `kedro run` "
            f"(every stage) or `dvc repro` (the stages that are out of date) first.")


def _run(verbose: bool, **kwargs: Any) -> Any:
    try:
        return kedro_run.callback(**kwargs)
    except Exception as exc:
        message = explain(exc)
        if message is None or _verbose(verbose):
            raise
        click.secho(f"Error: {message}", err=True, fg="red", bold=True)
        click.secho(f"(The full traceback: run again with --verbose or {VERBOSE_ENV}=1.)", err=True, dim=True)
        raise click.exceptions.Exit(1) from None


run = click.Command(
    name="run",
    callback=_run,
    params=[*kedro_run.params,
            click.Option(["--verbose"], is_flag=True,
                         help=f"Show the full traceback of a mistake in parameters or data (also: {VERBOSE_ENV}=1).")],
    help=kedro_run.help,
    short_help=kedro_run.short_help,
    context_settings=kedro_run.context_settings,
)


@click.group(name="unmask")
def cli() -> None:
    """The unmask project's commands."""


cli.add_command(run)
