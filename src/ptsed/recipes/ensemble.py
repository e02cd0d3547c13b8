"""Ensemble frame logits of AudioSet clips, in upstream's HDF5 layout (the Zenodo 14626113 file).

Layout (what upstream's ``AddPseudoLabelsTransform`` reads, and what :func:`ensemble_logits` writes):

    filenames      (N,)          UTF-8 strings, the clip ids ``Y<youtube id>``
    strong_logits  (N, K, T)     float16 frame LOGITS (K = 447 classes, T = 250 frames of 40 ms)

The logits of an ensemble are the mean of its members' logits (not of their probabilities). Training turns
them into soft targets with a sigmoid when it reads them, as upstream does. ptsed adds file attributes
(``models``, ``sample_rate``, ``clip_s``, ``labels``, ``ptsed_version``); upstream ignores them.

Upstream looks a clip up by ``filename.rstrip(".mp3")`` (which strips any trailing ``.``, ``m``, ``p``, ``3``
characters, not just the suffix). :class:`LogitsFile` finds a clip under its exact id; in files that ptsed
did not write (the Zenodo file) it also tries that key, so it reads upstream's file and ptsed's alike.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ptsed.core.errors import ConfigError, PtsedError

FILENAMES = "filenames"
LOGITS = "strong_logits"


def upstream_key(clip: str) -> str:
    """The key upstream looks a clip up by: ``(clip + ".mp3").rstrip(".mp3")``."""
    return (clip + ".mp3").rstrip(".mp3")


def _decode(name: Any) -> str:
    return name.decode("utf-8") if isinstance(name, bytes) else str(name)


def _valid_rows(f: Any) -> int:
    """Rows of a logits file that hold both a name and logits (a write cut short leaves empty names)."""
    n = min(len(f[FILENAMES]), len(f[LOGITS]))
    names = f[FILENAMES][:n]
    for i, raw in enumerate(names):
        if not _decode(raw):
            return i
    return n


class LogitsFile:
    """Frame logits by clip id from an HDF5 file in upstream's layout (read-only, safe in DataLoader workers).

    Args:
        path: the HDF5 file.

    Attributes:
        num_classes, num_frames: K and T of ``strong_logits``.
    """

    def __init__(self, path: str | Path) -> None:
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"teacher logits file {str(self.path)!r} does not exist")
        try:
            with h5py.File(self.path, "r") as f:
                for key in (FILENAMES, LOGITS):
                    if key not in f:
                        raise ConfigError(
                            f"{str(self.path)!r} has no dataset {key!r}: expected 'filenames' and 'strong_logits'"
                        )
                shape = f[LOGITS].shape
                if len(shape) != 3:
                    raise ConfigError(
                        f"'strong_logits' in {str(self.path)!r} must be (N, classes, frames), not {shape}"
                    )
                n = _valid_rows(f)
                names = [_decode(x) for x in f[FILENAMES][:n]]
                written_by_ptsed = "ptsed_version" in f.attrs
        except OSError as err:
            raise ConfigError(f"cannot read teacher logits file {str(self.path)!r}: {err}") from err
        self.num_classes, self.num_frames = int(shape[1]), int(shape[2])
        self._rows: dict[str, int] = {}
        for i, name in enumerate(names):
            self._rows.setdefault(name, i)
        self.upstream_lookup = not written_by_ptsed
        """Also find clips under upstream's lookup key (files not written by ptsed, e.g. Zenodo's)."""
        self._file: Any = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self._rows)

    def names(self) -> list[str]:
        return list(self._rows)

    def row(self, clip: str) -> int | None:
        """The row of ``clip`` (its exact id; in files not written by ptsed also upstream's lookup key)."""
        if clip in self._rows:
            return self._rows[clip]
        return self._rows.get(upstream_key(clip)) if self.upstream_lookup else None

    def __contains__(self, clip: str) -> bool:
        return self.row(clip) is not None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None, "_pid": -1}

    def _handle(self) -> Any:
        if self._file is None or self._pid != os.getpid():
            import h5py

            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def logits(self, clip: str) -> np.ndarray:
        """(K, T) float32 logits of ``clip``; ``KeyError`` if it has none."""
        i = self.row(clip)
        if i is None:
            raise KeyError(f"{clip} has no logits in {self.path}")
        return np.asarray(self._handle()[LOGITS][i], dtype=np.float32)

    def probabilities(self, clip: str) -> np.ndarray:
        """(K, T) float32 sigmoid of the logits (the soft targets of distillation)."""
        x = self.logits(clip)
        return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class LogitsWriter:
    """Appends clip logits to an HDF5 file in upstream's layout, resumable.

    Datasets are created resizable (``maxshape=(None, K, T)``, one clip per chunk) and grow batch by batch, so
    memory does not depend on the number of clips. Each batch writes the logits first and the names second;
    an interrupted write leaves rows without a name, which are dropped when the file is opened again.

    Args:
        path: the output file.
        num_classes, num_frames: K and T.
        attrs: file attributes (JSON-able values); on resume they must equal the stored ones.
        overwrite: start a new file even if ``path`` exists (default: continue it).
    """

    def __init__(
        self, path: str | Path, num_classes: int, num_frames: int, *, attrs: dict[str, Any], overwrite: bool = False
    ) -> None:
        import h5py

        self.path = Path(path)
        self.shape = (int(num_classes), int(num_frames))
        attrs = {k: json.dumps(v) if not isinstance(v, (str, int, float)) else v for k, v in attrs.items()}
        resume = self.path.exists() and not overwrite
        if resume:
            try:
                self.file = h5py.File(self.path, "r+")
            except OSError as err:
                raise ConfigError(f"cannot continue {str(self.path)!r}: {err} (use --overwrite to start anew)") from err
            f = self.file
            if FILENAMES not in f or LOGITS not in f or tuple(f[LOGITS].shape[1:]) != self.shape:
                self.file.close()
                raise ConfigError(
                    f"{str(self.path)!r} is not a logits file of shape (N, {num_classes}, {num_frames}); "
                    "choose another --output or pass --overwrite"
                )
            for key in ("models",):
                old = f.attrs.get(key)
                if old is not None and key in attrs and old != attrs[key]:
                    self.file.close()
                    raise ConfigError(
                        f"{str(self.path)!r} was written by other models ({old}); give the same models to "
                        "continue it, or pass --overwrite"
                    )
            n = _valid_rows(f)
            f[FILENAMES].resize((n,))
            f[LOGITS].resize((n, *self.shape))
            self.done = {_decode(x) for x in f[FILENAMES][:n]}
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = h5py.File(self.path, "w")
            self.file.create_dataset(
                LOGITS, shape=(0, *self.shape), maxshape=(None, *self.shape), dtype="float16", chunks=(1, *self.shape)
            )
            self.file.create_dataset(
                FILENAMES, shape=(0,), maxshape=(None,), dtype=h5py.string_dtype("utf-8"), chunks=(1024,)
            )
            self.done = set()
        for k, v in attrs.items():
            self.file.attrs[k] = v

    def __len__(self) -> int:
        return len(self.file[FILENAMES])

    def append(self, names: Sequence[str], logits: np.ndarray) -> None:
        """Add clips: ``names`` (B,) and their ``logits`` (B, K, T) (stored as float16)."""
        logits = np.asarray(logits)
        if logits.shape != (len(names), *self.shape):
            raise ValueError(f"expected logits of shape {(len(names), *self.shape)}, got {logits.shape}")
        if not names:
            return
        f = self.file
        n = len(f[FILENAMES])
        f[LOGITS].resize((n + len(names), *self.shape))
        f[LOGITS][n:] = logits.astype(np.float16)
        f[FILENAMES].resize((n + len(names),))
        f[FILENAMES][n:] = list(names)
        f.flush()
        self.done.update(names)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def __enter__(self) -> LogitsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class EnsembleSummary:
    """What :func:`ensemble_logits` did."""

    output: Path
    written: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


class _ClipSamples:
    """Dataset over clip ids: ``(clip, {sample_rate: samples (N,)} or None, error or None)``."""

    def __init__(self, audio: Any, clips: Sequence[str], rates: Sequence[int], clip_s: float) -> None:
        self.audio, self.clips, self.rates, self.clip_s = audio, list(clips), sorted(set(rates)), clip_s

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> tuple[str, dict[int, np.ndarray] | None, str | None]:
        from ptsed.data.audioset import fit_length

        clip = self.clips[i]
        try:
            out = {sr: fit_length(self.audio.load(clip, sr), int(round(self.clip_s * sr))) for sr in self.rates}
        except PtsedError as err:
            return clip, None, str(err)
        return clip, out, None


def _describe(spec: Any, model: Any) -> dict[str, str]:
    """How a member was given: zoo name and checkpoint file (recorded in the output, checked on resume)."""
    if isinstance(spec, (tuple, list)):
        name, checkpoint = spec
        return {"name": str(name), "arch": model.arch, "checkpoint": str(checkpoint or "")}
    return {"name": str(spec) if isinstance(spec, str) else model.name, "arch": model.arch, "checkpoint": ""}


def _collate(items: list) -> list:
    return items


def ensemble_logits(
    models: Sequence[Any],
    audio: Any,
    output: str | Path,
    *,
    batch_size: int = 8,
    device: str | None = "auto",
    precision: str = "fp32",
    num_workers: int = 2,
    clip_s: float = 10.0,
    overwrite: bool = False,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> EnsembleSummary:
    """Run ``models`` over every clip of ``audio`` and write the mean frame logits to ``output``.

    Each clip is cut or zero-padded to ``clip_s`` seconds and scored in one window (250 frames for 10 s), as
    the training clips are. Clips already in ``output`` are skipped (resume), clips that fail to decode are
    reported in the summary and left out.

    Args:
        models: :class:`~ptsed.models.sed_model.SEDModel` objects, zoo names, or ``(name, checkpoint)`` pairs.
        audio: a :class:`~ptsed.recipes.audioset_data.ForkSafeAudio` (or a path for it).
        output: the HDF5 file.
        batch_size: clips per forward pass.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` autocast of backbone and head (front-ends in float32).
        num_workers: processes decoding audio.
        clip_s: clip length in seconds.
        overwrite: start ``output`` afresh instead of continuing it.
        progress: progress bar.
        on_batch: called with the number of clips written after each batch.
    """
    import torch

    from ptsed._version import __version__
    from ptsed.inference.predictor import PRECISIONS, load_model, resolve_device
    from ptsed.recipes.audioset_data import ForkSafeAudio

    if not models:
        raise ConfigError("no model given")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    dev = resolve_device(device)
    loaded = [load_model(m, dev) for m in models]
    first = loaded[0]
    for m in loaded:
        if not m.head.has_heads:
            raise ConfigError(f"model {m.name!r} has no classification head; it gives no logits")
        if m.head_config.head_type == "attention":
            raise ConfigError(f"model {m.name!r} has an attention head, which gives probabilities, not logits")
        if m.labels != first.labels:
            raise ConfigError(f"models {first.name!r} and {m.name!r} have different classes; cannot average them")
        if m.frame_hop_s != first.frame_hop_s:
            raise ConfigError(f"models {first.name!r} and {m.name!r} have different frame hops")
    num_frames = int(round(clip_s / first.frame_hop_s))
    if not isinstance(audio, ForkSafeAudio):
        audio = ForkSafeAudio(audio)
    if len(audio) == 0:
        raise ConfigError(f"no audio clips found in {audio.source} (clips are named Y<youtube id>.<ext>)")
    attrs = {
        "models": [_describe(spec, m) for spec, m in zip(models, loaded, strict=True)],
        "labels": first.labels,
        "clip_s": float(clip_s),
        "frame_hop_s": float(first.frame_hop_s),
        "averaged": "logits",
        "ptsed_version": __version__,
    }
    start = time.perf_counter()
    summary = EnsembleSummary(Path(output))
    with LogitsWriter(output, first.num_classes, num_frames, attrs=attrs, overwrite=overwrite) as writer:
        todo = [c for c in audio.clip_ids() if c not in writer.done]
        summary.skipped = len(audio) - len(todo)
        data = _ClipSamples(audio, todo, [m.sample_rate for m in loaded], clip_s)
        loader = torch.utils.data.DataLoader(
            data, batch_size=batch_size, num_workers=num_workers, collate_fn=_collate, shuffle=False
        )
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="ensemble logits", unit="clip")
        dtype = PRECISIONS[precision]
        for batch in loader:
            ok = [(c, s) for c, s, err in batch if err is None]
            summary.failed.update({c: err for c, s, err in batch if err is not None})
            if ok:
                total = None
                with torch.inference_mode():
                    for m in loaded:
                        x = torch.from_numpy(np.stack([s[m.sample_rate] for _, s in ok])).to(dev)
                        feats = m.features(x)
                        with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                            y = m.forward_features(feats, num_frames).strong_logits.float()
                        total = y if total is None else total + y
                mean = (total / len(loaded)).cpu().numpy()
                writer.append([c for c, _ in ok], mean)
                summary.written += len(ok)
                if on_batch is not None:
                    on_batch(summary.written)
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()
    audio.close()
    summary.seconds = time.perf_counter() - start
    return summary


__all__ = ["FILENAMES", "LOGITS", "EnsembleSummary", "LogitsFile", "LogitsWriter", "ensemble_logits", "upstream_key"]
