"""unmask.parallel: ordered chunked maps over worker processes or threads, worker counts and chunk sizes."""

from __future__ import annotations

import threading

import pytest

from unmask.parallel import chunked, cpu_count, map_chunks, pool_args, resolve_workers


@pytest.mark.parametrize("threads", [False, True])
@pytest.mark.parametrize("workers", [1, 2])
def test_map_chunks_keeps_the_order(workers, threads):
    chunks = list(chunked(range(23), 4))
    assert [len(c) for c in chunks] == [4, 4, 4, 4, 4, 3]
    assert list(map_chunks(sum, chunks, workers=workers, total=23, desc="test", progress=False, threads=threads)) == [
        sum(c) for c in chunks
    ]


@pytest.mark.parametrize("threads", [False, True])
def test_errors_in_workers_reach_the_caller(threads):
    with pytest.raises(TypeError):
        list(map_chunks(sum, [[1, "a"]], workers=2, total=2, desc="test", progress=False, threads=threads))


def test_threads_keep_a_bounded_number_of_chunks_in_flight():
    pulled, gate = [], threading.Event()

    def chunks():
        for k in range(20):
            pulled.append(k)
            yield [k]

    def slow(chunk):
        gate.wait(5)
        return chunk[0]

    results = map_chunks(slow, chunks(), workers=2, total=20, desc="test", progress=False, threads=True)
    threading.Timer(0.2, gate.set).start()
    assert next(results) == 0
    assert len(pulled) <= 7  # 3 x 2 workers in flight, plus at most the one submitted after the first result
    assert list(results) == list(range(1, 20))


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
