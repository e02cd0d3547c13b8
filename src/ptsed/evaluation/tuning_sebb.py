"""Fitting the cSEBB decoder (:mod:`ptsed.postprocess.sebb`) on a development set: per-class step filter lengths
and box thresholds, with the mechanism of :mod:`ptsed.evaluation.tuning` (the same objectives, safe defaults
and minimum threshold). For every step filter length of a grid, the boxes of every clip are scored as
sed_scores_eval tables (:meth:`CSEBB.score_table`), the whole curve of the objective over thresholds is
computed, and each class gets the length and threshold of its best point; a class where nothing beats the
defaults (0.5 and :data:`~ptsed.postprocess.sebb.DEFAULT_STEP_FILTER_S`) keeps them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ptsed.core.errors import ConfigError
from ptsed.core.types import FrameScores
from ptsed.evaluation.tuning import fit_per_class
from ptsed.postprocess.pipeline import DEFAULT_THRESHOLD
from ptsed.postprocess.profile import MIN_THRESHOLD, Profile
from ptsed.postprocess.sebb import CSEBB, DEFAULT_MERGE_THRESHOLD, DEFAULT_STEP_FILTER_S

Events = list[tuple[float, float, str]]

STEP_GRID_S = (0.24, 0.36, 0.48, 0.72, 1.0)
"""Step filter lengths (seconds) tried per class."""


def fit_csebb(
    scores: Mapping[str, FrameScores],
    ground_truth: Mapping[str, Events],
    labels: Sequence[str],
    *,
    objective: str = "event_f1",
    step_grid_s: Sequence[float] = STEP_GRID_S,
    merge_threshold: float = DEFAULT_MERGE_THRESHOLD,
    confidence: str = "mean",
    default_threshold: float = DEFAULT_THRESHOLD,
    default_step_s: float = DEFAULT_STEP_FILTER_S,
    min_threshold: float = MIN_THRESHOLD,
    fitted_on: Mapping[str, Any] | None = None,
) -> Profile:
    """Per-class step filter length and box threshold that maximise ``objective`` on a development set.

    Args:
        scores: ``{clip: FrameScores}`` raw frame probabilities (T, K) of the development clips.
        ground_truth: ``{clip: [(onset_s, offset_s, label)]}``, events of one class not overlapping.
        labels: the classes of the profile.
        objective: ``"event_f1"`` or ``"psds1"`` (see :mod:`ptsed.evaluation.tuning`).
        step_grid_s: step filter lengths tried (seconds, > 0).
        merge_threshold, confidence: the fixed cSEBB settings (see :class:`CSEBB`).
        default_threshold, default_step_s: the safe defaults.
        min_threshold: lowest threshold ever chosen.
        fitted_on: what the scores are, recorded in the profile.

    Returns:
        A :class:`Profile` with ``decoder="csebb"``, per-class ``thresholds``, and in ``extra`` the per-class
        ``step_filter_s``, ``merge_threshold`` and ``confidence``.
    """
    grid = [float(v) for v in step_grid_s]
    if not grid or any(v <= 0 for v in grid):
        raise ConfigError(f"step filter lengths must be > 0 s, got {list(step_grid_s)}")

    def boxes(fs: FrameScores, length: float) -> FrameScores:
        return CSEBB(step_filter_s=length, merge_threshold=merge_threshold, confidence=confidence).score_table(fs)

    thresholds, steps, summary, fitted = fit_per_class(
        scores, ground_truth, labels, boxes, grid, float(default_step_s),
        objective=objective, default_threshold=default_threshold, min_threshold=min_threshold,
    )  # fmt: skip
    return Profile(
        thresholds=thresholds,
        decoder="csebb",
        objective=summary["objective"],
        fitted_on={**(fitted_on or {}), **summary["fitted_on"]},
        fitted=fitted,
        extra={
            "step_filter_s": steps,
            "merge_threshold": float(merge_threshold),
            "confidence": confidence,
            "defaults": {"threshold": float(default_threshold), "step_filter_s": float(default_step_s)},
            "min_threshold": float(min_threshold),
            "step_grid_s": grid,
        },
    )


def csebb_settings(profile: Profile) -> dict[str, Any]:
    """:class:`CSEBB` settings a ``csebb`` profile holds (``step_filter_s``, ``merge_threshold``, ``confidence``)."""
    out: dict[str, Any] = {}
    step = profile.extra.get("step_filter_s")
    if isinstance(step, Mapping):
        out["step_filter_s"] = {str(k): float(v) for k, v in step.items()}
    elif step is not None:
        out["step_filter_s"] = float(step)
    if profile.extra.get("merge_threshold") is not None:
        out["merge_threshold"] = float(profile.extra["merge_threshold"])
    if profile.extra.get("confidence") is not None:
        out["confidence"] = str(profile.extra["confidence"])
    return out
