"""unmask.parallel: ordered chunked maps over worker processes, worker counts and chunk sizes."""

from __future__ import annotations

import pytest

from unmask.parallel import chunked, cpu_count, map_chunks, pool_args, resolve_workers


@pytest.mark.parametrize("workers", [1, 2])
def test_map_chunks_keeps_the_order(workers):
    chunks = list(chunked(range(23), 4))
    assert [len(c) for c in chunks] == [4, 4, 4, 4, 4, 3]
    assert list(map_chunks(sum, chunks, workers=workers, total=23, desc="test", progress=False)) == [
        sum(c) for c in chunks
    ]


def test_errors_in_workers_reach_the_caller():
    with pytest.raises(TypeError):
        list(map_chunks(sum, [[1, "a"]], workers=2, total=2, desc="test", progress=False))


def test_worker_counts_and_chunk_sizes():
    assert resolve_workers(None) == resolve_workers(0) == cpu_count() >= 1
    assert resolve_workers(3) == 3
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="workers"):
            resolve_workers(bad)
    assert pool_args(10, 4, 32, parallel_from=200) == (1, 32)  # too few items for worker processes
    assert pool_args(1000, 4, 32, parallel_from=200) == (4, 32)
    assert pool_args(300, 4, 32, parallel_from=200) == (4, 19)  # at least 4 chunks per worker
    assert pool_args(5000, 1, 32, parallel_from=200) == (1, 32)
