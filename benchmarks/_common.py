"""What the data benchmarks share: the check of --celeba and the quiet-unless-verbose logging."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


def celeba_path_exists(script: str, path: Path) -> bool:
    """True when ``path`` exists; otherwise say so on stderr (the caller exits with status 2)."""
    if path.exists():
        return True
    print(f"{script}: --celeba {path} does not exist: point it at a CelebA folder or zip "
          f"(e.g. img_align_celeba.zip).", file=sys.stderr)
    return False


def configure_logging(verbose: bool) -> None:
    """INFO logs and progress bars with ``--verbose``, warnings only without."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        os.environ.setdefault("TQDM_DISABLE", "1")
