"""Validation during training: window scores -> per-file frame scores -> PSDS1 / event-F1, and the choice of
post-processing (per-class thresholds and median filter lengths) stored in the exported checkpoint.

Validation windows are cut and stitched as ``ptsed detect`` cuts and stitches them (:func:`validation_windows`,
:class:`WindowStitcher`), so the post-processing chosen on them fits the scores detect produces.

The post-processing dict written into a checkpoint (``checkpoint_extra["postprocess"]``) is a
post-processing profile (:mod:`ptsed.postprocess.profile`, the same as ``ptsed tune`` writes) plus::

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

from ptsed.core.frames import FRAME_HOP_S, frame_times
from ptsed.core.types import FrameScores
from ptsed.evaluation.tuning import COLLAR, MEDIAN_GRID_S
from ptsed.postprocess.pipeline import DEFAULT_MEDIAN_FILTER_S, DEFAULT_THRESHOLD

Events = list[tuple[float, float, str]]


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
    from ptsed.io.annotations import merge_overlapping_events

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


def validation_windows(
    model: Any, hop_s: float | None = None, stitch: str = "centre", window_s: float | None = None
) -> dict[str, Any]:
    """How validation cuts and stitches windows: ``ptsed detect``'s defaults unless set.

    Args:
        model: the model being trained (``window_s``, ``frame_hop_s``).
        hop_s: hop between windows in seconds, rounded to whole frames (``None``: half a window, as detect).
        stitch: ``"centre"`` (detect's default) or ``"mean"``.
        window_s: window length in seconds (``None``: the model's, as detect).

    Returns:
        ``{"window_s", "hop_s", "stitch"}`` (seconds), recorded in the checkpoint that finetune writes.
    """
    from ptsed.core.errors import ConfigError
    from ptsed.inference.windows import STITCH_MODES, default_hop_frames

    frame = float(model.frame_hop_s)
    frames = max(1, round(float(window_s if window_s is not None else model.window_s) / frame))
    hop = default_hop_frames(frames) if hop_s is None else round(float(hop_s) / frame)
    if not 1 <= hop <= frames:
        raise ConfigError(f"the validation hop must be between {frame} s and the window ({frames * frame:g} s)")
    if stitch not in STITCH_MODES:
        raise ConfigError(f"unknown stitch mode {stitch!r}; expected one of {', '.join(STITCH_MODES)}")
    return {"window_s": round(frames * frame, 6), "hop_s": round(hop * frame, 6), "stitch": stitch}


class WindowStitcher:
    """Collects window predictions (B, K, T) of many files and stitches them per file exactly as ``ptsed
    detect`` does: the same :class:`~ptsed.inference.windows.Stitcher`, the same number of output frames
    (:func:`~ptsed.inference.windows.output_frames`) and the same frame timestamps
    (:func:`~ptsed.core.frames.frame_times`). Given the windows detect cuts (the model's window, a
    hop of half a window: :func:`~ptsed.inference.windows.default_hop_frames`), the scores equal detect's.

    Args:
        labels: the K class names.
        hop_s: frame hop in seconds (0.04).
        stitch: ``"centre"`` (detect's default) or ``"mean"`` (see :mod:`ptsed.inference.windows`).
    """

    def __init__(self, labels: Sequence[str], hop_s: float = FRAME_HOP_S, stitch: str = "centre") -> None:
        from ptsed.inference.windows import STITCH_MODES

        if stitch not in STITCH_MODES:
            raise ValueError(f"unknown stitch mode {stitch!r}; expected one of {STITCH_MODES}")
        self.labels = list(labels)
        self.hop_s = hop_s
        self.stitch = stitch
        self._parts: dict[str, dict[int, np.ndarray]] = {}
        self._ends: dict[str, float] = {}

    def add(
        self,
        probs: np.ndarray,
        filenames: Iterable[str],
        offsets_s: Iterable[float],
        durations_s: Iterable[float],
    ) -> None:
        """Add a batch: ``probs`` (B, K, T); per window its file, start (s) and seconds of real audio in it.

        Windows may come in any order; a window added twice (same file and start) counts once.
        """
        for p, name, off, dur in zip(probs, filenames, offsets_s, durations_s, strict=True):
            start = int(round(float(off) / self.hop_s))
            self._parts.setdefault(name, {}).setdefault(start, np.asarray(p, dtype=np.float32).T)
            self._ends[name] = max(self._ends.get(name, 0.0), float(off) + float(dur))

    def __len__(self) -> int:
        return len(self._parts)

    def result(self, durations: Mapping[str, float] | None = None) -> dict[str, FrameScores]:
        """``{filename: FrameScores}`` (T, K) on detect's frame grid; a file's length is its duration in
        ``durations`` when given, else the end of the real audio of its last window."""
        from ptsed.inference.windows import Stitcher, output_frames

        out = {}
        for name, parts in self._parts.items():
            end = float(durations[name]) if durations and name in durations else self._ends[name]
            n = output_frames(end, self.hop_s)
            starts = sorted(parts)
            stitcher = Stitcher(parts[starts[0]].shape[0], self.stitch, n)
            for s in starts:
                stitcher.add(s, parts[s])
            scores = stitcher.finish(n)
            meta = {"hop_s": self.hop_s, "duration_s": end, "stitch": self.stitch}
            out[name] = FrameScores(scores, frame_times(n + 1, self.hop_s, end), self.labels, source=name, meta=meta)
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
    default_threshold: float = DEFAULT_THRESHOLD,
    default_median_s: float = DEFAULT_MEDIAN_FILTER_S,
    objective: str = "event_f1",
    fitted_on: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Per-class median filter length and decision threshold that maximise the collar-based event F1 (or
    another objective) on the validation split, each class on its own: :func:`ptsed.evaluation.tuning.
    fit_postprocess`, the code behind ``ptsed tune``. Classes without validation events, and classes where
    no threshold beats the defaults, keep the defaults; no threshold is below 0.05.

    Returns:
        The post-processing profile as a dict (see :mod:`ptsed.postprocess.profile`), with the fields
        described in this module's docstring.
    """
    from ptsed.evaluation.tuning import fit_postprocess

    profile = fit_postprocess(
        scores,
        reference.events,
        labels,
        objective=objective,
        median_grid_s=median_grid_s,
        default_threshold=default_threshold,
        default_median_s=default_median_s,
        fitted_on={"split": "validation", **(fitted_on or {})},
    )
    return {
        **profile.to_dict(),
        "selected_on": "validation",
        "criterion": profile.objective["criterion"],
        "val_event_f1": float(profile.objective["value"]),
    }


# -- per-class thresholds (not offered by ptsed.evaluation.metrics), with sed_scores_eval ----------------


def _event_f1(frames: dict, gt: dict, threshold: Any) -> dict[str, float]:
    """Collar-based event F1 at per-class thresholds (sed_scores_eval DataFrames): ``{"macro", "micro"}``."""
    from sed_scores_eval import collar_based

    f, *_ = collar_based.fscore(frames, gt, threshold, **COLLAR, num_jobs=1)
    return {"macro": float(f["macro_average"]), "micro": float(f["micro_average"])}
