"""The vocabulary options shared by ``detect``, ``tune`` and ``evaluate``: ``--rollup``, ``--class-map`` and
``--include/--exclude``; one function adds them to a parser, one builds the score transform, and the class
names are checked against the model's labels before any inference (:mod:`ptsed.postprocess.transforms`)."""

from __future__ import annotations

import argparse
from typing import Any


def add_vocabulary_arguments(p: argparse.ArgumentParser, include_exclude: bool = True) -> None:
    """Add ``--rollup``, ``--class-map`` and (unless the command has them already) ``--include/--exclude``."""
    g = p.add_argument_group("vocabulary (checked before inference)")
    g.add_argument(
        "--rollup",
        action="store_true",
        help="add the AudioSet-ontology parents of the classes (a parent's frame score is the maximum of its own "
        "and its descendants'); applied before --class-map, so a map can name parent classes",
    )
    g.add_argument(
        "--class-map",
        metavar="FILE|NAME",
        help="map and merge model classes into your classes (TSV: model class<TAB>user class; merged classes take "
        "the maximum score; unlisted classes are dropped), before decoding. 'desed' is the shipped map of the "
        "447 AudioSet-strong classes onto DESED's 10 (docs/vocabularies.md)",
    )
    if include_exclude:
        g.add_argument(
            "--include", action="append", metavar="NAME|FILE", help="report only these classes (repeatable, or a file)"
        )
        g.add_argument("--exclude", action="append", metavar="NAME|FILE", help="never report these classes")


def names_from_args(values: list[str] | None) -> list[str] | None:
    """Class names from ``--include``/``--exclude``: names, or files with one name per line."""
    if values is None:
        return None
    from pathlib import Path

    from ptsed.io.tables import read_lines

    out: list[str] = []
    for v in values:
        out.extend(read_lines(v, "class list", comments=False) if Path(v).is_file() else [v])
    return out


def build_transform(args: argparse.Namespace) -> Any:
    """The :class:`ScoreTransform` of ``--rollup`` / ``--class-map`` (roll-up first), or ``None``.

    Raises:
        ConfigError: the class map cannot be read.
    """
    from ptsed.postprocess.transforms import ClassMap, Rollup

    steps: list[Any] = []
    if getattr(args, "rollup", False):
        steps.append(Rollup())
    if getattr(args, "class_map", None):
        steps.append(ClassMap.read(args.class_map))
    if not steps:
        return None
    out = steps[0]
    for s in steps[1:]:
        out = out | s
    return out


def select_labels(args: argparse.Namespace, labels: list[str]) -> list[str]:
    """The classes ``--include/--exclude`` keep among the (transformed) ``labels``; unknown names raise a
    ``ConfigError`` naming the closest classes."""
    from ptsed.postprocess.pipeline import PostProcessor

    pp = PostProcessor(include=names_from_args(args.include), exclude=names_from_args(args.exclude))
    return [labels[i] for i in pp.class_indices(labels)]


def transform_source(args: argparse.Namespace, source: Any) -> Any:
    """An evaluation source with ``--rollup/--class-map`` applied and ``--include/--exclude`` checked and
    applied (``tune``, ``evaluate``); checked before any inference.

    Raises:
        ConfigError: an unknown class name; a transform asked for on detections.
    """
    from ptsed.core.errors import ConfigError
    from ptsed.postprocess.transforms import ClassMap, TransformedSource

    transform = build_transform(args)
    keep = None
    if args.include is not None or args.exclude is not None:
        labels = list(source.labels) if transform is None else transform.output_labels(list(source.labels))
        keep = select_labels(args, labels)
        selection = ClassMap([(lab, lab) for lab in keep], source="--include/--exclude")
        transform = selection if transform is None else transform | selection
    if transform is None:
        return source
    if not getattr(source, "filterable", True):
        raise ConfigError("--rollup, --class-map, --include and --exclude need scores or a model, not --detections")
    return TransformedSource(source, transform)


def apply_to_predictor(args: argparse.Namespace, predictor: Any, labels: list[str]) -> list[str]:
    """Put the ``--rollup/--class-map`` transform in front of ``predictor.postprocess`` and check its class
    names against the model's ``labels``; returns the classes events are reported for (check them with
    :func:`ptsed.postprocess.transforms.check_classes` once any profile has been checked)."""
    from ptsed.postprocess.transforms import keep_stored_classes, with_transform

    transform = build_transform(args)
    if transform is None:
        return list(labels)
    reported = transform.output_labels(labels)
    # per-class values stored in a fine-tuned checkpoint name the model's classes: keep those still reported
    stored = getattr(predictor, "postprocess_from_checkpoint", [])
    predictor.postprocess = keep_stored_classes(with_transform(predictor.postprocess, transform), reported, stored)
    return reported
