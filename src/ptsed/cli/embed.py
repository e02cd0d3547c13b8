"""``ptsed embed``: frame embeddings (40 ms grid) of audio files, from any layer of any model.

A thin wrapper over :class:`ptsed.inference.predictor.Predictor` (``task="embed"``) and
:func:`ptsed.inference.batch.run_batch`; the input, model and window options are those of ``ptsed detect``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ptsed.cli.detect import add_input_arguments, add_model_arguments, add_runtime_arguments

EXAMPLES = """examples:
  ptsed embed recordings/ --model beats --output emb/                    head input (after the BiGRU of teachers)
  ptsed embed rec.wav --model atst_frame.ssl --layer -1 --output emb/ --format h5   last backbone block
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "embed",
        help="frame embeddings of audio files",
        description="Frame embeddings on the 40 ms grid (T, D) for audio of any length, from the head input "
        "or any backbone block. Windows overlap and are stitched as in `ptsed detect`.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_arguments(p)
    add_model_arguments(p)
    add_runtime_arguments(p)
    for action in p._actions:  # detect prints events without --output; embed always writes files
        if action.dest == "output":
            action.required = True
            action.help = "output folder (required: embeddings are written to files, never printed)"
    p.add_argument(
        "--layer",
        type=int,
        metavar="L",
        help="backbone block to read (0-based, negative counts from the top; default: the head input)",
    )
    p.add_argument("--format", "-f", default="npy", metavar="LIST", help="npy (embeddings/<name>.npy) and/or h5")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptsed.cli.detect import build_predictor, checkpoint_settings, sources_from_args
    from ptsed.core.errors import ConfigError
    from ptsed.extras import require_outputs
    from ptsed.inference.batch import run_batch
    from ptsed.io.results import EMBED_WRITERS, parse_formats

    if not args.output:
        raise ConfigError("ptsed embed needs --output DIR")
    formats = parse_formats(args.format, EMBED_WRITERS)
    require_outputs(formats, what="ptsed embed")
    predictor = build_predictor(args)
    summary = run_batch(
        predictor,
        sources_from_args(args),
        output_dir=args.output,
        formats=formats,
        task="embed",
        layer=args.layer,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.quiet and sys.stderr.isatty(),
        extra_settings=checkpoint_settings(args),
    )
    if not args.quiet:
        print(summary.text(), file=sys.stderr)
    return summary.exit_code
