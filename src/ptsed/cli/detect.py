"""``ptsed detect``: sound event detection on files, folders, globs and list files.

:func:`run` only translates the flags into one call of :func:`ptsed.inference.detect.detect` (score source ->
post-processing -> writers). Heavy modules (torch, the models) are imported only inside the functions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ptsed.cli.vocabulary import names_from_args

EXAMPLES = """examples:
  ptsed detect rec.wav --model beats                          print the events as a table
  ptsed detect recordings/ --model atst_frame --output out/ --format tsv,scores,json
  ptsed detect "data/**/*.flac" --model beats --model atst_frame --output out/   (ensemble)
  ptsed detect rec.wav --model BEATs --checkpoint BEATs_strong_1.pt --upstream-chunking \\
      --threshold 0.5 --median-filter 0.36 --output out/ --format csv
  ptsed detect out/frames/ --threshold 0.3 --output out2/     redo post-processing from saved NPZ scores
"""


class _ModelAction(argparse.Action):
    """``--model NAME``: starts a new ensemble member."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        models = list(getattr(namespace, "models", None) or [])
        pending = getattr(namespace, "_pending_checkpoint", None)
        models.append([values, pending])
        namespace._pending_checkpoint = None
        namespace.models = models


class _CheckpointAction(argparse.Action):
    """``--checkpoint FILE``: the weights of the preceding ``--model`` (or of the next one)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        models = list(getattr(namespace, "models", None) or [])
        if models and models[-1][1] is None:
            models[-1][1] = values
            namespace.models = models
        elif getattr(namespace, "_pending_checkpoint", None) is None and not models:
            namespace._pending_checkpoint = values
        else:
            models.append([None, values])
            namespace.models = models


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """``--model`` / ``--checkpoint`` (repeatable: an ensemble)."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        "-m",
        action=_ModelAction,
        metavar="NAME",
        help="model name (beats, atst_frame, fpasst, asit, m2d, frame_mn06, frame_mn10, optionally .tag; "
        "upstream names like BEATs or ATST-F work too). Repeat for an ensemble (frame probabilities are averaged)",
    )
    g.add_argument(
        "--checkpoint",
        "-c",
        action=_CheckpointAction,
        metavar="FILE",
        help="weights for the preceding --model: an upstream release file or a ptsed checkpoint, under any "
        "name; its keys say which model it is, so --model may be left out "
        "(default: the released checkpoint, downloaded once into the cache)",
    )
    p.set_defaults(models=None, _pending_checkpoint=None)


def add_input_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="audio files, folders (searched recursively), glob patterns (quote them) or list files "
        "(@list.txt, one path per line)",
    )
    g = p.add_argument_group("inputs")
    g.add_argument(
        "--extensions",
        metavar="LIST",
        help="extensions picked up in folders and globs, comma-separated (default: all audio and video "
        "formats ptsed reads: wav,flac,ogg,mp3,m4a,mp4,webm,...)",
    )
    g.add_argument("--no-recursive", action="store_true", help="do not search sub-folders")
    g.add_argument(
        "--channels",
        choices=["mix", "each"],
        default="mix",
        help="mix: mono mix of all channels (default); each: process every channel separately",
    )


def add_runtime_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("windows and compute")
    g.add_argument(
        "--batch-size",
        "-b",
        type=int,
        metavar="N",
        help="windows per forward pass (default: 16 on a GPU, 4 on a CPU, where larger batches are slower)",
    )
    g.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    g.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp32", help="fp32 (default)")
    g.add_argument(
        "--int8",
        action="store_true",
        help="CPU only: dynamic int8 quantisation of the linear layers, faster but not exact (off by default; "
        "docs/inference.md gives the speed and the change of the probabilities)",
    )
    g.add_argument(
        "--backend",
        choices=["torch", "onnx"],
        default="torch",
        help="torch (default) or onnx: ONNX Runtime on a graph exported on first use into the cache (needs the "
        '"onnx" extra; with --int8 ONNX Runtime\'s dynamic quantisation; docs/onnx.md)',
    )
    g.add_argument("--window", type=float, metavar="SECONDS", help="window length (default: the model's, 10 s)")
    g.add_argument("--hop", type=float, metavar="SECONDS", help="hop between windows (default: half a window)")
    g.add_argument("--overlap", type=float, metavar="SECONDS", help="overlap of windows (alternative to --hop)")
    g.add_argument(
        "--stitch",
        choices=["centre", "mean"],
        default="centre",
        help="centre: each frame from the window whose centre is nearest (default); mean: average of windows",
    )
    g.add_argument(
        "--upstream-chunking",
        action="store_true",
        help="reproduce upstream inference.py exactly: non-overlapping 10 s chunks, zero-padded last chunk "
        "whose frames are kept, median filter over the padded sequence, upstream's event order",
    )
    o = p.add_argument_group("output")
    o.add_argument("--output", "-o", metavar="DIR", help="output folder (without it, events are printed)")
    o.add_argument(
        "--resume",
        action="store_true",
        help="skip inputs already done with the same settings (an input whose size and mtime, or content, "
        "changed is done again)",
    )
    o.add_argument(
        "--overwrite",
        action="store_true",
        help="remove what an earlier run wrote into --output first (needed when its settings differ)",
    )
    o.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary")


def _float_or_file(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        if not Path(text).is_file():
            raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor an existing file") from None
        return text


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "detect",
        help="detect sound events in audio files",
        description="Detect sound events (447 AudioSet-strong classes) in audio of any length. Overlapping "
        "10 s windows are batched across files and stitched on the 40 ms frame grid.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_arguments(p)
    add_model_arguments(p)
    add_runtime_arguments(p)
    o = p.add_argument_group("detection output")
    o.add_argument(
        "--format",
        "-f",
        default="tsv",
        metavar="LIST",
        help="comma-separated: tsv (DCASE events.tsv), csv, json, audacity, raven, scores (sed_scores_eval "
        "TSVs), scores_filtered, scores_sebb (with --decoder csebb), npz, h5 (default: tsv)",
    )
    o.add_argument("--per-file", action="store_true", help="tsv/csv/json: one event file per input (events/)")
    o.add_argument("--plot", action="store_true", help="write plots/<name>.png (spectrogram, scores, events)")
    o.add_argument("--plot-top", type=int, default=10, metavar="K", help="classes shown in plots (10)")
    add_postprocess_arguments(p)
    from ptsed.cli.decoder import add_decoder_arguments
    from ptsed.cli.vocabulary import add_vocabulary_arguments

    add_vocabulary_arguments(p, include_exclude=False)
    add_decoder_arguments(p)
    p.set_defaults(func=run)


def add_postprocess_arguments(p: argparse.ArgumentParser) -> None:
    """The post-processing options of ``detect`` (and ``listen``); :func:`postprocess_options` reads them."""
    pp = p.add_argument_group("post-processing (all lengths in seconds)")
    pp.add_argument(
        "--threshold",
        "-t",
        type=_float_or_file,
        metavar="T|FILE",
        help="a frame is active when its score > T; or a file of per-class thresholds (label<TAB>value "
        "lines, CSV or JSON; classes not in it use 0.5). Default: the per-class thresholds stored in a "
        "fine-tuned checkpoint (ptsed finetune), else 0.5",
    )
    pp.add_argument(
        "--median-filter",
        type=_float_or_file,
        metavar="S|FILE",
        help="median filter length, rounded to whole 40 ms frames (0.36 = upstream's 9 frames; 0 disables); "
        "or a file of per-class lengths. Default: the lengths stored in a fine-tuned checkpoint, else 0.36",
    )
    pp.add_argument(
        "--postprocess",
        metavar="FILE",
        help="a post-processing profile (ptsed tune, or postprocess.json of ptsed finetune): its per-class "
        "thresholds and median filters replace those stored in the checkpoint; --threshold/--median-filter "
        "still win",
    )
    pp.add_argument("--min-duration", type=_float_or_file, default=0.0, metavar="S|FILE", help="drop shorter events")
    pp.add_argument(
        "--merge-gap", type=_float_or_file, default=0.0, metavar="S|FILE", help="join events of a class this close"
    )
    pp.add_argument("--top-k", type=int, metavar="K", help="at most K classes active per frame")
    pp.add_argument(
        "--include", action="append", metavar="NAME|FILE", help="report only these classes (repeatable, or a file)"
    )
    pp.add_argument("--exclude", action="append", metavar="NAME|FILE", help="never report these classes")


def postprocess_options(args: argparse.Namespace) -> dict[str, Any]:
    """:class:`PostProcessor` fields given by the options of :func:`add_postprocess_arguments` (the
    checkpoint's stored values and ``--postprocess`` fill what they leave out)."""
    postprocess: dict[str, Any] = {
        "min_duration_s": args.min_duration,
        "merge_gap_s": args.merge_gap,
        "top_k": args.top_k,
        "include": names_from_args(args.include),
        "exclude": names_from_args(args.exclude),
    }
    if args.threshold is not None:
        postprocess["threshold"] = args.threshold
    if args.median_filter is not None:
        postprocess["median_filter_s"] = args.median_filter if args.median_filter != 0 else None
    return postprocess


def predictor_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`Predictor` options of the window and compute flags (all but the models)."""
    return {
        "batch_size": args.batch_size,
        "device": args.device,
        "precision": args.precision,
        "int8": args.int8,
        "backend": getattr(args, "backend", "torch"),
        "window_s": args.window,
        "hop_s": args.hop,
        "overlap_s": args.overlap,
        "stitch": args.stitch,
        "channels": args.channels,
    }


def build_predictor(args: argparse.Namespace) -> Any:
    """The :class:`Predictor` an argparse namespace of ``detect``/``embed`` describes."""
    from ptsed.core.errors import ConfigError
    from ptsed.inference.predictor import Predictor

    models = _model_args(args)
    if not models:
        raise ConfigError("give a model with --model NAME (see `ptsed models`)")
    specs = [(model_for_checkpoint(name, checkpoint), checkpoint) for name, checkpoint in models]
    return Predictor(specs, upstream_chunking=args.upstream_chunking, **predictor_options(args))


def model_for_checkpoint(name: str | None, checkpoint: str | None) -> str | None:
    """The model to build for ``--model NAME`` / ``--checkpoint FILE`` (detect, embed, evaluate, finetune).

    Without a checkpoint: ``name``. With one: the model the file holds (a ptsed checkpoint names it, a
    released file's keys say it, whatever the file is called); a ``name`` of another architecture gets
    one warning line on stderr and is not used.
    """
    if checkpoint is None:
        return name
    from ptsed.models.factory import checkpoint_model_name

    found, warning = checkpoint_model_name(checkpoint, name)
    if warning:
        print(f"ptsed: warning: {warning}", file=sys.stderr)
    return found


def checkpoint_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Identities (path, size, mtime) of the checkpoint files, for ``--resume``."""
    from ptsed.inference.batch import file_identity

    return {"checkpoints": [file_identity(ckpt) for _, ckpt in _model_args(args)]}


def _model_args(args: argparse.Namespace) -> list[list[Any]]:
    """``[name, checkpoint]`` pairs of ``--model`` / ``--checkpoint`` (a lone ``--checkpoint``: no name)."""
    if getattr(args, "_pending_checkpoint", None):
        return [[None, args._pending_checkpoint]]
    return list(args.models or [])


def _extensions(args: argparse.Namespace) -> list[str] | None:
    """``--extensions wav,flac`` as a list (``None``: the default set)."""
    return [e.strip() for e in args.extensions.split(",") if e.strip()] if args.extensions else None


def sources_from_args(args: argparse.Namespace, extensions: Any = None) -> list:
    from ptsed.io.audio import list_audio_files

    exts = extensions if extensions is not None else _extensions(args)
    return list_audio_files(args.inputs, extensions=exts, recursive=not args.no_recursive)


def _listed(args: argparse.Namespace, audio: bool) -> list:
    """The inputs of a run: audio files, or (without a model) saved score files."""
    if audio:
        return sources_from_args(args)
    from ptsed.inference.replay import find_score_files

    return find_score_files(args.inputs, recursive=not args.no_recursive) or []


def print_events_table(result: Any, header: list[bool], out: Any = None, width: int = 24) -> None:
    """Print a result's events (time order) as an aligned table; the header once (``header[0]``).

    File names are printed in full, in a column ``width`` characters wide (a longer name widens its rows).
    """
    out = out or sys.stdout
    if header[0]:
        out.write(f"{'filename':<{width}} {'onset':>9} {'offset':>9}  {'score':>5}  event_label\n")
        header[0] = False
    events = sorted(result.events, key=lambda e: (e.onset, e.offset, e.label))
    for e in events:
        score = "" if e.score is None else f"{e.score:.2f}"
        label = e.label if e.channel is None else f"{e.label} [ch{e.channel}]"
        out.write(f"{result.name:<{width}} {e.onset:9.2f} {e.offset:9.2f}  {score:>5}  {label}\n")
    out.flush()


def describe_models(args: argparse.Namespace, predictor: Any) -> str:
    """``"model demo: 10 classes (...)"``: the model(s) of a run and the size of their vocabulary, for the summary
    (a sound outside the vocabulary is never reported); ``""`` when no model ran (saved scores)."""
    models = getattr(predictor, "models", None)
    if not models:
        return ""
    given = [name for name, _ in (args.models or [])]
    names = [(given[i] if i < len(given) else None) or m.name or "model" for i, m in enumerate(models)]
    return (
        f"model{'s' if len(names) > 1 else ''} {', '.join(names)}: {len(predictor.labels)} classes "
        "(sounds of other classes are not reported)"
    )


def refine_postprocess(args: argparse.Namespace, pp: Any, labels: list[str]) -> tuple[Any, list[str]]:
    """The vocabulary (``--rollup``, ``--class-map``) and decoder (``--decoder csebb``) options applied to the
    decided post-processor; returns it and the classes events are reported for."""
    from types import SimpleNamespace

    from ptsed.cli.decoder import apply_decoder
    from ptsed.cli.vocabulary import apply_to_predictor
    from ptsed.io.results import DETECT_WRITERS, parse_formats

    holder = SimpleNamespace(postprocess=pp, postprocess_from_checkpoint=list(pp.from_checkpoint))
    reported = apply_to_predictor(args, holder, labels)
    profile = None
    if args.postprocess:
        from ptsed.postprocess.profile import load_profile

        profile = load_profile(args.postprocess)
    apply_decoder(args, holder, parse_formats(args.format, DETECT_WRITERS), profile)
    return holder.postprocess, reported


def run(args: argparse.Namespace) -> int:
    """``ptsed detect``: the flags, translated into one :func:`ptsed.inference.detect.detect` call."""
    from ptsed.inference.detect import detect

    postprocess = postprocess_options(args)
    models = _model_args(args)
    run_options: dict[str, Any] = {}
    if models:  # without a model the inputs are saved scores
        run_options = {"models": [(model_for_checkpoint(n, c), c) for n, c in models], **predictor_options(args)}
        run_options["extensions"] = _extensions(args)
    header = [True]
    width: list[int] = []

    def show(result: Any) -> None:
        if not width:  # the longest name of the run, never cut
            width.append(max([24, *(len(s.name) for s in _listed(args, bool(models)))]))
        print_events_table(result, header, width=width[0])

    summary = detect(
        args.inputs,
        postprocess=postprocess,
        profile=args.postprocess,
        writers=args.format,
        output=args.output,
        per_file=args.per_file,
        resume=args.resume,
        overwrite=args.overwrite,
        plot=args.plot,
        plot_top=args.plot_top,
        progress=not args.quiet and sys.stderr.isatty(),
        upstream_chunking=args.upstream_chunking,
        recursive=not args.no_recursive,
        on_result=None if args.output else show,
        log=None if args.quiet else (lambda text: print(text, file=sys.stderr)),
        refine=lambda pp, labels: refine_postprocess(args, pp, labels),
        **run_options,
    )
    if not args.quiet:
        print(summary.text(), file=sys.stderr)
        if describe_models(args, summary.source):
            print(describe_models(args, summary.source), file=sys.stderr)
        if args.output:
            print(f"outputs in {args.output}", file=sys.stderr)
    return summary.exit_code
