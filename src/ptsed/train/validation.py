"""Validation during training: window scores -> per-file frame scores -> PSDS1 / event-F1, and the choice of
post-processing (per-class thresholds and median filter lengths) stored in the exported checkpoint.

The post-processing dict written into a checkpoint (``checkpoint_extra["postprocess"]``) is::

    {
        "thresholds": {label: float},        # a frame is active when its score > threshold
        "median_filter_s": {label: float},   # median filter length in seconds (0 = none), before thresholding
        "selected_on": "validation",
        "criterion": "collar-based event F1 (onset 0.2 s, offset max(0.2 s, 20 %))",
        "val_event_f1": float,               # macro event-F1 on the validation split with these settings
    }
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ptsed.core.types import FrameScores

Events = list[tuple[float, float, str]]

MEDIAN_GRID_S = (0.0, 0.12, 0.28, 0.44, 0.6, 0.84, 1.0)
"""Median filter lengths (seconds) tried per class when choosing the post-processing."""

COLLAR = {"onset_collar": 0.2, "offset_collar": 0.2, "offset_collar_rate": 0.2}
"""DCASE event-based collars: onset 200 ms, offset max(200 ms, 20 % of the event)."""


@dataclass
class Reference:
    """Ground truth of a validation set.

    Attributes:
        events: ``{filename: [(onset_s, offset_s, label)]}`` for every strongly labelled file (an empty list
            means no event).
        durations: ``{filename: seconds}`` of the same files.
    """

    events: dict[str, Events] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.events)


def reference_from_dataset(dataset: Any) -> Reference:
    """The ground truth of a dataset without reading its audio.

    Works with the ptsed datasets (``dataset.records``: items with ``name``, ``duration_s``, ``events``,
    ``has_strong``) and with any dataset that offers ``ground_truth`` (``{filename: events}``) and
    ``durations`` (``{filename: seconds}``) attributes. Only strongly labelled files are kept; overlapping
    events of one class are merged (sed_scores_eval refuses them).
    """
    from ptsed.evaluation.annotations import merge_overlapping_events

    base = getattr(dataset, "dataset", dataset)
    if hasattr(base, "ground_truth") and hasattr(base, "durations"):
        gt = {k: merge_overlapping_events(v)[0] for k, v in dict(base.ground_truth).items()}
        return Reference(gt, {k: float(base.durations[k]) for k in gt})
    records = getattr(base, "records", None)
    if records is None:
        raise TypeError(
            f"{type(base).__name__} has neither `records` nor `ground_truth` and `durations`; "
            "validation needs the ground truth of its files"
        )
    ref = Reference()
    for rec in records:
        if getattr(rec, "has_strong", True):
            ref.events[rec.name] = merge_overlapping_events((float(a), float(b), str(c)) for a, b, c in rec.events)[0]
            ref.durations[rec.name] = float(rec.duration_s)
    return ref


class WindowStitcher:
    """Collects window predictions (B, K, T) and averages overlapping windows into per-file scores.

    Args:
        labels: the K class names.
        hop_s: frame hop in seconds (0.04).
    """

    def __init__(self, labels: Sequence[str], hop_s: float = 0.04) -> None:
        self.labels = list(labels)
        self.hop_s = hop_s
        self._parts: dict[str, list[tuple[int, np.ndarray]]] = {}
        self._ends: dict[str, float] = {}

    def add(
        self,
        probs: np.ndarray,
        filenames: Iterable[str],
        offsets_s: Iterable[float],
        durations_s: Iterable[float],
    ) -> None:
        """Add a batch: ``probs`` (B, K, T); per window its file, start and seconds of real audio."""
        for p, name, off, dur in zip(probs, filenames, offsets_s, durations_s, strict=True):
            start = int(round(float(off) / self.hop_s))
            valid = min(p.shape[-1], max(1, int(round(float(dur) / self.hop_s))))
            self._parts.setdefault(name, []).append((start, np.asarray(p[:, :valid], dtype=np.float32)))
            self._ends[name] = max(self._ends.get(name, 0.0), float(off) + float(dur))

    def __len__(self) -> int:
        return len(self._parts)

    def result(self, durations: Mapping[str, float] | None = None) -> dict[str, FrameScores]:
        """``{filename: FrameScores}``; the last boundary is the file duration (from ``durations`` if given)."""
        out = {}
        k = len(self.labels)
        for name, parts in self._parts.items():
            n = max(s + p.shape[1] for s, p in parts)
            acc = np.zeros((n, k), np.float64)
            cnt = np.zeros((n, 1), np.float64)
            for s, p in parts:
                acc[s : s + p.shape[1]] += p.T
                cnt[s : s + p.shape[1]] += 1
            scores = (acc / np.maximum(cnt, 1)).astype(np.float32)
            end = float(durations[name]) if durations and name in durations else self._ends[name]
            ts = np.arange(n + 1, dtype=np.float64) * self.hop_s
            ts[-1] = max(end, ts[-2] + 1e-6) if n > 0 else end
            keep = ts[:-1] < ts[-1]
            scores, ts = scores[keep], np.concatenate([ts[:-1][keep], ts[-1:]])
            out[name] = FrameScores(scores, ts, self.labels, source=name)
        return out

    def clear(self) -> None:
        self._parts.clear()
        self._ends.clear()


def _filtered(scores: Mapping[str, FrameScores], median_filter_s: Any = None) -> dict[str, FrameScores]:
    """The scores median-filtered (one length in seconds, or a mapping label -> seconds)."""
    from ptsed.postprocess.filters import median_filter

    if not median_filter_s:
        return dict(scores)
    return {
        name: FrameScores(median_filter(fs.scores, median_filter_s, labels=fs.labels), fs.timestamps, fs.labels, name)
        for name, fs in scores.items()
    }


def evaluate(
    scores: Mapping[str, FrameScores],
    reference: Reference,
    *,
    median_filter_s: float | Mapping[str, float] | None = None,
    threshold: float | Mapping[str, float] = 0.5,
) -> dict[str, float]:
    """PSDS1, its class-wise mean and macro event-F1 (collar 200 ms / 20 %) of per-file scores.

    Metrics come from :mod:`ptsed.evaluation.metrics` (per-class thresholds through sed_scores_eval). Files
    without strong labels in ``reference`` are ignored; classes without events in the reference are left out
    of the averages (they have no defined F1 or PSD-ROC).

    Returns:
        ``{"psds1", "psds1_macro", "event_f1", "event_f1_micro"}``: ``psds1`` is sed_scores_eval's value (with
        ``alpha_st = 1`` the spread between classes is subtracted, so it is 0 while some classes are still
        poor), ``psds1_macro`` the mean single-class PSDS1 (upstream's ``psds1_macro_averaged``).
    """
    from ptsed.evaluation.metrics import PSDS1, collar_f1, psds
    from ptsed.evaluation.scores import ScoreStore

    names = [n for n in scores if n in reference.events]
    if not names:
        raise ValueError("none of the scored files has strong labels in the validation reference")
    gt = {n: reference.events[n] for n in names}
    present = sorted({e[2] for evs in gt.values() for e in evs})
    if not present:
        return {"psds1": 0.0, "psds1_macro": 0.0, "event_f1": 0.0, "event_f1_micro": 0.0}
    store = ScoreStore(present)
    for n, fs in _filtered({n: scores[n] for n in names}, median_filter_s).items():
        store.add(n, fs.scores, fs.timestamps, fs.labels)
    store.finalize()
    result = psds(store, gt, {n: reference.durations[n] for n in names}, PSDS1)
    out = {"psds1": float(result.value), "psds1_macro": float(result.macro)}
    if isinstance(threshold, Mapping):
        frames = store.dataframes(range(len(present)))
        f1 = _event_f1(frames, gt, {c: float(threshold.get(c, 0.5)) for c in present})
    else:
        res = collar_f1(store, gt, [float(threshold)], **COLLAR)[float(threshold)]["f1"]
        f1 = {"macro": res["macro_average"], "micro": res["micro_average"]}
    store.close()
    out.update(event_f1=float(f1["macro"]), event_f1_micro=float(f1["micro"]))
    return out


def select_postprocess(
    scores: Mapping[str, FrameScores],
    reference: Reference,
    labels: Sequence[str],
    median_grid_s: Sequence[float] = MEDIAN_GRID_S,
    default_threshold: float = 0.5,
    default_median_s: float = 0.0,
) -> dict[str, Any]:
    """Per-class median filter length and decision threshold that maximise the collar-based event F1 on the
    validation split (each class on its own). Classes without validation events, and classes whose best
    F1 is 0 (any threshold is as bad; the lowest one would flood the output with false positives), keep the
    defaults.

    Returns:
        The post-processing dict described in the module docstring.
    """
    names = [n for n in scores if n in reference.events]
    gt = {n: reference.events[n] for n in names}
    present = sorted({e[2] for evs in gt.values() for e in evs} & set(labels))
    thresholds = {c: float(default_threshold) for c in labels}
    medians = {c: float(default_median_s) for c in labels}
    best_f = {c: -1.0 for c in present}
    if names and present:
        for length in median_grid_s:
            filtered = _filtered({n: scores[n] for n in names}, length)
            frames = {n: fs.to_dataframe()[["onset", "offset", *present]] for n, fs in filtered.items()}
            f, thr = _best_event_f1(frames, gt)
            for c in present:
                if c in f and np.isfinite(thr[c]) and f[c] > max(best_f[c], 0.0):
                    best_f[c], thresholds[c], medians[c] = float(f[c]), float(thr[c]), float(length)
    achieved = [max(v, 0.0) for v in best_f.values()]
    return {
        "thresholds": thresholds,
        "median_filter_s": medians,
        "selected_on": "validation",
        "criterion": "collar-based event F1 (onset 0.2 s, offset max(0.2 s, 20 %))",
        "val_event_f1": float(np.mean(achieved)) if achieved else 0.0,
    }


# -- per-class thresholds (not offered by ptsed.evaluation.metrics), with sed_scores_eval ----------------


def _event_f1(frames: dict, gt: dict, threshold: Any) -> dict[str, float]:
    """Collar-based event F1 at per-class thresholds (sed_scores_eval DataFrames): ``{"macro", "micro"}``."""
    from sed_scores_eval import collar_based

    f, *_ = collar_based.fscore(frames, gt, threshold, **COLLAR, num_jobs=1)
    return {"macro": float(f["macro_average"]), "micro": float(f["micro_average"])}


def _best_event_f1(frames: dict, gt: dict) -> tuple[dict[str, float], dict[str, float]]:
    """Best collar-based F1 per class and the thresholds that reach it."""
    from sed_scores_eval import collar_based

    f, _, _, thr, _ = collar_based.best_fscore(frames, gt, **COLLAR, num_jobs=1)
    return {k: float(v) for k, v in f.items()}, {k: float(v) for k, v in thr.items()}
