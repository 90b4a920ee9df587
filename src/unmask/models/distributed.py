"""DistributedDataParallel without a launcher: ``train.devices: N > 1`` spawns N worker processes itself.

Workers meet on a free loopback port (gloo on the CPU, NCCL on CUDA), each leaves its summary in a
scratch folder, and the parent checks that the replicas ended with the same parameters.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from .checkpoint import load_training_state, save_training_state
from .devices import resolve_device

__all__ = ["all_reduce_sum", "check_device", "collect_rank_results", "process_group", "rank_device", "spawn_ranks"]

logger = logging.getLogger(__name__)

#: ``worker(rank, world, init_method)`` trains one rank and returns its summary (picklable: it is sent to the workers)
RankWorker = Callable[[int, int, "str | None"], dict[str, Any]]


def check_device(name: str, world: int) -> None:
    """Refuse ``train.device`` settings DistributedDataParallel cannot run ``world`` ranks on."""
    kind = name.split(":")[0]
    if ":" in name:
        raise ValueError(f"train.device={name!r} names one GPU but train.devices={world}; use device: cuda or auto.")
    if kind == "mps" or (kind == "auto" and not torch.cuda.is_available() and resolve_device("auto").type == "mps"):
        raise ValueError("DistributedDataParallel does not run on Apple MPS; set train.devices: 1.")
    if kind in ("cuda", "auto") and torch.cuda.is_available() and world > torch.cuda.device_count():
        raise ValueError(f"train.devices={world} but only {torch.cuda.device_count()} CUDA device(s) are visible.")


def rank_device(name: str, rank: int, world: int) -> torch.device:
    """The device of ``rank``: its own GPU under DDP on CUDA, else ``train.device`` resolved."""
    device = resolve_device(name)
    if world > 1 and device.type == "cuda":
        return torch.device("cuda", rank)
    return device


@contextlib.contextmanager
def process_group(device: torch.device, rank: int, world: int, init_method: str | None) -> Iterator[None]:
    """Join the workers' process group for the block (nothing to join when ``world == 1``)."""
    if world == 1:
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=init_method,
                            rank=rank, world_size=world)
    try:
        yield
    finally:
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], device: torch.device, distributed: bool) -> list[float]:
    """``values`` summed over the ranks (as they are when not distributed)."""
    if not distributed:
        return values
    buffer = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
    return buffer.tolist()


def spawn_ranks(worker: RankWorker, world: int, scratch_parent: str | None) -> list[dict[str, Any]]:
    """Run ``worker`` in ``world`` spawned processes; their summaries, rank 0 first (scratch beside checkpoints)."""
    if scratch_parent:
        Path(scratch_parent).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ddp-", dir=scratch_parent or None) as scratch:
        init_method = f"tcp://127.0.0.1:{_free_port()}"
        logger.info("Starting %d DistributedDataParallel workers (%s).", world, init_method)
        torch.multiprocessing.spawn(_spawned_rank, args=(worker, world, init_method, scratch), nprocs=world, join=True)
        return collect_rank_results(scratch, world)


def _free_port() -> int:
    """A free TCP port on the loopback interface for the workers' rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawned_rank(rank: int, worker: RankWorker, world: int, init_method: str, scratch: str) -> None:
    """Body of one spawned worker: train, then leave this rank's summary in ``scratch``."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s rank {rank} %(levelname)s %(name)s: %(message)s")
    summary = worker(rank, world, init_method)
    save_training_state(Path(scratch) / f"rank{rank}.pt", summary)


def collect_rank_results(scratch: str, world: int) -> list[dict[str, Any]]:
    """Load every rank's summary and check that the replicas ended with the same parameters."""
    ranks = [load_training_state(Path(scratch) / f"rank{r}.pt") for r in range(world)]
    reference = ranks[0]["final_state"]
    for summary in ranks[1:]:
        for name in summary["parameter_names"]:
            if not torch.equal(summary["final_state"][name], reference[name]):
                raise RuntimeError(
                    f"DistributedDataParallel replicas diverged: parameter {name!r} differs between rank 0 "
                    f"and rank {summary['rank']}. This is a bug; please report it with your train parameters."
                )
    return ranks
