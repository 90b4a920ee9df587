"""Worker processes for the per-image work of the data stages, with a progress bar and bounded memory.

One pool of ``spawn``-started worker processes per worker count is created on first use and kept
for the life of the process, so the stages of one ``kedro run`` (and the image layers of one stage)
pay the start-up (about a second: imports) once. Work is handed over in chunks of items, at most a
few chunks ahead of the results read back, so memory does not grow with the number of images.
Work that mostly waits on I/O or on code that releases the GIL (decoding images) can run in threads
instead (``threads=True``), which start at once.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

_pools: dict[int, ProcessPoolExecutor] = {}
_pools_lock = threading.Lock()


def cpu_count() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int | None) -> int:
    """``workers`` as a positive count (``None`` or ``0``: one per core)."""
    if workers is None or workers == 0:
        return cpu_count()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be a non-negative integer or null (one per core), got {workers!r}")
    return workers


def _init_worker() -> None:
    # One process per core already: libraries must not start threads of their own on top.
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass


def process_pool(workers: int) -> ProcessPoolExecutor:
    """The shared pool of ``workers`` worker processes (created on first use)."""
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_worker)
            _pools[workers] = pool
        return pool


def shutdown_pools() -> None:
    """Stop every shared worker pool (they are restarted on next use)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)


atexit.register(shutdown_pools)


def _drop_pool(workers: int, pool: ProcessPoolExecutor) -> None:
    with _pools_lock:
        if _pools.get(workers) is pool:
            del _pools[workers]
    pool.shutdown(wait=False, cancel_futures=True)


def _in_order(pool: Executor, fn: Callable[[Sequence[T]], R], chunks: Iterable[Sequence[T]], max_pending: int,
              bar: Any) -> Iterator[R]:
    """``fn(chunk)`` for every chunk, run in ``pool`` and read back in order, ``max_pending`` at most in flight."""
    pending: deque[tuple[Future, int]] = deque()
    chunks = iter(chunks)
    try:
        while True:
            while len(pending) < max_pending:
                chunk = next(chunks, None)
                if chunk is None:
                    break
                pending.append((pool.submit(fn, chunk), len(chunk)))
            if not pending:
                return
            future, n = pending.popleft()
            result = future.result()
            bar.update(n)
            yield result
    finally:
        for future, _ in pending:
            future.cancel()


def map_chunks(
    fn: Callable[[Sequence[T]], R],
    chunks: Iterable[Sequence[T]],
    *,
    workers: int,
    total: int,
    desc: str,
    unit: str = "img",
    progress: bool = True,
    threads: bool = False,
) -> Iterator[R]:
    """``fn(chunk)`` for every chunk, in order; in ``workers`` processes (threads if ``threads``) when ``workers > 1``.

    ``fn`` and the chunks must be picklable when they go to processes (module-level functions and
    plain data). A progress bar counts the items (``total`` in all) with their rate. At most
    ``3 * workers`` chunks are in flight. An exception raised by ``fn`` is raised here, after the
    chunks not yet started are cancelled.
    """
    from tqdm.auto import tqdm

    quiet = {} if progress else {"disable": True}  # left unset, TQDM_DISABLE=1 can still silence it
    with tqdm(total=total, desc=desc, unit=unit, mininterval=1.0, **quiet) as bar:
        if workers <= 1:
            for chunk in chunks:
                result = fn(chunk)
                bar.update(len(chunk))
                yield result
            return
        if threads:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                yield from _in_order(pool, fn, chunks, 3 * workers, bar)
            return
        pool = process_pool(workers)
        try:
            yield from _in_order(pool, fn, chunks, 3 * workers, bar)
        except BrokenProcessPool:
            _drop_pool(workers, pool)
            raise


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last one shorter)."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def pool_args(n_items: int, workers: int | None, chunk_size: int, parallel_from: int) -> tuple[int, int]:
    """``(workers, chunk size)`` for ``n_items`` items: one process below ``parallel_from`` items
    (start-up would cost more than it saves), and chunks small enough to keep every worker busy."""
    count = resolve_workers(workers)
    if n_items < max(1, parallel_from) or count <= 1:
        return 1, max(1, chunk_size)
    return count, max(1, min(chunk_size, -(-n_items // (4 * count))))

