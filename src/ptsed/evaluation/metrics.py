"""Metrics on a :class:`~ptsed.evaluation.scores.ScoreStore`, built on sed_scores_eval, one class at a time.

- :func:`psds`: intersection-based PSDS exactly as ``sed_scores_eval.intersection_based.psds`` computes it
  (same detection curves, same statistics, same ROC construction), but class by class so that memory
  stays bounded at hundreds of classes, and with cross-triggers reduced to the one number the eFPR needs
  (the sum over other classes of cross-trigger counts over their ground-truth time), which makes PSDS2
  affordable at 400+ classes. Several settings (PSDS1, PSDS2) share one pass.
- :func:`collar_f1`, :func:`segment_metrics`: sed_scores_eval's collar-based F1 and segment-based F1 and
  pAUROC, run on chunks of classes.
- :func:`frame_map`: frame-level average precision per class on the 40 ms grid.

Ground truth is ``{clip: [(onset, offset, label), ...]}`` with the events of one class neither
overlapping nor touching (merge them first); durations are ``{clip: seconds}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ptsed.evaluation.scores import ScoreStore, uniform_hop

GroundTruth = Mapping[str, Sequence[tuple[float, float, str]]]


@dataclass(frozen=True)
class PSDSSettings:
    """Parameters of one PSDS (see sed_scores_eval's ``psds``). Times in seconds, eFPR per hour."""

    dtc_threshold: float
    gtc_threshold: float
    cttc_threshold: float | None = None
    alpha_ct: float = 0.0
    alpha_st: float = 0.0
    max_efpr: float = 100.0

    def as_dict(self) -> dict:
        return asdict(self)


PSDS1 = PSDSSettings(dtc_threshold=0.7, gtc_threshold=0.7, cttc_threshold=None, alpha_ct=0.0, alpha_st=1.0)
"""DCASE PSDS scenario 1, and upstream's AudioSet-strong setting (``ex_audioset_strong.py``)."""
PSDS2 = PSDSSettings(dtc_threshold=0.1, gtc_threshold=0.1, cttc_threshold=0.3, alpha_ct=0.5, alpha_st=1.0)
"""DCASE PSDS scenario 2."""

SECONDS_PER_HOUR = 3600.0


@dataclass
class PSDSResult:
    """One PSDS.

    Attributes:
        value: sed_scores_eval's ``psds`` (area under the effective PSD-ROC, normalised by max_efpr).
        per_class: class -> single-class PSDS (their mean is upstream's "macro" PSDS1).
        roc: (effective TPR, eFPR) of the PSD-ROC.
        per_class_roc: class -> (TPR, eFPR, scores) single-class ROC.
        settings: the parameters.
    """

    value: float
    per_class: dict[str, float]
    roc: tuple[np.ndarray, np.ndarray]
    per_class_roc: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    settings: PSDSSettings

    @property
    def macro(self) -> float:
        """Mean single-class PSDS (upstream's ``psds1_macro_averaged``)."""
        return float(np.mean(list(self.per_class.values()))) if self.per_class else float("nan")


def _gt_arrays(
    ground_truth: GroundTruth, clips: Sequence[str], classes: Sequence[str]
) -> tuple[dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], dict[str, int], dict[str, float]]:
    """Per clip, class -> (onsets, offsets); and n_ref, t_ref per class over ``clips``."""
    keep = set(classes)
    per_clip: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    n_ref = dict.fromkeys(classes, 0)
    t_ref = dict.fromkeys(classes, 0.0)
    for clip in clips:
        spans: dict[str, list[tuple[float, float]]] = {}
        for on, off, label in ground_truth.get(clip, ()):
            if label in keep:
                spans.setdefault(label, []).append((on, off))
                n_ref[label] += 1
                t_ref[label] += off - on
        per_clip[clip] = {
            c: (np.array([s[0] for s in v], dtype=np.float64), np.array([s[1] for s in v], dtype=np.float64))
            for c, v in spans.items()
        }
    return per_clip, n_ref, t_ref


def psds(
    store: ScoreStore,
    ground_truth: GroundTruth,
    durations: Mapping[str, float],
    settings: Sequence[PSDSSettings] | PSDSSettings = PSDS1,
    *,
    classes: Sequence[str] | None = None,
    time_decimals: int = 6,
    progress: bool = False,
) -> list[PSDSResult] | PSDSResult:
    """Intersection-based PSDS of the clips in ``store``, one class at a time.

    Equal to ``sed_scores_eval.intersection_based.psds(scores, ground_truth, durations, ...)`` on the
    same data (tested to 1e-12), with bounded memory.

    Args:
        store: finalized scores; every clip in it is evaluated.
        ground_truth: clip -> events; events of classes outside ``classes`` are ignored.
        durations: clip -> seconds, for every clip in ``store``.
        settings: one or several :class:`PSDSSettings` (computed in one pass).
        classes: the classes evaluated (default: all of the store's); each needs ground-truth events.
        time_decimals: rounding of times, as sed_scores_eval.
        progress: show a progress bar over classes.

    Returns:
        A :class:`PSDSResult` per setting (a single one when ``settings`` is one).
    """
    from sed_scores_eval.base_modules.cy_detection import onset_offset_curves
    from sed_scores_eval.base_modules.detection import onset_deltas
    from sed_scores_eval.base_modules.statistics import _intermediate_statistics_from_deltas
    from sed_scores_eval.intersection_based.intermediate_statistics import statistics_fn
    from sed_scores_eval.intersection_based.psds import (
        _unique_cummax_sort,
        multi_class_psd_roc_from_single_class_psd_rocs,
        psds_from_psd_roc,
    )

    single = isinstance(settings, PSDSSettings)
    settings_list = [settings] if single else list(settings)
    for s in settings_list:
        if (s.alpha_ct == 0.0) != (s.cttc_threshold is None):
            raise ValueError("cttc_threshold must be given exactly when alpha_ct > 0")
    classes = list(store.labels if classes is None else classes)
    class_index = {c: store.labels.index(c) for c in classes}
    clips = store.clips
    gt, n_ref, t_ref = _gt_arrays(ground_truth, clips, classes)
    without = [c for c in classes if n_ref[c] == 0]
    if without:
        raise ValueError(f"no ground-truth events for {len(without)} classes, e.g. {without[:3]}")
    dataset_duration = float(sum(durations[c] for c in clips))
    n_other = max(1, len(classes) - 1)
    empty = (np.empty(0), np.empty(0))
    spans = [store.span(c) for c in clips]
    stamps = [store.timestamps(c) for c in clips]

    per_class_rocs: list[dict] = [{} for _ in settings_list]
    iterator = classes
    if progress:
        from tqdm import tqdm

        iterator = tqdm(classes, desc="PSDS", unit="class")
    for cls in iterator:
        row = store.row(class_index[cls]).astype(np.float64)
        acc_scores: list[list[np.ndarray]] = [[] for _ in settings_list]
        acc_deltas: list[list[dict]] = [[] for _ in settings_list]
        for clip, (start, t), ts in zip(clips, spans, stamps, strict=True):
            s = row[start : start + t]
            clip_gt = gt[clip]
            target = clip_gt.get(cls, empty)
            others = {o: v for o, v in clip_gt.items() if o != cls}
            curves = None
            for i, st in enumerate(settings_list):
                use_ct = st.cttc_threshold is not None
                if len(target[0]) == 0 and not (use_ct and others):
                    # no ground truth to hit or cross: only false positives, counted by onsets
                    od = onset_deltas(s)
                    cp = np.abs(od) > 0.5
                    cp_scores = s[cp]
                    zeros = np.zeros(len(cp_scores))
                    deltas = {"tps": zeros, "fps": od[cp].astype(np.float64), "ctw": zeros}
                else:
                    if curves is None:
                        curves = onset_offset_curves(s, ts)
                    uniq, det_on, det_off = curves
                    stats = statistics_fn(
                        detection_onset_times=det_on,
                        detection_offset_times=det_off,
                        target_onset_times=target[0],
                        target_offset_times=target[1],
                        other_onset_times={},
                        other_offset_times={},
                        dtc_threshold=st.dtc_threshold,
                        gtc_threshold=st.gtc_threshold,
                        cttc_threshold=None,
                        time_decimals=time_decimals,
                    )
                    if use_ct and others:
                        ctw = _cross_trigger_weight(det_on, det_off, target, others, t_ref, st, time_decimals)
                    else:
                        ctw = np.zeros(len(uniq))
                    # uniq is sorted and unique: the statistics change where they differ from the next row
                    table = np.stack([stats["tps"], stats["fps"], ctw], axis=1).astype(np.float64)
                    diff = table - np.concatenate((table[1:], np.zeros_like(table[:1])))
                    changed = np.abs(diff).sum(1) > 0
                    cp_scores = uniq[changed]
                    deltas = {"tps": diff[changed, 0], "fps": diff[changed, 1], "ctw": diff[changed, 2]}
                acc_scores[i].append(cp_scores)
                acc_deltas[i].append(deltas)
        for i, st in enumerate(settings_list):
            keys = ("tps", "fps", "ctw")
            scores_c, stats_c = _intermediate_statistics_from_deltas(
                np.concatenate(acc_scores[i]), {k: np.concatenate([d[k] for d in acc_deltas[i]]) for k in keys}
            )
            tpr = stats_c["tps"] / max(n_ref[cls], 1)
            efpr = stats_c["fps"] / dataset_duration
            if st.alpha_ct:
                efpr = efpr + st.alpha_ct * stats_c["ctw"] / n_other
            efpr = efpr * SECONDS_PER_HOUR
            per_class_rocs[i][cls] = _unique_cummax_sort(tpr, efpr, scores_c, max_efpr=st.max_efpr)
        del acc_scores, acc_deltas
    results = []
    for i, st in enumerate(settings_list):
        rocs = per_class_rocs[i]
        etpr, efpr = multi_class_psd_roc_from_single_class_psd_rocs(rocs, alpha_st=st.alpha_st, max_efpr=st.max_efpr)
        value = float(psds_from_psd_roc(etpr, efpr, st.max_efpr))
        per_class = {c: float(psds_from_psd_roc(r[0], r[1], st.max_efpr)) for c, r in rocs.items()}
        results.append(PSDSResult(value, per_class, (etpr, efpr), rocs, st))
    return results[0] if single else results


def _cross_trigger_weight(
    det_on: np.ndarray,
    det_off: np.ndarray,
    target: tuple[np.ndarray, np.ndarray],
    others: Mapping[str, tuple[np.ndarray, np.ndarray]],
    t_ref: Mapping[str, float],
    st: PSDSSettings,
    time_decimals: int,
) -> np.ndarray:
    """Sum over the other classes of cross-trigger counts divided by their ground-truth time, per threshold.

    The counts are those of sed_scores_eval's intersection-based ``statistics_fn`` (a detection that is
    not relevant to its own class cross-triggers class o when its intersection with o's events reaches
    ``cttc * length``), computed for all other classes at once.

    Args:
        det_on, det_off: (B, M) detection onsets and offsets per threshold (offset == onset: inactive).
        target: the target class's (onsets, offsets).
        others: other class -> (onsets, offsets) of its events in the clip.

    Returns:
        (B,) the weight whose mean over other classes (divide by K - 1) is the cross-trigger rate.
    """
    det_crit = det_off > det_on
    lengths = det_off - det_on
    if len(target[0]):
        inter = np.maximum(np.minimum(det_off[..., None], target[1]) - np.maximum(det_on[..., None], target[0]), 0.0)
        total = np.round(np.sum(inter, axis=-1), decimals=time_decimals)
        relevant = (total >= np.round(st.dtc_threshold * lengths, decimals=time_decimals)) * det_crit
    else:
        relevant = np.zeros_like(det_crit)
    names = list(others)
    on = np.concatenate([others[o][0] for o in names])
    off = np.concatenate([others[o][1] for o in names])
    starts = np.cumsum([0] + [len(others[o][0]) for o in names[:-1]])
    inter = np.maximum(np.minimum(det_off[..., None], off) - np.maximum(det_on[..., None], on), 0.0)
    inter = (1 - relevant[..., None]) * inter
    per_class = np.round(np.add.reduceat(inter, starts, axis=-1), decimals=time_decimals)  # (B, M, n_other)
    limit = np.round(st.cttc_threshold * lengths, decimals=time_decimals)
    counts = ((per_class >= limit[..., None]) * det_crit[..., None]).sum(axis=1)  # (B, n_other)
    weights = np.array([1.0 / max(t_ref[o], 1e-12) for o in names])
    return counts @ weights


def _chunk_ground_truth(ground_truth: GroundTruth, clips: Sequence[str], classes: Sequence[str]) -> dict:
    keep = set(classes)
    return {c: [tuple(e) for e in ground_truth.get(c, ()) if e[2] in keep] for c in clips}


def collar_f1(
    store: ScoreStore,
    ground_truth: GroundTruth,
    thresholds: Sequence[float] = (0.5,),
    *,
    classes: Sequence[str] | None = None,
    onset_collar: float = 0.2,
    offset_collar: float = 0.2,
    offset_collar_rate: float = 0.2,
    time_decimals: int = 6,
    chunk_bytes: int = 256 * 1024**2,
) -> dict[float, dict]:
    """Collar-based event F1 (DCASE collars: 200 ms onset, max(200 ms, 20 % of length) offset).

    A class is detected where its score exceeds the threshold (sed_scores_eval's and upstream's convention).

    Returns:
        threshold -> ``{"f1": {class: f, "macro_average", "micro_average"}, "precision": ..., "recall": ...,
        "stats": {class: {"tps", "fps", "n_ref"}}}``.
    """
    from sed_scores_eval.base_modules.precision_recall import (
        micro_average,
        single_fscore_from_intermediate_statistics,
    )
    from sed_scores_eval.collar_based.intermediate_statistics import accumulated_intermediate_statistics

    classes = list(store.labels if classes is None else classes)
    out = {float(t): {"f1": {}, "precision": {}, "recall": {}, "stats": {}} for t in thresholds}
    for chunk in _class_chunks(store, classes, chunk_bytes):
        names = [store.labels[k] for k in chunk]
        frames = store.dataframes(chunk)
        gt = _chunk_ground_truth(ground_truth, store.clips, names)
        stats, _ = accumulated_intermediate_statistics(
            frames, gt, onset_collar=onset_collar, offset_collar=offset_collar,
            offset_collar_rate=offset_collar_rate, time_decimals=time_decimals,
        )  # fmt: skip
        del frames
        for thr in out:
            f, p, r, s = single_fscore_from_intermediate_statistics(stats, thr)
            for c in names:
                out[thr]["f1"][c], out[thr]["precision"][c], out[thr]["recall"][c] = (
                    float(f[c]),
                    float(p[c]),
                    float(r[c]),
                )
                out[thr]["stats"][c] = {k: int(v) for k, v in s[c].items()}
    for res in out.values():
        _averages(res, micro_average)
    return out


def _averages(res: dict, micro_average) -> None:  # noqa: ANN001
    classes = list(res["stats"])
    for key in ("f1", "precision", "recall"):
        res[key]["macro_average"] = float(np.mean([res[key][c] for c in classes]))
    f, p, r = micro_average(res["stats"])
    res["f1"]["micro_average"], res["precision"]["micro_average"], res["recall"]["micro_average"] = (
        float(f), float(p), float(r)
    )  # fmt: skip


def _class_chunks(store: ScoreStore, classes: Sequence[str], chunk_bytes: int) -> list[list[int]]:
    idx = [store.labels.index(c) for c in classes]
    per_class = max(1, store.num_frames * 8 * 3)  # float64 DataFrames plus sed_scores_eval's copies
    size = max(1, int(chunk_bytes // per_class))
    return [idx[i : i + size] for i in range(0, len(idx), size)]


def segment_metrics(
    store: ScoreStore,
    ground_truth: GroundTruth,
    durations: Mapping[str, float],
    thresholds: Sequence[float] = (0.5,),
    *,
    classes: Sequence[str] | None = None,
    segment_length: float = 1.0,
    max_fpr: float = 0.1,
    time_decimals: int = 6,
    chunk_bytes: int = 256 * 1024**2,
) -> dict:
    """Segment-based pAUROC (upstream: 1 s segments, max_fpr 0.1) and segment-based F1 at thresholds.

    Returns:
        ``{"pauroc": {class: value, "mean": value}, "f1": {threshold: {"f1": ..., "precision": ...,
        "recall": ..., "stats": ...}}}``; ``pauroc["mean"]`` is upstream's ``val/pauroc``.
    """
    from sed_scores_eval.base_modules.precision_recall import (
        micro_average,
        single_fscore_from_intermediate_statistics,
    )
    from sed_scores_eval.base_modules.roc import auroc_from_intermediate_statistics
    from sed_scores_eval.segment_based.intermediate_statistics import accumulated_intermediate_statistics

    classes = list(store.labels if classes is None else classes)
    pauroc: dict[str, float] = {}
    f1 = {float(t): {"f1": {}, "precision": {}, "recall": {}, "stats": {}} for t in thresholds}
    clip_durations = {c: float(durations[c]) for c in store.clips}
    for chunk in _class_chunks(store, classes, chunk_bytes):
        names = [store.labels[k] for k in chunk]
        frames = store.dataframes(chunk)
        gt = _chunk_ground_truth(ground_truth, store.clips, names)
        stats, _ = accumulated_intermediate_statistics(
            frames, gt, clip_durations, segment_length=segment_length, time_decimals=time_decimals
        )
        del frames
        au, _ = auroc_from_intermediate_statistics(stats, max_fpr=max_fpr)
        pauroc.update({c: float(au[c]) for c in names})
        for thr in f1:
            f, p, r, s = single_fscore_from_intermediate_statistics(stats, thr)
            for c in names:
                f1[thr]["f1"][c], f1[thr]["precision"][c], f1[thr]["recall"][c] = float(f[c]), float(p[c]), float(r[c])
                f1[thr]["stats"][c] = {k: int(v) for k, v in s[c].items()}
    pauroc["mean"] = float(np.mean([pauroc[c] for c in classes]))
    for res in f1.values():
        _averages(res, micro_average)
    return {"pauroc": pauroc, "f1": f1}


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Average precision of one class (scikit-learn's definition: sum of precision x recall steps).

    Args:
        scores: (N,) scores.
        targets: (N,) 0/1.

    Returns:
        AP in [0, 1]; ``nan`` without positives.
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets) > 0.5
    n_pos = int(targets.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], targets[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    tps = np.cumsum(y)[last]
    precision = tps / (last + 1)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def frame_map(
    store: ScoreStore, ground_truth: GroundTruth, *, classes: Sequence[str] | None = None
) -> dict[str, float] | None:
    """Frame-level AP per class over all frames of all clips, and their mean (``"mean"``).

    Frame targets come from :func:`ptsed.core.frames.events_to_frame_targets` on each clip's grid.
    Returns ``None`` when a clip's frames are not evenly spaced (e.g. scores made from detections).
    """
    from ptsed.core.frames import events_to_frame_targets

    classes = list(store.labels if classes is None else classes)
    hops = {}
    for clip in store.clips:
        ts = store.timestamps(clip)
        hop = uniform_hop(ts)
        if hop is None or abs(ts[0]) > 1e-9:
            return None
        hops[clip] = hop
    index = {c: i for i, c in enumerate(classes)}
    positives: list[list[np.ndarray]] = [[] for _ in classes]  # frame indices in the rows, per class
    for clip in store.clips:
        events = ground_truth.get(clip, ())
        if not events:
            continue
        start, t = store.span(clip)
        y = events_to_frame_targets(events, index, t, hops[clip])
        for k in np.flatnonzero(y.any(axis=1)):
            positives[k].append(start + np.flatnonzero(y[k]))
    out = {}
    for c, k in index.items():
        target = np.zeros(store.num_frames, dtype=bool)
        if positives[k]:
            target[np.concatenate(positives[k])] = True
        out[c] = average_precision(store.row(store.labels.index(c)), target)
    valid = [v for v in out.values() if not np.isnan(v)]
    out["mean"] = float(np.mean(valid)) if valid else float("nan")
    return out
