"""``ptsed tune``: fit per-class thresholds and median filter lengths on a development set, write a profile.

The profile (JSON, :mod:`ptsed.postprocess.profile`) is what ``ptsed detect --postprocess FILE`` applies. The
fit is the one ``ptsed finetune`` runs on its validation split (:func:`ptsed.evaluation.tuning.fit_postprocess`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HELP = "fit per-class thresholds and median filters on a development set (a post-processing profile)"

EPILOG = """examples:
  ptsed detect dev/audio --model beats --format scores --output dev_out/
  ptsed tune --scores dev_out/scores --ground-truth dev/gt.tsv --durations dev/durations.tsv --output beats.json
  ptsed tune --model run/model.pt --audio dev/audio --ground-truth dev/gt.tsv --output profile.json \\
      --objective psds1
  ptsed detect recordings/ --model beats --postprocess beats.json --output out/
  ptsed tune --scores dev_out/scores --ground-truth dev/gt.tsv --decoder csebb --output sebb.json

Scores must be raw (detect's `scores` format, not `scores_filtered`) and come from detect's windows (the
defaults: half-window hop, centre stitching) so that the profile fits what detect produces. Classes without
events in the ground truth, and classes where no threshold beats the defaults, keep the defaults
(threshold 0.5, median filter 0.36 s); no fitted threshold is below --min-threshold."""


def _floats(text: str) -> list[float]:
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected lengths >= 0 s, got {text!r}")
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    from ptsed.postprocess.profile import MEDIAN_GRID_S, MIN_THRESHOLD, OBJECTIVES

    p = subparsers.add_parser(
        "tune", help=HELP, description=HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--scores", metavar="DIR", help="raw sed_scores_eval score files, one per clip (ptsed detect)")
    src.add_argument("--model", metavar="NAME", help="run a model (zoo name, or a checkpoint file) on --audio")
    p.add_argument("--audio", metavar="PATH", help="with --model: folder of <clip>.<ext> files or HDF5 file(s)")
    p.add_argument("--checkpoint", metavar="FILE", help="with --model: load this checkpoint file")
    p.add_argument("--device", help="with --model: torch device (default: auto, CUDA when available)")
    p.add_argument("--ground-truth", required=True, metavar="TSV", help="strong labels of the development clips")
    p.add_argument("--durations", metavar="TSV", help="clip durations (filename duration), recorded in the profile")
    p.add_argument("--output", "-o", required=True, metavar="FILE", help="the profile to write (JSON)")
    p.add_argument(
        "--objective",
        choices=list(OBJECTIVES),
        default="event_f1",
        help="event_f1: collar-based event F1 (default); psds1: intersection-based F1 at PSDS1's criteria "
        "(dtc = gtc = 0.7), the best operating point of the PSDS1 ROC",
    )
    p.add_argument(
        "--median-grid",
        type=_floats,
        default=list(MEDIAN_GRID_S),
        metavar="S[,S...]",
        help=f"median filter lengths tried per class, seconds (default {','.join(f'{v:g}' for v in MEDIAN_GRID_S)})",
    )
    p.add_argument(
        "--min-threshold",
        type=float,
        default=MIN_THRESHOLD,
        metavar="T",
        help=f"lowest threshold ever chosen (default {MIN_THRESHOLD}): near-zero thresholds flood the output",
    )
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    from ptsed.cli.vocabulary import add_vocabulary_arguments

    add_vocabulary_arguments(p)
    from ptsed.cli.decoder import add_decoder_arguments

    add_decoder_arguments(p, fit=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptsed.core.errors import ConfigError
    from ptsed.extras import require

    require("eval", what="ptsed tune")
    if args.model is None and (args.audio or args.checkpoint or args.device):
        raise ConfigError("--audio, --checkpoint and --device go with --model")
    if args.model is not None and not args.audio:
        raise ConfigError("--model needs --audio (a folder of audio files or an HDF5 file)")
    if not 0 <= args.min_threshold < 1:
        raise ConfigError(f"--min-threshold must be in [0, 1), not {args.min_threshold}")

    from ptsed.data.audioset import read_ground_truth
    from ptsed.evaluation.sources import make_source
    from ptsed.evaluation.tuning import fit_postprocess, read_dev_set
    from ptsed.io.annotations import read_durations
    from ptsed.postprocess.profile import save_profile

    gt, _ = read_ground_truth(args.ground_truth)
    durations = read_durations(args.durations) if args.durations else None
    fitted_on: dict = {"ground_truth": str(args.ground_truth)}
    if args.durations:
        fitted_on["durations"] = str(args.durations)
    if args.model is not None:
        from ptsed.cli.evaluate import _load_model

        source = make_source(model=_load_model(args), audio=args.audio, device=args.device or "auto")
        pred = source.predictor
        fitted_on.update(
            model=pred.models[0].name,
            checkpoint=args.checkpoint or (args.model if Path(args.model).is_file() else None),
            audio=str(args.audio),
            windows={"window_s": pred.window_s, "hop_s": pred.hop_s, "stitch": pred.stitch},
        )
    else:
        source = make_source(scores=args.scores)
        fitted_on["scores"] = str(args.scores)
    from ptsed.cli.decoder import chosen_decoder
    from ptsed.cli.vocabulary import transform_source

    chosen_decoder(args)  # cSEBB options without --decoder csebb stop here, before any inference

    source = transform_source(args, source)  # class names checked before inference
    if getattr(source, "transform", None) is not None:
        fitted_on["transform"] = source.transform.settings()
    scores, truth, notes = read_dev_set(source, gt, durations, progress=args.progress)
    unknown = sorted({e[2] for events in truth.values() for e in events} - set(source.labels))
    if unknown:
        more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
        notes.append(f"ground-truth class {unknown[0]!r}{more} is not among the model's classes and is not fitted")
    for note in notes:
        print(f"ptsed tune: {note}", file=sys.stderr)
    fit: Any = fit_postprocess
    options: dict[str, Any] = {"median_grid_s": args.median_grid}
    if chosen_decoder(args) == "csebb":
        from ptsed.evaluation.tuning_sebb import fit_csebb as fit

        options = {"step_grid_s": args.step_grid, "merge_threshold": args.merge_threshold,
                   "confidence": args.sebb_confidence}  # fmt: skip
    profile = fit(
        scores,
        truth,
        list(source.labels),
        objective=args.objective,
        min_threshold=args.min_threshold,
        fitted_on=fitted_on,
        **{k: v for k, v in options.items() if v is not None},
    )
    path = save_profile(profile, args.output)
    obj = profile.objective
    with_events = profile.fitted_on["classes_with_events"]
    print(
        f"{obj['name']} {obj['value']:.3f} with the profile, {obj['default_value']:.3f} with the defaults, on "
        f"{profile.fitted_on['clips']} clips ({profile.fitted_on['events']} events); fitted {len(profile.fitted)} "
        f"of {with_events} classes with events, the other {len(source.labels) - len(profile.fitted)} keep the "
        f"defaults\nwrote {path}"
    )
    return 0
