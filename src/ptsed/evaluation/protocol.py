"""Evaluation protocols and the function that runs one: :func:`evaluate`.

``audioset-strong`` is upstream's (``ex_audioset_strong.py``), the protocol behind the paper's numbers:

1. the classes are those both in the system's vocabulary (the 447 training classes) and in the ground
   truth (407 on AudioSet-strong eval);
2. ground-truth events of other classes are removed, then clips without events are dropped;
3. scores get a class-wise median filter of 0.36 s (9 frames);
4. every clip is scored as exactly 10 s of audio (cut or zero-padded), in one window;
5. PSDS with dtc = gtc = 0.7, no cross-trigger term, alpha_st = 1, max eFPR 100/h: ``psds1`` is
   sed_scores_eval's ``psds`` value and ``psds1_macro`` the mean single-class PSDS (the paper's number);
   segment-based pAUROC with 1 s segments and max FPR 0.1.

Without a protocol, every class common to the ground truth and the scores counts, clips without events
stay (they can only add false positives), and there is no median filter unless asked for.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ptsed.core.errors import ConfigError, PtsedError
from ptsed.evaluation.metrics import PSDS1, PSDS2, PSDSResult, collar_f1, frame_map, psds, segment_metrics
from ptsed.evaluation.scores import DEFAULT_MEMORY_LIMIT, ScoreStore, check_probabilities
from ptsed.io.annotations import Events, clip_id, match_clip_ids, merge_overlapping_events


@dataclass(frozen=True)
class Protocol:
    """How ground truth and scores are prepared before the metrics.

    Attributes:
        name: protocol name (``"none"`` for the plain evaluation).
        median_filter_s: default median filter length in seconds (``None``: none).
        drop_clips_without_events: drop clips left without events after the class restriction.
        clip_s: models score each clip as exactly this many seconds (cut / zero-padded), in one window.
        vocabulary: the classes a detection system is assumed to know (a ptsed label vocabulary).
        expected_classes: the class count the protocol yields on its reference data (a note only).
        clip_list: compare the clips with the published eval list (:mod:`ptsed.evaluation.clip_list`),
            score only clips in it, and take durations missing from ``durations`` from it.
    """

    name: str
    median_filter_s: float | None = None
    drop_clips_without_events: bool = False
    clip_s: float | None = None
    vocabulary: str | None = None
    expected_classes: int | None = None
    clip_list: bool = False


NO_PROTOCOL = Protocol("none")
AUDIOSET_STRONG = Protocol(
    "audioset-strong",
    median_filter_s=0.36,
    drop_clips_without_events=True,
    clip_s=10.0,
    vocabulary="audioset_strong_447",
    expected_classes=407,
    clip_list=True,
)
PROTOCOLS = {p.name: p for p in (NO_PROTOCOL, AUDIOSET_STRONG)}

METRICS = ("psds1", "psds2", "pauroc", "collar_f1", "segment_f1", "frame_map")
"""Every metric :func:`evaluate` can compute (all by default)."""

_UNSET = object()


def get_protocol(name: str | Protocol | None) -> Protocol:
    if name is None:
        return NO_PROTOCOL
    if isinstance(name, Protocol):
        return name
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


@dataclass
class EvaluationResult:
    """What :func:`evaluate` returns.

    Attributes:
        summary: the numbers and the bookkeeping (written as ``summary.json``).
        per_class: one dict per evaluated class (written as ``per_class.csv``).
        psds: ``"psds1"`` / ``"psds2"`` -> :class:`PSDSResult` (with the PSD-ROC curves).
    """

    summary: dict
    per_class: list[dict]
    psds: dict[str, PSDSResult] = field(default_factory=dict)

    def save(self, out_dir, *, plot: bool = True) -> dict:  # noqa: ANN001
        """Write ``summary.json``, ``per_class.csv`` and ``psd_roc.png`` into ``out_dir``; returns the paths."""
        from ptsed.evaluation.report import save_result

        return save_result(self, out_dir, plot=plot)

    def table(self) -> str:
        from ptsed.evaluation.report import format_summary

        return format_summary(self)


def _warn(msg: str) -> None:
    print(f"ptsed evaluate: {msg}", file=sys.stderr)


def _some(names: Sequence[str], n: int = 5) -> str:
    """The first ``n`` names, comma-separated, with `` ...`` when there are more."""
    return ", ".join(names[:n]) + (" ..." if len(names) > n else "")


def evaluate(
    source,  # noqa: ANN001 - a ScoreFiles, Detections or ModelScores
    ground_truth: Mapping[str, Events],
    durations: Mapping[str, float] | None = None,
    *,
    protocol: str | Protocol | None = None,
    median_filter_s: float | None | object = _UNSET,
    thresholds: Sequence[float] = (0.5,),
    metrics: Sequence[str] = METRICS,
    memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT,
    progress: bool = False,
    warn: Callable[[str], None] | None = _warn,
    on_clip: Callable[[str, np.ndarray, np.ndarray, list[str]], None] | None = None,
) -> EvaluationResult:
    """Evaluate scores against strong labels.

    Args:
        source: see :mod:`ptsed.evaluation.sources`.
        ground_truth: clip id -> events (see :func:`ptsed.io.annotations.read_ground_truth`).
        durations: clip id -> seconds. Clips without one take the end of their scores (and are counted).
        protocol: ``"audioset-strong"``, ``None`` (plain) or a :class:`Protocol`.
        median_filter_s: filter length in seconds applied to the scores (saved ones included), or a mapping
            label -> seconds (classes not in it are not filtered); default: the protocol's. ``None`` or 0
            disables it. Not applied to detections.
        thresholds: decision thresholds of the collar- and segment-based F1.
        metrics: a subset of :data:`METRICS`.
        memory_limit_bytes: scores beyond this size are kept in a memory-mapped temporary file.
        progress: progress bars.
        warn: called with each warning (``None``: silent).
        on_clip: called with (name, scores (T, K), timestamps, labels) of each clip as read, before any
            filter (e.g. to save a model's scores).

    Returns:
        An :class:`EvaluationResult`.

    Raises:
        ConfigError: nothing to evaluate (no common clips or classes), unknown metric names.
    """
    from ptsed.extras import require

    require("eval", what="ptsed.evaluation")  # before a model source spends its inference time
    proto = get_protocol(protocol)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; known: {', '.join(METRICS)}")
    warn = warn or (lambda msg: None)
    mf = proto.median_filter_s if median_filter_s is _UNSET else median_filter_s
    if isinstance(mf, Mapping):  # per-class lengths (a fine-tuned model's stored median filters)
        mf = {str(k): float(v) for k, v in mf.items()} if any(float(v) > 0 for v in mf.values()) else None
    else:
        mf = float(mf) if mf else None
    if mf is not None and not getattr(source, "filterable", True):
        warn(f"the median filter ({mf} s) is not applied to detections")
        mf = None

    # -- ground truth, merged ------------------------------------------------------------------------
    gt: dict[str, Events] = {}
    merged = 0
    for clip, events in ground_truth.items():
        gt[clip], n = merge_overlapping_events(events)
        merged += n

    # -- clips: ground truth x predictions -----------------------------------------------------------
    names = source.names()
    if names is None:
        name_of = {c: c for c in gt}
        extra = 0
    else:
        mapping = match_clip_ids(names, gt)
        name_of = {}
        for name, clip in mapping.items():
            name_of.setdefault(clip, name)
        extra = len(names) - len(mapping)
    clip_list = None
    if proto.clip_list:  # the published eval list: report what is missing or extra, score the intersection
        from ptsed.evaluation.clip_list import compare, published_eval_clips

        published = published_eval_clips()
        predicted = set(name_of)
        if names is not None:
            found = match_clip_ids(names, set(gt) | set(published))
            predicted |= set(found.values()) | {clip_id(n) for n in names if n not in found}
        clip_list = compare(predicted, gt, published)
        if clip_list.applied:
            gt = {c: ev for c, ev in gt.items() if c in published}
            name_of = {c: n for c, n in name_of.items() if c in published}
            durations = {**published, **(durations or {})}
        warn(clip_list.line())
    missing = sorted(c for c in gt if c not in name_of)
    if missing:
        warn(
            f"{len(missing)} of {len(gt)} ground-truth clips have no predictions and are left out (e.g. {missing[0]!r})"
        )
    if extra:
        warn(f"{extra} prediction files match no ground-truth clip and are ignored")
    avail = sorted(name_of)
    if not avail:
        raise ConfigError("no clip of the ground truth has predictions: check that the file names match")

    # -- classes: system vocabulary x ground truth ---------------------------------------------------
    gt_classes = {e[2] for c in avail for e in gt[c]}
    labels = list(source.labels)
    if getattr(source, "open_vocabulary", False):
        if proto.vocabulary is not None:
            from ptsed.hub.labels import get_labels

            labels = get_labels(proto.vocabulary)
        else:
            labels = labels + sorted(gt_classes - set(labels))
        source = source.with_labels(labels)  # a class never detected is scored (all 0: recall 0)
    classes = [c for c in labels if c in gt_classes]
    dropped_classes = sorted(gt_classes - set(labels))
    unscored = [c for c in labels if c not in gt_classes]
    ignored = sorted(set(getattr(source, "detected_labels", ())) - gt_classes)
    if ignored:
        warn(f"detections of {len(ignored)} label(s) not in the ground truth are ignored: {_some(ignored)}")
    if dropped_classes:
        warn(f"{len(dropped_classes)} ground-truth classes are unknown to the system and not evaluated: "
             f"{_some(dropped_classes)}")  # fmt: skip
    if not classes:
        raise ConfigError("the ground truth and the scores share no class")
    if proto.expected_classes is not None and len(classes) != proto.expected_classes:
        warn(f"{len(classes)} classes are evaluated; the {proto.name} protocol gives "
             f"{proto.expected_classes} on the full eval set")  # fmt: skip
    keep = set(classes)
    gt = {c: [e for e in gt[c] if e[2] in keep] for c in avail}
    dropped_clips = []
    if proto.drop_clips_without_events:
        dropped_clips = [c for c in avail if not gt[c]]
        avail = [c for c in avail if gt[c]]

    # -- scores ------------------------------------------------------------------------------------
    durations = dict(durations or {})
    dur: dict[str, float] = {}
    no_duration = []
    failed: dict[str, str] = {}
    store = ScoreStore(
        classes, dtype=getattr(source, "dtype", np.float32), median_filter_s=mf, memory_limit_bytes=memory_limit_bytes
    )
    names = [name_of[c] for c in avail]
    clip_of = {name_of[c]: c for c in avail}
    for name, clip_scores, error in _read_all(source, names, {n: durations.get(clip_of[n]) for n in names}, progress):
        clip = clip_of[name]
        if error is None:
            try:
                scores, ts, cols = clip_scores
                check_probabilities(scores, clip)
                store.add(clip, scores, ts, cols)
            except PtsedError as err:
                error = str(err)
        if error is not None:
            failed[clip] = error
            continue
        if on_clip is not None:
            on_clip(name, scores, ts, cols)
        known = durations.get(clip)
        if known is None:
            no_duration.append(clip)
            known = float(ts[-1])
        dur[clip] = float(known)
    if failed:
        warn(f"{len(failed)} clips failed and are left out: " + "; ".join(list(failed.values())[:3]))
    if no_duration:
        warn(f"{len(no_duration)} clips have no duration given; the end of their scores is used "
             f"(e.g. {no_duration[0]!r})")  # fmt: skip
    store.finalize()
    try:
        if len(store) == 0:
            raise ConfigError("no clip could be scored")
        gt = {c: gt[c] for c in store.clips}
        n_ref = {c: 0 for c in classes}
        for events in gt.values():
            for e in events:
                n_ref[e[2]] += 1
        eval_classes = [c for c in classes if n_ref[c] > 0]
        result = _run_metrics(store, gt, dur, eval_classes, thresholds, metrics, progress)
    finally:
        store.close()

    summary = {
        "protocol": proto.name,
        **result["summary"],
        "n_clips": len(store.clips),
        "n_classes": len(eval_classes),
        "n_events": int(sum(n_ref.values())),
        "duration_s": float(sum(dur.values())),
        "settings": {
            "median_filter_s": mf,
            "psds1": PSDS1.as_dict(),
            "psds2": PSDS2.as_dict(),
            "thresholds": [float(t) for t in thresholds],
            "segment_length_s": 1.0,
            "pauroc_max_fpr": 0.1,
            "collar": {"onset_s": 0.2, "offset_s": 0.2, "offset_rate": 0.2},
            "clip_s": proto.clip_s,
        },
        "source": getattr(source, "description", ""),
        "classes_dropped": dropped_classes,
        "classes_without_ground_truth": unscored,
        "clips_missing_predictions": missing,
        "clips_dropped_without_events": len(dropped_clips),
        "clips_failed": failed,
        "clips_without_duration": len(no_duration),
        "events_merged": merged,
    }
    if clip_list is not None:
        summary["clip_list"] = clip_list.summary()
    per_class = []
    for c in eval_classes:
        row = {"class": c, "n_events": n_ref[c]}
        for key, values in result["per_class"].items():
            row[key] = values.get(c, math.nan)
        per_class.append(row)
    return EvaluationResult(summary, per_class, result["psds"])


def _read_all(source, names: Sequence[str], durations: Mapping[str, float | None], progress: bool):  # noqa: ANN001, ANN202
    """(name, (scores, timestamps, labels) or None, error or None) per name; batched when the source can."""
    if hasattr(source, "iter_read"):
        it = source.iter_read(names)
    else:

        def one_by_one():  # noqa: ANN202
            for name in names:
                try:
                    yield name, source.read(name, durations.get(name)), None
                except PtsedError as err:
                    yield name, None, str(err)

        it = one_by_one()
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(names), desc="scores", unit="clip")
    return it


def _run_metrics(
    store: ScoreStore,
    gt: Mapping[str, Events],
    durations: Mapping[str, float],
    classes: Sequence[str],
    thresholds: Sequence[float],
    metrics: Sequence[str],
    progress: bool,
) -> dict:
    summary: dict = {}
    per_class: dict[str, dict[str, float]] = {}
    psds_out: dict[str, PSDSResult] = {}
    wanted = [(name, st) for name, st in (("psds1", PSDS1), ("psds2", PSDS2)) if name in metrics]
    if wanted:
        results = psds(store, gt, durations, [st for _, st in wanted], classes=classes, progress=progress)
        for (name, _), res in zip(wanted, results, strict=True):
            psds_out[name] = res
            summary[name] = res.value
            summary[f"{name}_macro"] = res.macro
            per_class[name] = res.per_class
    if "pauroc" in metrics or "segment_f1" in metrics:
        seg = segment_metrics(store, gt, durations, thresholds if "segment_f1" in metrics else (), classes=classes)
        if "pauroc" in metrics:
            summary["pauroc"] = seg["pauroc"]["mean"]
            per_class["pauroc"] = seg["pauroc"]
        if "segment_f1" in metrics:
            summary["segment_f1"] = _f1_summary(seg["f1"])
            for thr, res in seg["f1"].items():
                per_class[f"segment_f1@{thr:g}"] = res["f1"]
    if "collar_f1" in metrics:
        col = collar_f1(store, gt, thresholds, classes=classes)
        summary["collar_f1"] = _f1_summary(col)
        for thr, res in col.items():
            per_class[f"collar_f1@{thr:g}"] = res["f1"]
    if "frame_map" in metrics:
        ap = frame_map(store, gt, classes=classes)
        summary["frame_map"] = None if ap is None else ap["mean"]
        if ap is not None:
            per_class["frame_ap"] = ap
    return {"summary": summary, "per_class": per_class, "psds": psds_out}


def _f1_summary(res: Mapping[float, dict]) -> dict:
    return {
        f"{thr:g}": {
            "micro": r["f1"]["micro_average"],
            "macro": r["f1"]["macro_average"],
            "precision_micro": r["precision"]["micro_average"],
            "recall_micro": r["recall"]["micro_average"],
        }
        for thr, r in res.items()
    }
