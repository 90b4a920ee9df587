"""Errors that are the user's to fix (parameters, data, order of runs), told apart from bugs.

``kedro run`` / ``unmask run`` print such an error as the project's own sentence, without a
framework traceback (:mod:`unmask.cli`); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = [
    "USER_ERRORS",
    "DataError",
    "MissingInputError",
    "ParamsError",
    "UserError",
    "chain",
    "find_user_error",
]


class UserError(ValueError):
    """A mistake the user can fix; its message says what is wrong and what to do."""


class ParamsError(UserError):
    """A parameter that is unknown, missing, of the wrong type or out of range."""


class DataError(UserError):
    """Input data that exists but cannot be used as it is (an unreadable annotation file, ...)."""


class MissingInputError(FileNotFoundError):
    """An input the user must provide or make first (a dataset folder, a trained model) is absent.

    A ``FileNotFoundError`` (not a :class:`UserError`) so that existing ``except FileNotFoundError`` keep working.
    """


USER_ERRORS: tuple[type[BaseException], ...] = (UserError, MissingInputError)


def chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it was raised from or during, and so on."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def find_user_error(exc: BaseException) -> BaseException | None:
    """The user error that ``exc`` is or was raised from (Kedro wraps load errors in ``DatasetError``), else None."""
    return next((e for e in chain(exc) if isinstance(e, USER_ERRORS)), None)
