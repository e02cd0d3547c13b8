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
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from ptsed.core.errors import PtsedError
from ptsed.inference.distributed import (
    all_sum,
    broadcast_object,
    gather_to_rank0,
    is_distributed,
    rank_and_world,
)


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
