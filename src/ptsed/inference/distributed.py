"""Several processes on one job: who am I, starting the process group from torchrun's variables, gathering
to rank 0, and splitting inputs over ranks by size.

``torchrun`` (``torch.distributed.run``) starts one process per device and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_from_env` joins the group (NCCL for CUDA
devices, gloo for CPU processes) and picks the rank's device. Inference (``ptsed detect``, ``embed``,
``ensemble-logits``) and training (:mod:`ptsed.train.ddp`) share these helpers.

All functions work without ``torch.distributed`` (one process): gathering is then the identity.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ptsed.core.errors import ConfigError


@dataclass(frozen=True)
class RankInfo:
    """Where this process stands in a job: global ``rank``, ``world`` size and ``local_rank`` on its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the rank that takes locks, merges and reports)."""
        return self.rank == 0


def env_rank_info() -> RankInfo | None:
    """The rank torchrun (or a SLURM/MPI-style launcher exporting the same variables) gave this process.

    Returns ``None`` when the process was not started as one of several (no ``WORLD_SIZE`` above 1).

    Raises:
        ConfigError: the variables are present but not integers, or inconsistent.
    """
    if "WORLD_SIZE" not in os.environ:
        return None
    try:
        world = int(os.environ["WORLD_SIZE"])
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        raise ConfigError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers: {err}") from err
    if world <= 1:
        return None
    if not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return RankInfo(rank, world, local)


def init_from_env(device: str | None = "auto", *, timeout_s: float = 1800.0) -> tuple[RankInfo, str | None]:
    """Join the process group that torchrun's variables describe, and pick this rank's device.

    One device per rank: with ``device`` ``"auto"`` or ``"cuda"`` and CUDA present, rank ``LOCAL_RANK`` takes
    ``cuda:LOCAL_RANK`` and the group uses NCCL; otherwise the ranks are CPU processes on gloo. An explicit
    ``cuda:K`` is refused (each rank takes its own device). In one process this returns ``(RankInfo(), device)``
    and starts nothing.

    Args:
        device: the user's ``--device``.
        timeout_s: how long a collective waits for the other ranks before failing (seconds).

    Returns:
        ``(rank info, the device string this rank uses)``.
    """
    from datetime import timedelta

    info = env_rank_info()
    if info is None:
        return RankInfo(), device
    dist = torch.distributed
    want = (device or "auto").lower()
    if want.startswith("cuda:"):
        raise ConfigError(
            f"--device {device} under torchrun: each rank takes the device of its LOCAL_RANK; use --device cuda"
        )
    use_cuda = want in ("auto", "cuda") and torch.cuda.is_available()
    if want == "cuda" and not use_cuda:
        raise ConfigError("--device cuda but CUDA is not available on this machine")
    if use_cuda:
        if info.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK={info.local_rank} but this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        torch.cuda.set_device(info.local_rank)
        chosen: str | None = f"cuda:{info.local_rank}"
    else:
        chosen = "cpu" if want in ("auto", "cuda") else device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    return info, chosen


def shutdown() -> None:
    """Leave the process group (nothing in one process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def is_distributed() -> bool:
    """True when a ``torch.distributed`` process group is up with more than one process."""
    return (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    )


def rank_and_world() -> tuple[int, int]:
    """(global rank, world size); (0, 1) without a process group."""
    if not is_distributed():
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def barrier() -> None:
    """Wait for every rank (collective; nothing in one process)."""
    if is_distributed():
        torch.distributed.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (collective; ``[obj]`` in one process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * rank_and_world()[1]
    torch.distributed.all_gather_object(out, obj)
    return out


def split_by_size(sizes: Sequence[float], world: int) -> list[list[int]]:
    """Assign items to ``world`` ranks so that the ranks' total sizes are close (longest first, each to the
    least loaded rank; ties go to the lower rank and the earlier item, so every rank computes the same split).

    Args:
        sizes: one cost per item (seconds of audio, bytes, ...).
        world: the number of ranks.

    Returns:
        ``world`` lists of item indices, each in ascending order (the input order within a rank).
    """
    if world < 1:
        raise ValueError(f"world must be at least 1, not {world}")
    heap = [(0.0, r) for r in range(world)]
    parts: list[list[int]] = [[] for _ in range(world)]
    for i in sorted(range(len(sizes)), key=lambda i: (-float(sizes[i]), i)):
        load, r = heapq.heappop(heap)
        parts[r].append(i)
        heapq.heappush(heap, (load + float(sizes[i]), r))
    return [sorted(p) for p in parts]


def gather_to_rank0(items: Sequence[Any], sink: Callable[[Any], None], *, chunk: int = 32) -> int:
    """Hand every rank's ``items`` to ``sink`` on rank 0, ``chunk`` items per rank at a time.

    Collective: every rank must call it. Memory on rank 0 is bounded by ``world * chunk`` items in flight
    (``sink`` decides where they go). Items arrive rank by rank, each rank's in order.

    Returns:
        The total number of items over all ranks (on every rank).
    """
    if not is_distributed():
        for item in items:
            sink(item)
        return len(items)
    dist = torch.distributed
    rank, world = rank_and_world()
    counts: list[Any] = [None] * world
    dist.all_gather_object(counts, len(items))
    rounds = max(-(-int(c) // chunk) for c in counts)
    for r in range(rounds):
        part = list(items[r * chunk : (r + 1) * chunk])
        received: list[Any] | None = [None] * world if rank == 0 else None
        dist.gather_object(part, received, dst=0)
        if rank == 0:
            for block in received or []:
                for item in block:
                    sink(item)
    return int(sum(counts))


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (collective; the identity in one process)."""
    if not is_distributed():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=src)
    return box[0]


def all_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sum of ``values`` over the ranks (float64; collective)."""
    if not is_distributed():
        return [float(v) for v in values]
    out: list[Any] = [None] * rank_and_world()[1]
    torch.distributed.all_gather_object(out, [float(v) for v in values])
    return [float(sum(col)) for col in zip(*out, strict=True)]
