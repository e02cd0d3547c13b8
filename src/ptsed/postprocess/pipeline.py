"""The post-processing chain from frame probabilities to events, with every length in seconds.

median filter (per class or one for all) -> optional top-k per frame -> threshold (strict ``>``, per class
or one) -> contiguous regions -> gap merging -> minimum duration -> events.

This is the stage after a score source (:mod:`ptsed.inference.source`): it sees frame scores only, never a
model. :meth:`PostProcessor.for_model` is the one place that decides the settings of a run: explicit
options, then a profile (``--postprocess FILE``), then the profile stored in a fine-tuned checkpoint, then
the defaults; and the event order of upstream mode.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ptsed.core.errors import ConfigError
from ptsed.core.frames import FRAME_HOP_S
from ptsed.core.types import Event, FrameScores
from ptsed.postprocess.decode import decode_events, did_you_mean, per_class
from ptsed.postprocess.filters import filter_sizes, median_filter

if TYPE_CHECKING:  # pragma: no cover
    from ptsed.postprocess.profile import Profile

DEFAULT_THRESHOLD = 0.5
DEFAULT_MEDIAN_FILTER_S = 0.36
"""Upstream's median filter: 9 frames of 40 ms."""

PerClass = float | Sequence[float] | Mapping[str, float]

BLOCK_VALUES = 4_000_000
"""Scores (frames x classes) filtered at a time by :meth:`PostProcessor.events`: 16 MB of float32, so a
10 s clip is one block and a 3-hour file is filtered a few classes at a time."""


def read_class_values(path: str | Path, what: str = "value") -> dict[str, float]:
    """Per-class values from a file: JSON ``{"label": value}``, or a table with a label and a value per line.

    Tables are tab-separated (``label<TAB>value``) or comma-separated with the label quoted when it holds
    commas (``"Accelerating, revving, vroom",0.3``). A first line whose value is not a number is a header;
    ``#`` starts a comment.

    Raises:
        ConfigError: a missing file or a line that cannot be read.
    """
    from ptsed.io.tables import read_rows, read_text

    path = Path(path)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(read_text(path, f"{what} file"))
            return {str(k): float(v) for k, v in data.items()}
        except (ValueError, AttributeError, TypeError) as err:
            raise ConfigError(f"{what} file {str(path)!r} is not a JSON object of label: number ({err})") from err
    out: dict[str, float] = {}
    for i, row in enumerate(read_rows(path, f"{what} file")):
        if len(row) < 2:
            raise ConfigError(f"{what} file {str(path)!r}: line {i + 1} has no value: {row!r}")
        label, value = row[0].strip(), row[-1].strip()
        try:
            out[label] = float(value)
        except ValueError:
            if i == 0:
                continue  # header
            raise ConfigError(f"{what} file {str(path)!r}: line {i + 1}: {value!r} is not a number") from None
    return out


def stored_postprocess(models: Sequence[Any]) -> dict[str, Any]:
    """:class:`PostProcessor` fields stored in a fine-tuned checkpoint (``checkpoint_extra["postprocess"]``:
    per-class ``thresholds`` and ``median_filter_s``, chosen on validation data by ``ptsed finetune``);
    empty for released checkpoints and for ensembles (whose averaged scores no single choice fits).

    Args:
        models: the models of a run (anything with a ``checkpoint_extra`` mapping, e.g. ``SEDModel``).
    """
    if len(models) != 1:
        return {}
    stored = (getattr(models[0], "checkpoint_extra", None) or {}).get("postprocess") or {}
    out: dict[str, Any] = {}
    if stored.get("thresholds"):
        out["threshold"] = {str(k): float(v) for k, v in stored["thresholds"].items()}
    if stored.get("median_filter_s"):
        out["median_filter_s"] = {str(k): float(v) for k, v in stored["median_filter_s"].items()}
    return out


def resolve_class_names(names: Sequence[str], labels: Sequence[str]) -> list[int]:
    """Indices of class names (exact, else case-insensitive match); unknown names raise ``ConfigError``."""
    exact = {lab: i for i, lab in enumerate(labels)}
    folded = {lab.casefold(): i for i, lab in enumerate(labels)}
    out = []
    for name in names:
        if name in exact:
            out.append(exact[name])
        elif name.casefold() in folded:
            out.append(folded[name.casefold()])
        else:
            raise ConfigError(f"unknown class {name!r}{did_you_mean(name, labels)}")
    return out


@dataclass
class PostProcessor:
    """Frame probabilities -> median-filtered scores and events. All lengths in seconds.

    Attributes:
        threshold: one threshold for all classes, K values, or a mapping label -> threshold (classes
            missing from it use ``default_threshold``). Active frames are ``score > threshold``.
        median_filter_s: filter length: one for all classes, K values, or a mapping label -> seconds
            (missing classes use ``DEFAULT_MEDIAN_FILTER_S``); rounded to the nearest whole number of frames
            (0.36 s -> 9 frames, upstream's setting); ``None`` or 0 disables it.
        min_duration_s: drop events shorter than this (one, K, or a mapping).
        merge_gap_s: join events of one class separated by at most this (one, K, or a mapping).
        top_k: at each frame only the ``top_k`` highest-scoring classes can be active (``None``: all).
        include: class names to report (``None``: all); case-insensitive.
        exclude: class names never reported.
        default_threshold: threshold of classes a threshold mapping leaves out.
        sort: ``"onset"`` (events in time order) or ``"class"`` (upstream's order: class index, then onset).
    """

    threshold: PerClass = DEFAULT_THRESHOLD
    median_filter_s: PerClass | None = DEFAULT_MEDIAN_FILTER_S
    min_duration_s: PerClass = 0.0
    merge_gap_s: PerClass = 0.0
    top_k: int | None = None
    include: Sequence[str] | None = None
    exclude: Sequence[str] | None = None
    default_threshold: float = DEFAULT_THRESHOLD
    sort: str = "onset"
    from_checkpoint: tuple[str, ...] = field(default=(), compare=False)
    """The fields (``threshold``, ``median_filter_s``) taken from a checkpoint by :meth:`for_model`."""
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def for_model(
        cls,
        models: Any = (),
        options: Mapping[str, Any] | None = None,
        *,
        profile: Profile | None = None,
        upstream: bool = False,
    ) -> PostProcessor:
        """The post-processing of a run, decided in one place.

        Precedence, highest first: ``options`` (explicit settings, e.g. ``--threshold``), ``profile``
        (``--postprocess FILE``), the per-class thresholds and median filters stored in a fine-tuned
        checkpoint (one model; :func:`stored_postprocess`), the defaults. Upstream mode reports events in
        upstream's order (``sort="class"``) unless ``options`` name a ``sort``.

        Args:
            models: a model, a list of models (an ensemble stores nothing), or ``()`` (saved scores).
            options: :class:`PostProcessor` fields.
            profile: a :class:`~ptsed.postprocess.profile.Profile`.
            upstream: the scores come from upstream chunking (``Predictor(upstream_chunking=True)``).

        Returns:
            A :class:`PostProcessor` whose ``from_checkpoint`` names the fields the checkpoint set.
        """
        given = dict(options or {})
        if profile is not None:
            given = profile.apply(given)
        listed = list(models) if isinstance(models, (list, tuple)) else [models]
        stored = stored_postprocess(listed)
        fields = {"sort": "class" if upstream else "onset", **stored, **given}
        return cls(**fields, from_checkpoint=tuple(sorted(set(stored) - set(given))))

    def __post_init__(self) -> None:
        if self.sort not in ("onset", "class"):
            raise ConfigError(f"sort must be 'onset' or 'class', not {self.sort!r}")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"top_k must be >= 1, not {self.top_k}")
        for name in ("threshold", "median_filter_s", "min_duration_s", "merge_gap_s"):
            value = getattr(self, name)
            if isinstance(value, (str, Path)):
                setattr(self, name, read_class_values(value, name.replace("_s", "").replace("_", " ")))

    def with_options(self, **changes: Any) -> PostProcessor:
        """A copy with some settings changed."""
        return replace(self, **changes, _cache={})

    # -- resolved per-class settings --------------------------------------------------------------------
    def _resolved(self, labels: Sequence[str]) -> dict[str, Any]:
        key = tuple(labels)
        if key not in self._cache:
            mf = self.median_filter_s
            lengths = None if mf is None else per_class(mf, labels, DEFAULT_MEDIAN_FILTER_S, "median filter length")
            classes: np.ndarray | None = None
            if self.include is not None or self.exclude is not None:
                keep = np.zeros(len(labels), bool)
                keep[resolve_class_names(self.include, labels) if self.include is not None else slice(None)] = True
                if self.exclude:
                    keep[resolve_class_names(self.exclude, labels)] = False
                classes = np.flatnonzero(keep)
            self._cache = {
                key: {
                    "thresholds": per_class(self.threshold, labels, self.default_threshold, "threshold"),
                    "median": lengths,
                    "min_duration": per_class(self.min_duration_s, labels, 0.0, "minimum duration"),
                    "merge_gap": per_class(self.merge_gap_s, labels, 0.0, "merge gap"),
                    "classes": classes,
                }
            }
        return self._cache[key]

    def median_filter_lengths(self, labels: Sequence[str]) -> float | dict[str, float] | None:
        """The median filter length of every class in seconds: one number when all classes share it,
        ``None`` when no class is filtered, else ``{label: seconds}``."""
        lengths = self._resolved(labels)["median"]
        if lengths is None or not (lengths > 0).any():
            return None
        if (lengths == lengths[0]).all():
            return float(lengths[0])
        return {lab: float(v) for lab, v in zip(labels, lengths, strict=True)}

    def class_indices(self, labels: Sequence[str]) -> np.ndarray:
        """Indices of the classes events are reported for (include/exclude applied)."""
        classes = self._resolved(labels)["classes"]
        return np.arange(len(labels)) if classes is None else classes

    # -- the chain --------------------------------------------------------------------------------------
    def filter(self, frame_scores: FrameScores, hop_s: float | None = None) -> FrameScores:
        """Median-filtered copy of ``frame_scores`` (same frames, timestamps and labels)."""
        lengths = self._resolved(frame_scores.labels)["median"]
        hop = hop_s if hop_s is not None else _hop_of(frame_scores)
        scores = frame_scores.scores if lengths is None else median_filter(frame_scores.scores, list(lengths), hop)
        return FrameScores(
            scores=np.asarray(scores, dtype=np.float32),
            timestamps=frame_scores.timestamps,
            labels=list(frame_scores.labels),
            source=frame_scores.source,
            channel=frame_scores.channel,
            meta={**frame_scores.meta, "median_filter_s": self.median_filter_s},
        )

    def decode(self, filtered: FrameScores, filename: str | None = None) -> list[Event]:
        """Events from already filtered scores."""
        r = self._resolved(filtered.labels)
        events = decode_events(
            filtered.scores,
            filtered.timestamps,
            filtered.labels,
            r["thresholds"],
            filename=filtered.source if filename is None else filename,
            channel=filtered.channel,
            min_duration_s=r["min_duration"],
            merge_gap_s=r["merge_gap"],
            classes=r["classes"],
            top_k=self.top_k,
        )
        return self._sorted(events, filtered.labels)

    def events(
        self, frame_scores: FrameScores, filename: str | None = None, block_values: int = BLOCK_VALUES
    ) -> list[Event]:
        """Events of raw frame scores; the same events as ``decode(filter(frame_scores))``.

        The scores are filtered and decoded a block of classes at a time (about ``block_values`` scores per
        block), so memory beyond ``frame_scores`` stays small for files of any length: a 3-hour file's
        (270000, 447) scores need no filtered copy. With ``top_k``, the per-frame top-k mask (T, K bool) is
        computed first, in blocks of frames filtered with enough context to equal the whole-file filter.
        """
        labels = frame_scores.labels
        r = self._resolved(labels)
        scores = frame_scores.scores
        t, k = scores.shape
        hop = _hop_of(frame_scores)
        lengths = r["median"]
        classes = np.arange(k) if r["classes"] is None else r["classes"]
        allowed = None
        if self.top_k is not None and self.top_k < k:
            allowed = self._top_k_mask(scores, lengths, hop, block_values)
        step = max(1, block_values // max(t, 1))
        out: list[Event] = []
        for i in range(0, len(classes), step):
            cols = classes[i : i + step]
            block = scores[:, cols]
            if lengths is not None:
                block = median_filter(block, list(lengths[cols]), hop)
            out += decode_events(
                block,
                frame_scores.timestamps,
                [labels[c] for c in cols],
                r["thresholds"][cols],
                filename=frame_scores.source if filename is None else filename,
                channel=frame_scores.channel,
                min_duration_s=r["min_duration"][cols],
                merge_gap_s=r["merge_gap"][cols],
                allowed=None if allowed is None else allowed[:, cols],
            )
        return self._sorted(out, labels)

    def _top_k_mask(self, scores: np.ndarray, lengths: np.ndarray | None, hop: float, block_values: int) -> np.ndarray:
        """(T, K) bool: the ``top_k`` highest filtered scores of each frame, filtered in blocks of frames."""
        assert self.top_k is not None
        t, k = scores.shape
        halo = 0 if lengths is None else max(filter_sizes(list(lengths), hop)) // 2
        keep = np.zeros((t, k), dtype=bool)
        step = max(1, block_values // k)
        for a in range(0, t, step):
            b = min(t, a + step)
            lo, hi = max(0, a - halo), min(t, b + halo)
            block = scores[lo:hi] if lengths is None else median_filter(scores[lo:hi], list(lengths), hop)
            top = np.argpartition(-block[a - lo : b - lo], self.top_k - 1, axis=1)[:, : self.top_k]
            np.put_along_axis(keep[a:b], top, True, axis=1)
        return keep

    def _sorted(self, events: list[Event], labels: Sequence[str]) -> list[Event]:
        if self.sort == "onset":
            index = {lab: i for i, lab in enumerate(labels)}
            events.sort(key=lambda e: (e.onset, index[e.label], e.offset))
        return events

    def stream_events(self, streams: Sequence[FrameScores], filename: str | None = None) -> list[Event]:
        """Events of all streams of one input (the mono mix, or every channel): with ``sort="onset"``,
        several channels' events are merged in time order (onset, class, channel)."""
        events: list[Event] = []
        for fs in streams:
            events.extend(self.events(fs, filename=filename))
        if len(streams) > 1 and self.sort == "onset":
            index = {lab: i for i, lab in enumerate(streams[0].labels)}  # mapped classes (--rollup) sort last
            events.sort(key=lambda e: (e.onset, index.get(e.label, len(index)), e.channel or 0))
        return events

    def __call__(self, frame_scores: FrameScores, filename: str | None = None) -> tuple[FrameScores, list[Event]]:
        """``(filtered frame scores, events)``; :meth:`events` gives the events without the filtered copy."""
        filtered = self.filter(frame_scores)
        return filtered, self.decode(filtered, filename)

    def settings(self) -> dict[str, Any]:
        """The settings as plain JSON values (stored with outputs, hashed for ``--resume``)."""

        def plain(v: Any) -> Any:
            if isinstance(v, Mapping):
                return {str(k): float(x) for k, x in sorted(v.items())}
            if isinstance(v, np.ndarray) or (isinstance(v, Sequence) and not isinstance(v, str)):
                return [plain(x) for x in v]
            return v

        return {
            "threshold": plain(self.threshold),
            "median_filter_s": plain(self.median_filter_s),
            "min_duration_s": plain(self.min_duration_s),
            "merge_gap_s": plain(self.merge_gap_s),
            "top_k": self.top_k,
            "include": list(self.include) if self.include is not None else None,
            "exclude": list(self.exclude) if self.exclude is not None else None,
            "default_threshold": self.default_threshold,
            "sort": self.sort,
        }


def _hop_of(fs: FrameScores) -> float:
    hop = fs.meta.get("hop_s")
    if hop:
        return float(hop)
    if fs.timestamps.size >= 3:
        return float(np.round(fs.timestamps[1] - fs.timestamps[0], 9))
    return FRAME_HOP_S
