"""``ptsed evaluate``: PSDS and friends from a model, saved scores or detections, against strong labels."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "evaluate a model, saved scores or detections against strong labels (PSDS1/2, pAUROC, F1, mAP)"

EPILOG = """examples:
  ptsed evaluate --ground-truth gt.tsv --durations durations.tsv --scores out/scores --output eval/
  ptsed evaluate --ground-truth audioset_eval_strong.tsv --durations eval_durations.csv \\
      --model beats --audio eval_segments_mp3.hdf --protocol audioset-strong --output eval/beats
  ptsed evaluate --ground-truth gt.tsv --durations durations.tsv --detections detections.tsv --output eval/

Files are matched by name without extension; AudioSet segment ids <id>_<start ms> match clips Y<id>.
Writes summary.json (psds1 = sed_scores_eval's psds, psds1_macro = mean single-class PSDS, psds2, pauroc,
collar/segment F1, frame_map), per_class.csv and psd_roc.png."""


def _floats(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help=HELP, description=HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--ground-truth", required=True, metavar="TSV",
                   help="strong labels: DCASE TSV (filename onset offset event_label) or AudioSet strong TSV "
                        "(segment_id start_time_seconds end_time_seconds label)")  # fmt: skip
    p.add_argument("--durations", metavar="FILE",
                   help="clip durations: TSV with header 'filename duration', or headerless 'Y<id>,duration' "
                        "CSV (AudioSet eval); clips without one use the end of their scores")  # fmt: skip
    src = p.add_mutually_exclusive_group()  # one of them, or --checkpoint alone: checked in run()
    src.add_argument(
        "--scores", metavar="DIR", help="sed_scores_eval score files (onset offset *classes), one per clip"
    )
    src.add_argument(
        "--detections", metavar="TSV", help="detected events (filename onset offset event_label), file or folder"
    )
    src.add_argument("--model", metavar="NAME", help="run a model (zoo name, or a checkpoint file) on --audio")
    p.add_argument(
        "--audio", metavar="PATH", help="with --model: folder of <clip>.<ext> files or PaSST-style HDF5 file(s)"
    )
    p.add_argument("--checkpoint", metavar="FILE", help="run this checkpoint file (--model may then be left out)")
    p.add_argument("--device", help="with --model: torch device (default: auto, CUDA when available)")
    p.add_argument("--window", type=float, metavar="SECONDS",
                   help="with --model: window length in seconds (default: the model's, 10 s)")  # fmt: skip
    p.add_argument("--hop", type=float, metavar="SECONDS",
                   help="with --model: hop between windows in seconds (default: detect's)")  # fmt: skip
    p.add_argument("--save-scores", metavar="DIR", help="with --model: also write the raw scores, one TSV per clip")
    p.add_argument("--output", required=True, metavar="DIR", help="folder for summary.json, per_class.csv, psd_roc.png")
    p.add_argument("--protocol", choices=["audioset-strong"],
                   help="audioset-strong: classes in both the model's 447 and the ground truth, clips "
                        "without events dropped, 0.36 s median filter, clips scored as 10 s (upstream's "
                        "evaluation)")  # fmt: skip
    p.add_argument("--median-filter", type=float, metavar="SECONDS",
                   help="median filter applied to the scores, saved ones included (default: the protocol's; "
                        "with --model, else what detect applies: the model's stored per-class lengths, else "
                        "0.36; else none; 0 disables)")  # fmt: skip
    p.add_argument(
        "--thresholds",
        type=_floats,
        default=[0.5],
        metavar="T[,T...]",
        help="decision thresholds of the collar- and segment-based F1 (default 0.5)",
    )
    p.add_argument(
        "--metrics",
        metavar="M[,M...]",
        help="subset of psds1,psds2,pauroc,collar_f1,segment_f1,frame_map (default: all)",
    )
    p.add_argument(
        "--memory-limit",
        type=float,
        default=2.0,
        metavar="GB",
        help="scores beyond this size go to a memory-mapped temporary file (default 2)",
    )
    p.add_argument("--no-plot", action="store_true", help="do not write psd_roc.png")
    p.add_argument("--per-class", action="store_true", help="also print the per-class table")
    p.add_argument("--progress", action="store_true", help="show progress bars")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when a ground-truth clip could not be scored (it failed or has no predictions); "
                        "the numbers are written all the same")  # fmt: skip
    from ptsed.cli.vocabulary import add_vocabulary_arguments

    add_vocabulary_arguments(p)
    p.set_defaults(func=run)


def _score_writer(folder: Path):  # noqa: ANN202
    """A callback that writes each clip's raw scores as a sed_scores_eval TSV ``<folder>/<name>.tsv``
    (:func:`ptsed.io.scores_tsv.write_scores_tsv`, the format of ``ptsed detect --format scores``)."""
    folder.mkdir(parents=True, exist_ok=True)

    def write(name: str, scores, timestamps, labels) -> None:  # noqa: ANN001
        from ptsed.core.types import FrameScores
        from ptsed.io.scores_tsv import write_scores_tsv

        write_scores_tsv(folder / f"{name}.tsv", FrameScores(scores, timestamps, list(labels), source=name))

    return write


def _load_model(args: argparse.Namespace):  # noqa: ANN202
    from ptsed.cli.detect import model_for_checkpoint
    from ptsed.core.errors import ConfigError
    from ptsed.models.factory import create_model

    name, checkpoint = args.model or None, args.checkpoint
    if checkpoint is None and name and Path(name).is_file():
        name, checkpoint = None, name
    name = model_for_checkpoint(name, checkpoint)
    try:
        model = create_model(name, checkpoint_path=checkpoint, device=args.device)
    except KeyError as err:
        raise ConfigError(f"unknown model {name!r}: {err}") from None
    from ptsed.inference.predictor import check_finite_weights

    check_finite_weights(model, checkpoint)
    return model


def detect_median_filter(model):  # noqa: ANN001, ANN201
    """The median filter ``ptsed detect`` applies for ``model`` by default: the per-class lengths stored in a
    fine-tuned checkpoint, else 0.36 s (seconds; one number, a mapping label -> seconds, or ``None``)."""
    from ptsed.postprocess.pipeline import PostProcessor

    return PostProcessor.for_model(model).median_filter_lengths(model.labels)


def run(args: argparse.Namespace) -> int:
    import warnings

    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    from ptsed.extras import require

    require("eval", what="ptsed evaluate")
    if not args.no_plot:
        require("plot", what="ptsed evaluate (its PSD-ROC plot; or give --no-plot)")
    if args.audio and Path(args.audio).suffix.lower() in (".h5", ".hdf", ".hdf5"):
        require("hdf5", what="ptsed evaluate --audio HDF5")
    from ptsed.core.errors import ConfigError
    from ptsed.data.audioset import read_ground_truth
    from ptsed.evaluation.protocol import METRICS, evaluate, get_protocol
    from ptsed.evaluation.sources import make_source
    from ptsed.io.annotations import read_durations

    protocol = get_protocol(args.protocol)
    if args.model is None and args.checkpoint is not None and args.scores is None and args.detections is None:
        args.model = ""  # --checkpoint alone: the file says which model it holds
    if args.model is None and args.scores is None and args.detections is None:
        raise ConfigError("give --scores DIR, --detections TSV, or a model (--model NAME and/or --checkpoint FILE)")
    if args.model is None and (args.audio or args.checkpoint or args.save_scores):
        raise ConfigError("--audio, --checkpoint and --save-scores go with --model")
    if args.model is None and (args.window is not None or args.hop is not None):
        raise ConfigError("--window and --hop go with --model")
    if args.protocol and (args.window is not None or args.hop is not None):
        raise ConfigError(f"--window and --hop cannot be used with --protocol {args.protocol} (one window per clip)")
    if args.model is not None and not args.audio:
        raise ConfigError("--model needs --audio (a folder of audio files or an HDF5 file)")
    metrics = METRICS if args.metrics is None else [m.strip() for m in args.metrics.split(",") if m.strip()]
    gt, gt_info = read_ground_truth(args.ground_truth)
    durations = read_durations(args.durations) if args.durations else None
    model = _load_model(args) if args.model is not None else None
    source = make_source(
        scores=args.scores,
        detections=args.detections,
        model=model,
        audio=args.audio,
        clip_s=protocol.clip_s,
        device=args.device or "auto",
        window_s=args.window,
        hop_s=args.hop,
    )
    from ptsed.cli.vocabulary import transform_source

    source = transform_source(args, source)  # class names checked before inference
    kwargs = {} if args.median_filter is None else {"median_filter_s": args.median_filter or None}
    if model is not None and args.median_filter is None and protocol.median_filter_s is None:
        kwargs["median_filter_s"] = detect_median_filter(model)
        if isinstance(kwargs["median_filter_s"], dict) and list(source.labels) != list(model.labels):
            from ptsed.postprocess.pipeline import DEFAULT_MEDIAN_FILTER_S  # transformed classes: as detect does

            stored = kwargs["median_filter_s"]
            kwargs["median_filter_s"] = {c: stored.get(c, DEFAULT_MEDIAN_FILTER_S) for c in source.labels}
    result = evaluate(
        source,
        gt,
        durations,
        protocol=protocol,
        thresholds=args.thresholds,
        metrics=metrics,
        memory_limit_bytes=int(args.memory_limit * 1024**3),
        progress=args.progress,
        on_clip=_score_writer(Path(args.save_scores)) if args.save_scores else None,
        **kwargs,
    )
    result.summary["ground_truth"] = {"path": str(args.ground_truth), **gt_info}
    paths = result.save(args.output, plot=not args.no_plot)
    print(result.table())
    if args.per_class:
        from ptsed.evaluation.report import format_per_class

        print()
        print(format_per_class(result))
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    code, line = _outcome(result.summary, strict=args.strict)
    print(f"ptsed evaluate: {line}", file=sys.stderr)
    return code


def _outcome(summary: dict, *, strict: bool) -> tuple[int, str]:
    """The exit code (1 when ``strict`` and a clip could not be scored) and the summary line naming it."""
    failed, missing = len(summary["clips_failed"]), len(summary["clips_missing_predictions"])
    scored = summary["n_clips"]
    line = f"scored {scored} of {scored + failed + missing} clips"
    if not failed + missing:
        return 0, f"{line}; exit code 0"
    line += f" ({failed} failed, {missing} without predictions)"
    if strict:
        return 1, f"{line}; exit code 1 (--strict)"
    return 0, f"{line}; exit code 0 (with --strict: 1)"
