"""``--decoder`` and the cSEBB options of ``ptsed detect`` (:mod:`ptsed.postprocess.sebb`)."""

from __future__ import annotations

import argparse
from typing import Any


def add_decoder_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``--decoder`` and the cSEBB settings."""
    from ptsed.postprocess.sebb import CONFIDENCES, DEFAULT_MERGE_THRESHOLD, DEFAULT_STEP_FILTER_S

    g = p.add_argument_group("decoder (all lengths in seconds)")
    g.add_argument(
        "--decoder",
        choices=["median", "csebb"],
        default="median",
        help="median: median filter, threshold, regions (default); csebb: change-detection-based sound event "
        "bounding boxes (Ebbers et al., Interspeech 2024), each box thresholded on its confidence "
        "(--threshold); --format scores_sebb writes the boxes as score files",
    )
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


def apply_decoder(args: argparse.Namespace, predictor: Any, formats: Any) -> None:
    """Replace ``predictor.postprocess`` by the cSEBB decoder with ``--decoder csebb`` (keeping its thresholds,
    include/exclude and transform).

    Raises:
        ConfigError: cSEBB options or ``--format scores_sebb`` without ``--decoder csebb``.
    """
    from ptsed.core.errors import ConfigError

    sebb_options = [o for o, v in (("--step-filter", args.step_filter), ("--merge-threshold", args.merge_threshold),
                                   ("--sebb-confidence", args.sebb_confidence)) if v is not None]  # fmt: skip
    if args.decoder != "csebb":
        if sebb_options or "scores_sebb" in formats:
            what = ", ".join(sebb_options + (["--format scores_sebb"] if "scores_sebb" in formats else []))
            raise ConfigError(f"{what} need(s) --decoder csebb")
        return
    from ptsed.postprocess.sebb import as_csebb

    predictor.postprocess = as_csebb(
        predictor.postprocess,
        step_filter_s=args.step_filter,
        merge_threshold=args.merge_threshold,
        confidence=args.sebb_confidence,
    )
