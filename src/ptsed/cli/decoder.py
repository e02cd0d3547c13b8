"""``--decoder`` and the cSEBB options of ``ptsed detect`` (:mod:`ptsed.postprocess.sebb`)."""

from __future__ import annotations

import argparse
from typing import Any


def add_decoder_arguments(p: argparse.ArgumentParser, fit: bool = False) -> None:
    """Add ``--decoder`` and the cSEBB settings (``fit``: ``ptsed tune``'s ``--step-grid`` instead of
    ``--step-filter``)."""
    from ptsed.evaluation.tuning_sebb import STEP_GRID_S
    from ptsed.postprocess.sebb import CONFIDENCES, DEFAULT_MERGE_THRESHOLD, DEFAULT_STEP_FILTER_S

    g = p.add_argument_group("decoder (all lengths in seconds)")
    g.add_argument(
        "--decoder",
        choices=["median", "csebb"],
        help="median: median filter, threshold, regions (default; a csebb profile given with --postprocess "
        "selects csebb); csebb: change-detection-based sound event bounding boxes (Ebbers et al., Interspeech "
        "2024), each box thresholded on its confidence; --format scores_sebb writes the boxes as score files",
    )
    if fit:
        g.add_argument(
            "--step-grid",
            type=_lengths,
            default=list(STEP_GRID_S),
            metavar="S[,S...]",
            help=f"csebb: step filter lengths tried per class (default {','.join(f'{v:g}' for v in STEP_GRID_S)})",
        )
    else:
        g.add_argument(
            "--step-filter",
            type=float,
            metavar="S",
            help=f"csebb: length of the step filter that finds the changes (default {DEFAULT_STEP_FILTER_S})",
        )
    g.add_argument(
        "--merge-threshold",
        type=float,
        metavar="X",
        help="csebb: merge neighbouring segments whose mean scores differ by less than X "
        f"(default {DEFAULT_MERGE_THRESHOLD})",
    )
    g.add_argument("--sebb-confidence", choices=list(CONFIDENCES), help="csebb: a box's mean (default) or max score")


def _lengths(text: str) -> list[float]:
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected lengths > 0 s, got {text!r}")
    return values


def chosen_decoder(args: argparse.Namespace, profile: Any = None) -> str:
    """``--decoder``, else the decoder of a ``--postprocess`` profile, else ``median``.

    Raises:
        ConfigError: cSEBB options without the cSEBB decoder.
    """
    from ptsed.core.errors import ConfigError

    decoder = args.decoder or (profile.decoder if profile is not None else None) or "median"
    options = [("--step-filter", getattr(args, "step_filter", None)), ("--merge-threshold", args.merge_threshold),
               ("--sebb-confidence", args.sebb_confidence)]  # fmt: skip
    given = [o for o, v in options if v is not None]
    if decoder != "csebb" and given:
        raise ConfigError(f"{', '.join(given)} need(s) --decoder csebb")
    return decoder


def apply_decoder(args: argparse.Namespace, predictor: Any, formats: Any, profile: Any = None) -> None:
    """Replace ``predictor.postprocess`` by the cSEBB decoder with ``--decoder csebb`` or a ``csebb`` profile
    (keeping its thresholds, include/exclude and transform; explicit options win over the profile's settings).

    Raises:
        ConfigError: cSEBB options or ``--format scores_sebb`` without the cSEBB decoder.
    """
    from ptsed.core.errors import ConfigError

    if chosen_decoder(args, profile) != "csebb":
        if "scores_sebb" in formats:
            raise ConfigError("--format scores_sebb needs --decoder csebb")
        return
    from ptsed.postprocess.sebb import as_csebb

    ignored = [o for o, v in (("--median-filter", getattr(args, "median_filter", None)),
                              ("--min-duration", getattr(args, "min_duration", 0.0) or None),
                              ("--merge-gap", getattr(args, "merge_gap", 0.0) or None),
                              ("--top-k", getattr(args, "top_k", None))) if v is not None]  # fmt: skip
    if ignored:
        import sys

        print(f"ptsed: warning: {', '.join(ignored)} do(es) not apply to cSEBB boxes and is ignored", file=sys.stderr)
    settings: dict[str, Any] = {}
    if profile is not None and profile.decoder == "csebb":
        from ptsed.evaluation.tuning_sebb import csebb_settings

        settings = csebb_settings(profile)
    explicit = {"step_filter_s": args.step_filter, "merge_threshold": args.merge_threshold,
                "confidence": args.sebb_confidence}  # fmt: skip
    settings.update({k: v for k, v in explicit.items() if v is not None})
    predictor.postprocess = as_csebb(predictor.postprocess, **settings)
