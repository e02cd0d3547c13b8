"""A training run's output folder: never mix two runs, never look complete when damaged, say a full disk clearly.

- :func:`check_output`: a folder that already holds a run is refused unless ``--resume`` (continue it) or
  ``--overwrite`` (remove its files first; only the files a run writes).
- :func:`changed_settings`: the settings of a resumed run against the stored ``config.yaml``.
- :func:`resume_checkpoint` / :func:`load_checkpoint`: a damaged (truncated) ``last.ckpt`` is named, and
  ``best.ckpt`` serves when it is readable; a damaged ``best.ckpt`` is never exported.
- :func:`write_atomic` and :func:`checkpoint_io`: files appear complete or not at all, and a full disk
  becomes one :class:`DiskFullError` line naming the file and the free space.
- :func:`quiet_lightning`: progress on stderr, no third-party tips, banners or deprecation warnings.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import shutil
import sys
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from ptsed.core.errors import CheckpointError, ConfigError, DiskFullError, disk_full, is_disk_full
from ptsed.io.results import atomic_write

RUN_FILES = (
    "model.pt",
    "config.yaml",
    "summary.json",
    "thresholds.json",
    "median_filter.json",
    "checkpoints",
    "logs",
)
"""What a fine-tuning run writes into its output folder (``--overwrite`` removes these and nothing else)."""

RESUME_FREE = frozenset({"threads", "num_workers", "wandb", "select", "bn_recalibrate", "ckpt_every"})
"""Settings a resumed run may change: they do not change the trained weights (``select`` and
``bn_recalibrate`` act on the export only)."""


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a unique temporary file (flushed to disk) renamed into place
    (:func:`ptsed.io.results.atomic_write`).

    Raises:
        DiskFullError: the disk filled up (the temporary file is removed, an older ``path`` stays intact).
        PtsedError: another write error, in one line naming ``path``.
    """
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_write(path) as tmp:
        _write_file(tmp, raw)
    return path


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save_torch_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` via :func:`write_atomic` (complete or not at all)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_atomic(path, buffer.getvalue())


def checkpoint_io() -> Any:
    """A Lightning ``CheckpointIO`` plugin that writes checkpoints with :func:`save_torch_atomic`."""
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    class _AtomicCheckpointIO(TorchCheckpointIO):
        def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
            save_torch_atomic(checkpoint, path)

    return _AtomicCheckpointIO()


# -- the output folder -------------------------------------------------------------------------------------
def existing_run(output: Path) -> str | None:
    """``"finished"`` (``model.pt`` exported), ``"unfinished"`` (settings or checkpoints only) or ``None``."""
    if (output / "model.pt").is_file():
        return "finished"
    if (output / "config.yaml").is_file() or (output / "checkpoints" / "last.ckpt").is_file():
        return "unfinished"
    return None


def check_output(output: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse an output folder that would mix two runs; with ``overwrite`` remove the old run's files.

    Raises:
        ConfigError: ``output`` is a file, or it holds a run and neither ``resume`` nor ``overwrite`` is set,
            or both are set.
    """
    if resume and overwrite:
        raise ConfigError("--resume continues a run and --overwrite replaces it: give one of them")
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output} is a file, not a folder")
    state = existing_run(output)
    if state is None or resume:
        return
    if overwrite:
        for name in RUN_FILES:
            target = output / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
        return
    if state == "finished":
        raise ConfigError(
            f"{output} already holds a finished run ({output / 'model.pt'}): re-export it with --resume, "
            "or replace it with --overwrite"
        )
    raise ConfigError(
        f"{output} holds an unfinished run ({output / 'config.yaml'}): continue it with --resume, "
        "or start again with --overwrite"
    )


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and key != "builder":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def changed_settings(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Settings (dotted keys) whose values differ, as ``"key: old -> new"``, except :data:`RESUME_FREE`."""
    old, new = _flat(stored), _flat(current)
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if key not in RESUME_FREE and old.get(key) != new.get(key)
    ]


# -- checkpoints ---------------------------------------------------------------------------------------------
def load_checkpoint(path: Path) -> dict[str, Any]:
    """A Lightning checkpoint, loaded with ``weights_only=True``.

    Raises:
        CheckpointError: the file is damaged (truncated, e.g. by a full disk) or holds no training state.
    """
    try:
        with zipfile.ZipFile(path) as archive:  # torch's format: every member's CRC is checked
            bad = archive.testzip()
        if bad is not None:
            raise zipfile.BadZipFile(f"member {bad} fails its checksum")
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path} is damaged (truncated, e.g. by a full disk?): {_first_line(err)}") from None
    if not isinstance(obj, dict) or "state_dict" not in obj or "global_step" not in obj:
        raise CheckpointError(f"{path} is damaged: it holds no training state")
    return obj


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def resume_checkpoint(last: Path, say: Any = None) -> Path:
    """The checkpoint to resume from: ``last`` when readable, else ``best.ckpt`` beside it (said on stderr).

    Raises:
        CheckpointError: ``last`` is damaged and no readable earlier checkpoint exists.
    """
    try:
        load_checkpoint(last)
        return last
    except CheckpointError as err:
        damaged = str(err)
    fallback = last.with_name("best.ckpt")
    if fallback.is_file():
        with contextlib.suppress(CheckpointError):
            step = int(load_checkpoint(fallback)["global_step"])
            (say or _stderr)(f"{damaged}; resuming from {fallback} (step {step}) instead")
            return fallback
    raise CheckpointError(f"cannot resume: {damaged}, and no earlier checkpoint exists; start again with --overwrite")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# -- third-party noise ----------------------------------------------------------------------------------------
_NOISE = (
    ".*module\\(s\\) in eval mode.*",  # the frozen front-end
    ".*does not have many workers.*",
    ".*pkg_resources is deprecated.*",
    ".*`isinstance\\(treespec, LeafSpec\\)` is deprecated.*",
    ".*LeafSpec.*deprecated.*",
    ".*weights_only.*",
    ".*exists and is not empty.*",  # a resumed run's checkpoints folder
)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning without its tips, device banners and deprecation warnings, and with progress bars on stderr
    (stdout stays for results). Warnings are still shown."""
    import lightning.pytorch  # noqa: F401  (its import sets its loggers' levels: set ours after it)

    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            for pattern in _NOISE:
                warnings.filterwarnings("ignore", message=pattern)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning, module="lightning")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


__all__ = [
    "RESUME_FREE",
    "RUN_FILES",
    "DiskFullError",
    "changed_settings",
    "check_output",
    "checkpoint_io",
    "disk_full",
    "existing_run",
    "is_disk_full",
    "load_checkpoint",
    "quiet_lightning",
    "resume_checkpoint",
    "save_torch_atomic",
    "write_atomic",
]
