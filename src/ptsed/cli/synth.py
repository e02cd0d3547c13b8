"""``ptsed synth``: DESED-like soundscapes with exact strong labels from isolated clips and backgrounds."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """Mix isolated event clips over backgrounds into strongly labelled soundscapes.

Each soundscape: one background (random crop, looped if short, random level), MIN..MAX events at random
onsets (overlap allowed), each at an event-to-background SNR drawn from the --snr-db range. The same
--seed gives identical files. Writes OUTPUT/audio/soundscape_00000.wav ..., OUTPUT/labels.tsv (DCASE strong:
filename onset offset event_label), OUTPUT/durations.tsv (filename duration) and OUTPUT/sources.tsv (which
source clip went where, for attribution)."""

EPILOG = """examples:
  ptsed synth --foreground sources/foreground --background sources/background \\
      --classes classes.tsv --count 100 --seed 0 --output synth/
  ptsed synth --foreground clips/ --background ambience.wav --only dog --only cat --count 10 --output out/
  ptsed synth --foreground manifest.tsv --background manifest.tsv --files train_files.tsv --count 600 \\
      --seed 1 --output train/"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="build strongly labelled synthetic soundscapes from isolated clips",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--foreground",
        required=True,
        metavar="DIR|TSV",
        help="folder with one subfolder per class, or a TSV table (path/filename + label/labels/class columns)",
    )
    p.add_argument(
        "--background",
        required=True,
        nargs="+",
        metavar="DIR|FILE|TSV",
        help="folder(s) of background recordings, audio file(s), or TSV table(s) (bg rows)",
    )
    p.add_argument("--count", type=int, required=True, metavar="N", help="number of soundscapes")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("--duration", type=float, default=10.0, metavar="SEC", help="soundscape length (default 10)")
    p.add_argument("--sample-rate", type=int, default=16000, metavar="HZ", help="output rate (default 16000)")
    p.add_argument(
        "--classes",
        metavar="TSV",
        help="table 'folder<TAB>label' mapping class subfolders to labels (default: folder names are the labels)",
    )
    p.add_argument(
        "--only",
        action="append",
        metavar="CLASS",
        help="use only this class (a label or a folder name); repeat for several",
    )
    p.add_argument(
        "--files",
        metavar="LIST",
        help="use only the source files listed here (TSV with a path/filename column, or one path per line, "
        "relative to the list's folder), e.g. one side of a train/validation split",
    )
    p.add_argument("--min-events", type=int, default=1, metavar="N", help="fewest events per soundscape (1)")
    p.add_argument("--max-events", type=int, default=5, metavar="N", help="most events per soundscape (5)")
    p.add_argument(
        "--snr-db", type=float, nargs=2, default=(0.0, 20.0), metavar=("LOW", "HIGH"), help="event SNR range (0 20)"
    )
    p.add_argument(
        "--background-db",
        type=float,
        nargs=2,
        default=(-45.0, -25.0),
        metavar=("LOW", "HIGH"),
        help="background RMS range in dBFS (-45 -25)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace soundscapes already in the output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptsed.data.synth import synthesize

    result = synthesize(
        args.foreground,
        args.background,
        args.output,
        args.count,
        args.seed,
        duration_s=args.duration,
        sample_rate=args.sample_rate,
        classes=args.classes,
        only=args.only,
        files=args.files,
        min_events=args.min_events,
        max_events=args.max_events,
        snr_db=tuple(args.snr_db),
        background_db=tuple(args.background_db),
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(
        f"wrote {len(result.files)} soundscapes with {result.num_events} events of {len(result.classes)} classes "
        f"to {result.output} in {result.seconds:.1f} s"
    )
    for problem in result.problems:
        print(f"skipped {problem}", file=sys.stderr)
    return 0
