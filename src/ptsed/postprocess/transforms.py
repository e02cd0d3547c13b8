"""Score transforms: a step between a model's frame scores and the :class:`PostProcessor`.

A :class:`ScoreTransform` maps :class:`FrameScores` (T, K) with the model's labels to (T, J) scores with new
labels, each output column the maximum of a group of input columns. Two ship with ptsed:

- :class:`Rollup`: adds the AudioSet-ontology parents of the classes (:mod:`ptsed.ontology`); a parent's
  frame score is the maximum of its own (when the model has the class) and all its descendants'.
- :class:`ClassMap`: maps and merges model classes into a user's vocabulary (a TSV ``model class<TAB>user
  class``), taking the maximum of merged classes; model classes the map leaves out are dropped.

Transforms compose with ``|`` (``Rollup() | ClassMap.read("map.tsv")``: roll up, then map, so a map can
name parent classes). :meth:`ScoreTransform.output_labels` checks every name against the model's labels
before any inference (an unknown name gets the closest labels as a suggestion).
:func:`with_transform` gives a post-processor that applies a transform before its chain, so events,
``scores_filtered`` and plots use the transformed classes while ``scores`` stays the model's raw output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ptsed.core.errors import ConfigError
from ptsed.core.types import Event, FrameScores
from ptsed.postprocess.decode import did_you_mean
from ptsed.postprocess.pipeline import PostProcessor

Groups = tuple[list[str], list[np.ndarray]]
"""Output labels and, per output column, the indices of the input columns it is the maximum of."""

CLASS_MAP_DIR = Path(__file__).resolve().parent.parent / "assets" / "class_maps"
"""Class maps shipped with ptsed (``--class-map desed`` is ``desed.tsv`` there)."""


class ScoreTransform:
    """Frame scores (T, K) -> (T, J): every output column the maximum of a group of input columns."""

    def groups(self, labels: Sequence[str]) -> Groups:
        """Output labels and their input column groups for input ``labels``.

        Raises:
            ConfigError: a class name the transform needs is not among ``labels``.
        """
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """The transform as plain JSON values (stored with outputs)."""
        raise NotImplementedError

    def output_labels(self, labels: Sequence[str]) -> list[str]:
        """The labels of the transformed scores (checks the names; call it before inference)."""
        return self._groups(labels)[0]

    def _groups(self, labels: Sequence[str]) -> Groups:
        cache = self.__dict__.setdefault("_group_cache", {})
        key = tuple(labels)
        if key not in cache:
            cache.clear()
            cache[key] = self.groups(labels)
        return cache[key]

    def __call__(self, frame_scores: FrameScores) -> FrameScores:
        """The transformed copy of ``frame_scores`` (same frames and timestamps; float32)."""
        out_labels, groups = self._groups(frame_scores.labels)
        scores = np.asarray(frame_scores.scores)
        out = np.empty((scores.shape[0], len(groups)), dtype=np.float32)
        for j, cols in enumerate(groups):
            out[:, j] = scores[:, cols[0]] if len(cols) == 1 else scores[:, cols].max(axis=1)
        meta = {**frame_scores.meta, "transform": self.settings()}
        return FrameScores(out, frame_scores.timestamps, out_labels, frame_scores.source, frame_scores.channel, meta)

    def __or__(self, other: ScoreTransform) -> ScoreTransform:
        return Chain([self, other])


class Chain(ScoreTransform):
    """Transforms applied in order."""

    def __init__(self, steps: Sequence[ScoreTransform]) -> None:
        self.steps: list[ScoreTransform] = []
        for s in steps:
            self.steps += s.steps if isinstance(s, Chain) else [s]

    def groups(self, labels: Sequence[str]) -> Groups:
        cur_labels = list(labels)
        cur = [np.array([i]) for i in range(len(labels))]
        for step in self.steps:
            cur_labels, g = step._groups(cur_labels)
            cur = [np.unique(np.concatenate([cur[i] for i in cols])) for cols in g]
        return cur_labels, cur

    def settings(self) -> dict[str, Any]:
        return {"chain": [s.settings() for s in self.steps]}


class Rollup(ScoreTransform):
    """Adds the ontology parents (all ancestors) of the classes; a parent's score is the maximum of its own
    and its descendants'. Parents the model lacks are appended after the model's classes, in order of first
    appearance; classes outside the ontology (and names it does not know) pass unchanged.

    Args:
        ontology: default: the shipped AudioSet ontology (:func:`ptsed.ontology.load`).
    """

    def __init__(self, ontology: Any = None) -> None:
        self._ontology = ontology

    @property
    def ontology(self) -> Any:
        if self._ontology is None:
            from ptsed import ontology

            self._ontology = ontology.load()
        return self._ontology

    def groups(self, labels: Sequence[str]) -> Groups:
        onto = self.ontology
        mids = [onto.find(lab) for lab in labels]
        column = {m: i for i, m in enumerate(mids) if m is not None}
        out_labels = list(labels)
        members: list[set[int]] = [{i} for i in range(len(labels))]
        for i, m in enumerate(mids):
            if m is None:
                continue
            for a in onto.ancestor_mids(m):
                if a not in column:
                    column[a] = len(out_labels)
                    out_labels.append(onto.name(a))
                    members.append(set())
                members[column[a]].add(i)
        return out_labels, [np.array(sorted(s)) for s in members]

    def settings(self) -> dict[str, Any]:
        return {"rollup": "audioset-ontology"}


class ClassMap(ScoreTransform):
    """Maps model classes onto user classes (maximum of merged classes); unlisted model classes are dropped.

    Args:
        pairs: ``(model class, user class)`` pairs; a model class may feed several user classes.
        source: where the pairs come from (named in messages).
        lines: the file line of each pair (for messages).
    """

    def __init__(self, pairs: Sequence[tuple[str, str]], source: str = "class map", lines: Sequence[int] = ()) -> None:
        if not pairs:
            raise ConfigError(f"{source} maps no class")
        self.pairs = [(str(a), str(b)) for a, b in pairs]
        self.source = source
        self.lines = list(lines) or list(range(1, len(self.pairs) + 1))

    @classmethod
    def read(cls, path: str | Path) -> ClassMap:
        """A class map from a TSV file: ``model class<TAB>user class`` per line; ``#`` starts a comment line;
        an optional header ``model_class<TAB>user_class``. A bare name (``desed``) is a map shipped with ptsed.

        Raises:
            ConfigError: a missing file or a line without exactly two tab-separated names.
        """
        p = Path(path)
        if not p.is_file() and (CLASS_MAP_DIR / f"{path}.tsv").is_file():
            p = CLASS_MAP_DIR / f"{path}.tsv"
        if not p.is_file():
            shipped = ", ".join(sorted(f.stem for f in CLASS_MAP_DIR.glob("*.tsv")))
            raise ConfigError(f"class map {str(path)!r} does not exist (maps shipped with ptsed: {shipped})")
        pairs, lines = [], []
        for n, raw in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            row = [c.strip() for c in raw.split("\t")]
            if len(row) != 2 or not all(row):
                raise ConfigError(f"class map {str(p)!r} line {n}: expected 'model class<TAB>user class', got {raw!r}")
            if not pairs and row[0].casefold() in ("model_class", "model class") and not lines:
                continue  # header
            pairs.append((row[0], row[1]))
            lines.append(n)
        return cls(pairs, source=f"class map {str(p)!r}", lines=lines)

    def groups(self, labels: Sequence[str]) -> Groups:
        exact = {lab: i for i, lab in enumerate(labels)}
        folded = {lab.casefold(): i for i, lab in enumerate(labels)}
        out: dict[str, list[int]] = {}
        for (model_class, user_class), line in zip(self.pairs, self.lines, strict=True):
            i = exact.get(model_class, folded.get(model_class.casefold()))
            if i is None:
                raise ConfigError(
                    f"{self.source} line {line}: the model has no class {model_class!r}"
                    f"{did_you_mean(model_class, labels)}"
                )
            out.setdefault(user_class, [])
            if i not in out[user_class]:
                out[user_class].append(i)
        return list(out), [np.array(sorted(v)) for v in out.values()]

    def settings(self) -> dict[str, Any]:
        return {"class_map": [list(p) for p in self.pairs]}


@dataclass
class TransformingPostProcessor(PostProcessor):
    """A :class:`PostProcessor` that applies ``transform`` to the frame scores before its chain (median filter,
    thresholds, ...), so events and filtered scores are of the transformed classes."""

    transform: ScoreTransform | None = None

    def output_labels(self, labels: Sequence[str]) -> list[str]:
        """The classes events are reported for, given the model's ``labels``."""
        return list(labels) if self.transform is None else self.transform.output_labels(labels)

    def _apply(self, frame_scores: FrameScores) -> FrameScores:
        return frame_scores if self.transform is None else self.transform(frame_scores)

    def filter(self, frame_scores: FrameScores, hop_s: float | None = None) -> FrameScores:
        return super().filter(self._apply(frame_scores), hop_s)

    def events(self, frame_scores: FrameScores, filename: str | None = None, **kwargs: Any) -> list[Event]:
        return super().events(self._apply(frame_scores), filename, **kwargs)

    def settings(self) -> dict[str, Any]:
        out = super().settings()
        if self.transform is not None:
            out["transform"] = self.transform.settings()
        return out


def with_transform(postprocessor: PostProcessor, transform: ScoreTransform | None) -> PostProcessor:
    """``postprocessor`` with ``transform`` applied before it (the same object when ``transform`` is None)."""
    if transform is None:
        return postprocessor
    if isinstance(postprocessor, TransformingPostProcessor):  # keeps its class (e.g. the cSEBB decoder)
        before = postprocessor.transform
        return postprocessor.with_options(transform=transform if before is None else before | transform)
    values = {f.name: getattr(postprocessor, f.name) for f in fields(postprocessor) if f.init and f.name != "_cache"}
    values["transform"] = transform
    return TransformingPostProcessor(**values)


def keep_stored_classes(
    postprocessor: PostProcessor, labels: Sequence[str], from_checkpoint: Sequence[str] | None = None
) -> PostProcessor:
    """``postprocessor`` with the per-class values a fine-tuned checkpoint stored (the fields named by
    ``from_checkpoint``, default ``postprocessor.from_checkpoint``) kept only for the classes still reported
    (``labels``: after a transform); they name the model's classes."""
    from collections.abc import Mapping

    keep = set(labels)
    names = postprocessor.from_checkpoint if from_checkpoint is None else from_checkpoint
    stored = [f for f in names if isinstance(getattr(postprocessor, f, None), Mapping)]
    if not stored:
        return postprocessor
    return postprocessor.with_options(
        **{f: {k: v for k, v in getattr(postprocessor, f).items() if k in keep} for f in stored}
    )


def check_classes(postprocessor: PostProcessor, labels: Sequence[str]) -> None:
    """Check a post-processor's ``include``/``exclude`` names and per-class settings against the classes events
    are reported for (``labels``: after any transform), before inference.

    Raises:
        ConfigError: an unknown class name, with the closest names as a suggestion.
    """
    postprocessor.class_indices(list(labels))


class TransformedSource:
    """An evaluation source (:mod:`ptsed.evaluation.sources`: score files or a model) whose clips' scores go
    through ``transform``; everything else is the wrapped source's."""

    def __init__(self, source: Any, transform: ScoreTransform) -> None:
        self._source = source
        self.transform = transform
        self.labels = transform.output_labels(list(source.labels))

    def _apply(self, clip: tuple[np.ndarray, np.ndarray, list[str]]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        scores, timestamps, labels = clip
        fs = self.transform(FrameScores(np.asarray(scores), np.asarray(timestamps), list(labels)))
        return fs.scores, fs.timestamps, fs.labels

    def read(self, name: str, duration_s: float | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        return self._apply(self._source.read(name, duration_s))

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") or attr == "_source":  # copies and pickles look these up before __init__
            raise AttributeError(attr)
        inner = getattr(self._source, attr)
        if attr != "iter_read":
            return inner

        def iter_read(names: Sequence[str]):  # noqa: ANN202
            for name, clip, error in inner(names):
                yield name, (None if clip is None else self._apply(clip)), error

        return iter_read
