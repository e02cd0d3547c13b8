"""Fitting post-processing on a development set: per-class thresholds and median filter lengths (seconds).

One implementation serves ``ptsed finetune`` (on its validation split) and ``ptsed tune`` (on saved scores or
a model run on audio). For every class and every median filter length of a grid, the whole curve of the
objective over thresholds is computed with sed_scores_eval; the class gets the length and threshold of its
best point. Safe defaults stay where fitting cannot be trusted:

- classes without events in the development set;
- classes where no threshold beats the defaults (threshold 0.5, ``ptsed detect``'s 0.36 s median filter):
  a class whose best score is 0 would otherwise get the lowest threshold, which floods the output;
- thresholds are never below ``min_threshold`` (0.05): operating points that need a lower one are not
  considered.

Objectives (per class, then the mean over the classes with events):

- ``event_f1``: collar-based event F1 (onset 200 ms, offset max(200 ms, 20 %)), DCASE's event-based F1;
- ``psds1``: intersection-based F1 with PSDS1's detection criteria (dtc = gtc = 0.7), i.e. the best
  operating point of the PSDS1 ROC in the F1 sense. (PSDS1 itself integrates over all thresholds.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ptsed.core.errors import ConfigError
from ptsed.core.types import FrameScores
from ptsed.postprocess.pipeline import DEFAULT_MEDIAN_FILTER_S, DEFAULT_THRESHOLD
from ptsed.postprocess.profile import MEDIAN_GRID_S, MIN_THRESHOLD, OBJECTIVES, Profile

Events = list[tuple[float, float, str]]

COLLAR = {"onset_collar": 0.2, "offset_collar": 0.2, "offset_collar_rate": 0.2}
"""DCASE event-based collars: onset 200 ms, offset max(200 ms, 20 % of the event)."""


def _curves(objective: str, frames: dict, gt: Mapping[str, Events]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per class: (F1 of every operating point, the score its threshold must fall just below), ascending."""
    if objective == "event_f1":
        from sed_scores_eval import collar_based

        curves = collar_based.fscore_curve(frames, dict(gt), **COLLAR, num_jobs=1)
    else:
        from sed_scores_eval import intersection_based

        curves = intersection_based.fscore_curve(frames, dict(gt), dtc_threshold=0.7, gtc_threshold=0.7, num_jobs=1)
    return {c: (np.asarray(v[0], np.float64), np.asarray(v[3], np.float64)) for c, v in curves.items()}


def _at_threshold(f: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """F1 when frames with score > ``threshold`` are active."""
    above = np.flatnonzero(scores > threshold)
    return float(f[above[0]]) if above.size else 0.0


def _best(f: np.ndarray, scores: np.ndarray, min_threshold: float) -> tuple[float, float]:
    """(best F1, its threshold) among the operating points reachable with a threshold >= ``min_threshold``;
    ties go to the highest threshold. ``(0, nan)`` when none."""
    ok = np.isfinite(scores) & (scores > min_threshold)
    if not ok.any():
        return 0.0, float("nan")
    idx = np.flatnonzero(ok)
    i = int(idx[len(idx) - 1 - np.argmax(f[idx][::-1])])
    below = scores[i - 1] if i > 0 and np.isfinite(scores[i - 1]) else min_threshold
    return float(f[i]), float(max((scores[i] + below) / 2, min_threshold))


def _hop(fs: FrameScores) -> float:
    from ptsed.evaluation.scores import uniform_hop

    hop = fs.meta.get("hop_s") or uniform_hop(np.asarray(fs.timestamps))
    if not hop:
        raise ConfigError(f"scores of {fs.source!r} are not on an even frame grid; cannot median-filter them")
    return float(hop)


def fit_postprocess(
    scores: Mapping[str, FrameScores],
    ground_truth: Mapping[str, Events],
    labels: Sequence[str],
    *,
    objective: str = "event_f1",
    median_grid_s: Sequence[float] = MEDIAN_GRID_S,
    default_threshold: float = DEFAULT_THRESHOLD,
    default_median_s: float = DEFAULT_MEDIAN_FILTER_S,
    min_threshold: float = MIN_THRESHOLD,
    fitted_on: Mapping[str, Any] | None = None,
) -> Profile:
    """Per-class median filter length and threshold that maximise ``objective`` on a development set.

    Args:
        scores: ``{clip: FrameScores}`` raw (unfiltered) frame probabilities (T, K) of the development clips.
        ground_truth: ``{clip: [(onset_s, offset_s, label)]}``; clips missing from it are ignored, and the
            events of one class must not overlap (merge them first).
        labels: the classes of the profile (the model's); classes without events keep the defaults.
        objective: ``"event_f1"`` or ``"psds1"`` (see the module docstring).
        median_grid_s: median filter lengths tried (seconds).
        default_threshold, default_median_s: the safe defaults (``ptsed detect``'s: 0.5 and 0.36 s).
        min_threshold: lowest threshold ever chosen.
        fitted_on: what the scores are (paths, window settings), recorded in the profile.

    Returns:
        A :class:`~ptsed.postprocess.profile.Profile` with a value for every class of ``labels``; its
        ``objective`` holds the mean over the classes with events with the fitted values (``value``) and with
        the defaults (``default_value``).
    """
    from ptsed.postprocess.filters import median_filter

    def filtered(fs: FrameScores, length: float) -> FrameScores:
        x = median_filter(fs.scores, length, _hop(fs)) if length > 0 else fs.scores
        return FrameScores(x, fs.timestamps, fs.labels, source=fs.source)

    grid = [float(v) for v in median_grid_s]
    thresholds, medians, summary, fitted = fit_per_class(
        scores, ground_truth, labels, filtered, grid, float(default_median_s),
        objective=objective, default_threshold=default_threshold, min_threshold=min_threshold,
    )  # fmt: skip
    return Profile(
        thresholds=thresholds,
        median_filter_s=medians,
        decoder="median",
        objective=summary["objective"],
        fitted_on={**(fitted_on or {}), **summary["fitted_on"]},
        fitted=fitted,
        extra={
            "defaults": {"threshold": float(default_threshold), "median_filter_s": float(default_median_s)},
            "min_threshold": float(min_threshold),
            "median_grid_s": grid,
        },
    )


def fit_per_class(
    scores: Mapping[str, FrameScores],
    ground_truth: Mapping[str, Events],
    labels: Sequence[str],
    decode: Callable[[FrameScores, float], FrameScores],
    grid: Sequence[float],
    default_setting: float,
    *,
    objective: str = "event_f1",
    default_threshold: float = DEFAULT_THRESHOLD,
    min_threshold: float = MIN_THRESHOLD,
) -> tuple[dict[str, float], dict[str, float], dict[str, Any], list[str]]:
    """The fit behind every decoder: per class, the setting of ``grid`` and the threshold of the best point.

    Args:
        decode: (one clip's raw scores of the classes with events, a setting) -> the score table the decoder
            thresholds (median-filtered frames; cSEBB boxes).
        grid: the settings tried (e.g. median filter or step filter lengths, seconds).
        default_setting: the setting of the defaults, kept with ``default_threshold`` where nothing beats them.

    Returns:
        ``(thresholds, settings, {"objective": ..., "fitted_on": ...}, fitted classes)``, thresholds and settings
        for every class of ``labels``.
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    names = [n for n in scores if n in ground_truth]
    present = [c for c in labels if c in {e[2] for n in names for e in ground_truth[n]}]
    gt = {n: [e for e in ground_truth[n] if e[2] in set(present)] for n in names}
    thresholds = {c: float(default_threshold) for c in labels}
    settings = {c: float(default_setting) for c in labels}
    best_f = {c: 0.0 for c in present}
    default_f = {c: 0.0 for c in present}
    grid = [float(v) for v in grid]
    for setting in sorted(set(grid) | {float(default_setting)}) if present else []:
        frames = {}
        for n in names:
            fs = scores[n]
            cols = [fs.labels.index(c) for c in present]
            sub = FrameScores(fs.scores[:, cols], fs.timestamps, present, source=n, meta=dict(fs.meta))
            frames[n] = decode(sub, setting).to_dataframe()
        curves = _curves(objective, frames, gt)
        for c in present:
            if c not in curves:
                continue
            f, s = curves[c]
            if setting == float(default_setting):
                default_f[c] = _at_threshold(f, s, default_threshold)
            if setting not in grid:
                continue
            value, thr = _best(f, s, min_threshold)
            if np.isfinite(thr) and value > best_f[c]:
                best_f[c], thresholds[c], settings[c] = value, thr, setting
    fitted = [c for c in present if best_f[c] > default_f[c]]
    for c in present:
        if c not in fitted:  # no threshold beats the defaults: keep them
            thresholds[c], settings[c] = float(default_threshold), float(default_setting)
    achieved = [best_f[c] if c in fitted else default_f[c] for c in present]
    summary = {
        "objective": {
            "name": objective,
            "criterion": OBJECTIVES[objective],
            "value": float(np.mean(achieved)) if achieved else 0.0,
            "default_value": float(np.mean(list(default_f.values()))) if default_f else 0.0,
            "per_class": {c: round(float(v), 6) for c, v in zip(present, achieved, strict=True)},
        },
        "fitted_on": {
            "clips": len(names),
            "events": sum(len(v) for v in gt.values()),
            "classes_with_events": len(present),
        },
    }
    return thresholds, settings, summary, fitted


def read_dev_set(
    source: Any,
    ground_truth: Mapping[str, Events],
    durations: Mapping[str, float] | None = None,
    *,
    progress: bool = False,
) -> tuple[dict[str, FrameScores], dict[str, Events], list[str]]:
    """The raw frame scores of a development set's clips from an evaluation source (score files or a model
    run on audio, :mod:`ptsed.evaluation.sources`), matched to the ground truth by clip id.

    Returns:
        ``(scores by clip id, ground truth of those clips (events merged), messages about skipped clips)``.

    Raises:
        ConfigError: no clip of the ground truth has scores.
    """
    from ptsed.evaluation.protocol import _read_all
    from ptsed.io.annotations import match_clip_ids, merge_overlapping_events

    names = source.names()
    mapping = match_clip_ids(names, ground_truth) if names is not None else {c: c for c in ground_truth}
    name_of: dict[str, str] = {}
    for name, clip in mapping.items():
        name_of.setdefault(clip, name)
    clips = sorted(name_of)
    notes = []
    missing = len(ground_truth) - len(clips)
    if missing:
        notes.append(f"{missing} of {len(ground_truth)} ground-truth clips have no scores and are left out")
    if not clips:
        raise ConfigError("no clip of the ground truth has scores: check that the file names match")
    clip_of = {name_of[c]: c for c in clips}
    durations = dict(durations or {})
    scores: dict[str, FrameScores] = {}
    failed = []
    wanted = [name_of[c] for c in clips]
    for name, clip_scores, error in _read_all(source, wanted, {n: durations.get(clip_of[n]) for n in wanted}, progress):
        if error is not None or clip_scores is None:
            failed.append(error or name)
            continue
        x, ts, cols = clip_scores
        scores[clip_of[name]] = FrameScores(np.asarray(x), np.asarray(ts, np.float64), list(cols), source=name)
    if failed:
        notes.append(f"{len(failed)} clips failed and are left out: " + "; ".join(failed[:3]))
    if not scores:
        raise ConfigError("no clip could be scored")
    gt = {c: merge_overlapping_events(ground_truth[c])[0] for c in scores}
    return scores, gt, notes


__all__ = ["MEDIAN_GRID_S", "MIN_THRESHOLD", "OBJECTIVES", "fit_postprocess", "read_dev_set"]
