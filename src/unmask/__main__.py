"""Entry point of the ``unmask`` console script and of ``python -m unmask``.

``unmask predict INPUT... -o OUTDIR`` restores photos (:mod:`unmask.commands`); ``unmask run [options]``
and plain ``unmask [options]`` are the project's ``kedro run``, as before.
"""

from __future__ import annotations

import sys
from typing import Any

from unmask.commands import cli


def main(*args: Any, **kwargs: Any) -> Any:
    """Run the ``unmask`` command line (``main(["--pipelines=evaluate"])`` works as with Kedro's template)."""
    kwargs.setdefault("standalone_mode", not hasattr(sys, "ps1"))
    return cli.main(*args, prog_name="unmask", **kwargs)


if __name__ == "__main__":
    main()
