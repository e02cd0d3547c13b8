"""Where the scores to evaluate come from: saved score files, detected events, or a model run on audio.

Each source names the clips it has (``names()``; ``None``: any clip), the classes it scores
(``labels``), and gives one clip's frame scores with ``read(name, duration_s)``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ptsed.core.errors import ConfigError, PtsedError
from ptsed.evaluation.scores import events_to_scores, list_score_files, read_scores_tsv
from ptsed.io.annotations import Events, read_detections

Clip = tuple[np.ndarray, np.ndarray, list[str]]
"""(scores (T, K), timestamps (T + 1,) in seconds, the K class names)."""


class ScoreFiles:
    """sed_scores_eval score TSVs (``onset offset *classes``), one per clip, as ``ptsed detect`` writes.

    Args:
        path: a folder of ``<clip>.tsv`` files, or one such file.
    """

    kind = "scores"
    dtype = np.float64  # text scores are kept exactly as sed_scores_eval would read them
    filterable = True

    def __init__(self, path: str | Path) -> None:
        import pandas as pd

        self.path = Path(path)
        self._files = list_score_files(self.path)
        first = next(iter(self._files.values()))
        try:
            cols = list(pd.read_csv(first, sep="\t", nrows=0).columns)
        except Exception as err:
            raise ConfigError(f"cannot read score file {str(first)!r}: {err}") from err
        if len(cols) < 3 or cols[:2] != ["onset", "offset"]:
            raise ConfigError(f"score file {str(first)!r} must have the columns 'onset offset <classes...>'")
        self.labels = [str(c) for c in cols[2:]]
        self.description = f"scores {self.path}"

    def names(self) -> list[str]:
        return list(self._files)

    def read(self, name: str, duration_s: float | None = None) -> Clip:
        return read_scores_tsv(self._files[name])


class Detections:
    """Detected events (DCASE TSV ``filename onset offset event_label``, or a folder of them).

    Each clip becomes 0/1 scores on the grid of its event boundaries (one operating point). A clip of
    the ground truth without detections scores 0 everywhere.

    Args:
        path: the TSV file or folder (a header-only file: nothing was detected).
        labels: the classes the system can detect (default: those it detected; the evaluation adds
            the ground-truth classes with :meth:`with_labels`, so a class never detected still counts,
            with recall 0).

    Attributes:
        detected_labels: the classes that occur in the detections, sorted.
    """

    kind = "detections"
    dtype = np.float32
    filterable = False

    def __init__(self, path: str | Path, labels: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise ConfigError(f"detections {str(self.path)!r} do not exist")
        self.events: dict[str, Events] = read_detections(self.path)
        self.detected_labels = sorted({e[2] for ev in self.events.values() for e in ev})
        self.labels = list(labels) if labels is not None else list(self.detected_labels)
        self.open_vocabulary = labels is None
        self.description = f"detections {self.path}"

    def names(self) -> None:
        return None

    def with_labels(self, labels: Sequence[str]) -> Detections:
        """The same detections scored for ``labels`` (columns of :meth:`read`); detections of other
        classes are ignored."""
        out = copy.copy(self)
        out.labels = list(labels)
        out.open_vocabulary = False
        return out

    def read(self, name: str, duration_s: float | None = None) -> Clip:
        events = self.events.get(name, [])
        if duration_s is None:
            if not events:
                raise ConfigError(f"{name!r} has no detections and no duration: give its duration (--durations)")
            duration_s = max(e[1] for e in events)
        scores, ts = events_to_scores(events, self.labels, duration_s)
        return scores, ts, list(self.labels)


class ModelScores:
    """A model run on audio (a folder of ``<clip>.<ext>`` files or PaSST-style HDF5), with
    :class:`ptsed.inference.predictor.Predictor`.

    Args:
        model: an :class:`~ptsed.models.sed_model.SEDModel`.
        audio: a path for :func:`ptsed.data.audioset.open_audio`, or an opened collection.
        clip_s: cut or zero-pad every clip to this many seconds and score it in one window, keeping all
            its frames (upstream's AudioSet evaluation: 250 frames over [0, 10] s). ``None``: the whole
            file, with the Predictor's overlapping windows.
        device: torch device (``"auto"``: CUDA if available).
        batch_size: windows per forward pass (``None``: the device's default, see ``Predictor``).
        group: clips decoded ahead of the model at a time.
        window_s, hop_s: window length and hop between windows in seconds, passed to the ``Predictor``
            (``None``: its defaults, those of ``ptsed detect``). Not with ``clip_s``.
    """

    kind = "model"
    dtype = np.float32
    filterable = True

    def __init__(
        self,
        model,  # noqa: ANN001
        audio,  # noqa: ANN001
        *,
        clip_s: float | None = None,
        device: str | None = "auto",
        batch_size: int | None = None,
        group: int = 64,
        window_s: float | None = None,
        hop_s: float | None = None,
    ) -> None:
        from ptsed.data.audioset import open_audio
        from ptsed.inference.predictor import Predictor

        if clip_s is not None and (window_s is not None or hop_s is not None):
            raise ConfigError("a window or hop cannot be set when every clip is scored as one window (clip_s)")

        self.audio = open_audio(audio) if isinstance(audio, (str, Path)) else audio
        self.clip_s = clip_s
        self.group = max(1, int(group))
        self.predictor = Predictor(
            model,
            device=device or "auto",
            batch_size=batch_size,
            upstream_chunking=clip_s is not None,
            window_s=window_s,
            hop_s=hop_s,
        )
        self.sample_rate = self.predictor.sample_rate
        self.labels = self.predictor.labels
        name = getattr(self.predictor.models[0], "name", "") or type(model).__name__
        self.description = f"model {name} on {audio}"

    def names(self) -> list[str]:
        return self.audio.clip_ids()

    def _samples(self, name: str) -> np.ndarray:
        from ptsed.data.audioset import fit_length

        samples = self.audio.load(name, self.sample_rate)
        if self.clip_s is not None:
            samples = fit_length(samples, int(round(self.clip_s * self.sample_rate)))
        return samples

    def read(self, name: str, duration_s: float | None = None) -> Clip:
        scores = self.predictor.frame_scores(self._samples(name), self.sample_rate, name=name)
        return scores.scores, scores.timestamps, list(scores.labels)

    def iter_read(self, names: Sequence[str]) -> Iterator[tuple[str, Clip | None, str | None]]:
        """(name, clip scores or ``None``, error or ``None``) for each name, in order, batched."""
        for i in range(0, len(names), self.group):
            group = names[i : i + self.group]
            loaded, errors = [], {}
            for name in group:
                try:
                    loaded.append((name, self._samples(name)))
                except PtsedError as err:
                    errors[name] = str(err)
            results = self.predictor.score_many((x, self.sample_rate) for _, x in loaded)
            done = {}
            for (name, _), res in zip(loaded, results, strict=True):
                if res.error is not None:
                    errors[name] = f"{name}: {res.error}"
                else:
                    fs = res.scores[0]
                    done[name] = (fs.scores, fs.timestamps, list(fs.labels))
            for name in group:
                yield name, done.get(name), errors.get(name)


def make_source(
    *,
    scores: str | Path | None = None,
    detections: str | Path | None = None,
    model=None,  # noqa: ANN001
    audio=None,  # noqa: ANN001
    clip_s: float | None = None,
    device: str | None = "auto",
    labels: Sequence[str] | None = None,
    window_s: float | None = None,
    hop_s: float | None = None,
) -> ScoreFiles | Detections | ModelScores:
    """Exactly one of ``scores``, ``detections``, or ``model`` with ``audio`` (and optionally the
    ``window_s`` and ``hop_s`` of its windows, in seconds)."""
    given = [x is not None for x in (scores, detections, model)]
    if sum(given) != 1:
        raise ConfigError("give exactly one of: scores, detections, or a model with audio")
    if model is None and (window_s is not None or hop_s is not None):
        raise ConfigError("a window or hop goes with a model")
    if scores is not None:
        return ScoreFiles(scores)
    if detections is not None:
        return Detections(detections, labels=labels)
    if audio is None:
        raise ConfigError("a model needs audio to run on")
    return ModelScores(model, audio, clip_s=clip_s, device=device, window_s=window_s, hop_s=hop_s)
