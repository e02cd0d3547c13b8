"""The ``ptsed`` command. Each subcommand lives in its own module of :mod:`ptsed.cli` and is a thin
wrapper over a public function; modules are imported only to register their arguments, so heavy
libraries (torch, pandas, lightning) load only when a command runs."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

from ptsed._version import __version__

# command name -> module (each module defines `register(subparsers)`)
COMMANDS = {
    "detect": "ptsed.cli.detect",
    "embed": "ptsed.cli.embed",
    "evaluate": "ptsed.cli.evaluate",
    "tune": "ptsed.cli.tune",
    "models": "ptsed.cli.models",
    "download": "ptsed.cli.download",
    "synth": "ptsed.cli.synth",
    "finetune": "ptsed.cli.finetune",
    "train": "ptsed.cli.train",
    "ensemble-logits": "ptsed.cli.ensemble_logits",
    "export": "ptsed.cli.export",
    "listen": "ptsed.cli.listen",
}

EPILOG = """examples:
  ptsed models                                   list the model zoo
  ptsed detect examples/soundscape.wav --model demo
  ptsed detect recordings/ --model beats --output out/ --format tsv,scores,json
  ptsed evaluate --ground-truth gt.tsv --durations durations.tsv --scores out/scores --output eval/

Run `ptsed COMMAND --help` for the options of a command."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptsed",
        description="Pre-trained sound event detection: frame-level audio transformers for 447 "
        "AudioSet-strong classes (Schmid et al., ICASSP 2025).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ptsed {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        if importlib.util.find_spec(module) is None:
            continue
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ptsed`` console script; returns the exit code."""
    from ptsed.core.errors import PtsedError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = args.func(args)
    except PtsedError as err:
        print(f"ptsed {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ptsed ... | head`: the reader left; stop quietly, as SIGPIPE would
        return _stdout_gone()
    return int(code or 0)


BROKEN_PIPE_EXIT = 141
"""Exit code when stdout's reader has gone (``ptsed detect ... | head``): 128 + SIGPIPE, what a shell
reports for a program that SIGPIPE ended."""


def _stdout_gone() -> int:
    """Point stdout at /dev/null, so that the interpreter's final flush does not fail again; returns
    :data:`BROKEN_PIPE_EXIT`."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no usable stdout at all
        pass
    return BROKEN_PIPE_EXIT


FAST_EXIT = frozenset({"detect", "embed", "models"})
"""Commands whose outputs are all written and closed when :func:`main` returns: the console script ends
them with ``os._exit``, skipping the interpreter's teardown of torch (about 1 s of a short run)."""


def cli() -> None:
    """The ``ptsed`` console script: :func:`main`, then exit with its code."""
    import os

    argv = sys.argv[1:]
    code = main(argv)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        gone = _stdout_gone()
        code = code or gone
    except (OSError, ValueError):
        pass
    if argv and argv[0] in FAST_EXIT and not os.environ.get("PTSED_FULL_EXIT"):
        import contextlib
        import logging

        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed pipe (`ptsed detect ... | head`)
                stream.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    cli()
