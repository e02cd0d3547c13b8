"""Helpers for data-parallel training (Lightning DDP): who am I, gathering to rank 0, weight-sync checks.

Metrics such as PSDS are not averages of per-rank values: every rank scores a different part of the
evaluation set, so the frame scores must be brought together before the metric is computed (upstream logs a
per-rank PSDS with ``sync_dist=False``, which on N GPUs is the PSDS of 1/N of the data). :func:`gather_to_rank0`
moves picklable items to rank 0 in rounds of a bounded size; :func:`broadcast_object` sends the result back.

All functions work without ``torch.distributed`` (one process): gathering is then the identity.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from ptsed.core.errors import PtsedError


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


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer of ``module`` (names, dtypes, shapes and raw bytes, in order)."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class WeightSyncCheck(Callback):
    """Lightning callback: after every ``every``-th optimiser step, check that all ranks hold bit-identical
    weights (SHA-256 of the model's state dict, gathered from every rank).

    A mismatch raises :class:`PtsedError` naming the step (a desynchronised DDP run trains N different
    models). With ``log_path``, rank 0 appends one JSON line per check: ``{"step", "digests": [per rank]}``.

    Args:
        every: optimiser steps between checks (1: after every step).
        log_path: optional JSON-lines file written by rank 0.
    """

    def __init__(self, every: int = 1, log_path: str | Path | None = None) -> None:
        super().__init__()
        self.every = max(1, int(every))
        self.log_path = Path(log_path) if log_path else None
        self._last_step = -1
        self.checks = 0

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = int(trainer.global_step)
        if step == self._last_step or step % self.every:
            return  # no optimiser step since the last check (gradient accumulation), or not due
        self._last_step = step
        digest = weights_digest(getattr(pl_module, "model", pl_module))
        digests: list[Any] = [digest]
        if is_distributed():
            digests = [None] * rank_and_world()[1]
            torch.distributed.all_gather_object(digests, digest)
        self.checks += 1
        if trainer.is_global_zero and self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"step": step, "digests": digests}) + "\n")
        if len(set(digests)) > 1:
            bad = [r for r, d in enumerate(digests) if d != digests[0]]
            raise PtsedError(f"data-parallel ranks {bad} hold other weights than rank 0 after step {step}")


__all__ = [
    "WeightSyncCheck",
    "all_sum",
    "broadcast_object",
    "gather_to_rank0",
    "is_distributed",
    "rank_and_world",
    "weights_digest",
]
