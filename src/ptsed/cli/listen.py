"""``ptsed listen``: live sound event detection on a microphone, standard input, a URL or a file.

Events are printed as they close. With ``--output DIR`` the tables of ``ptsed detect`` (and JSON Lines of
events) grow under names that say they are partial (``events.partial.tsv``, ``scores/<name>.partial.tsv``)
and become the final files at the end of the stream or on Ctrl-C. Built on
:class:`ptsed.inference.stream.StreamDetector` and :mod:`ptsed.io.sources`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

EXAMPLES = """examples:
  ptsed listen examples/soundscape.wav --model demo --realtime --hop 1
  sox rec.flac -t wav - | ptsed listen - --model demo
  ffmpeg -i rec.mp4 -f s16le -ac 1 -ar 16000 - | ptsed listen - --rate 16000 --model demo
  ptsed listen mic --model frame_mn06 --hop 0.5 --output live/ --format jsonl,tsv,scores
  ptsed listen recording.wav --follow --model demo        (a WAV that is still being recorded)
"""

LIVE_FORMATS = ("jsonl", "tsv", "csv", "json", "audacity", "raven", "scores", "scores_filtered")
"""Output formats of ``listen``: the tables of ``detect`` that can grow, and JSON Lines of events."""


def register(subparsers: Any) -> None:
    from ptsed.cli.detect import add_model_arguments, add_postprocess_arguments, add_runtime_arguments

    p = subparsers.add_parser(
        "listen",
        help="detect sound events live: a microphone, standard input, a URL or a file",
        description="Live sound event detection. Frame scores and events equal those of `ptsed detect` with "
        "the same window, hop and stitch; latency is about (window + hop) / 2 (5.25 s with a 0.5 s hop). "
        "Each event is printed when it closes.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "source",
        metavar="SOURCE",
        help="mic or mic:N (a microphone; needs ptsed[live]), - (standard input), a URL PyAV opens, or a file",
    )
    add_model_arguments(p)
    add_runtime_arguments(p)
    s = p.add_argument_group("source")
    s.add_argument("--rate", type=int, metavar="HZ", help="raw PCM on standard input (or --follow) at this rate")
    s.add_argument("--channels", type=int, default=1, metavar="N", help="channels of raw PCM (1)")
    s.add_argument("--dtype", default="s16", help="raw PCM sample format: s16 (default), s24, s32, u8, f32, f64")
    s.add_argument("--realtime", action="store_true", help="pace a file at real time (default: full speed)")
    s.add_argument("--follow", action="store_true", help="keep reading a growing file (WAV or raw PCM), as tail -f")
    s.add_argument(
        "--max-lag",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="real-time sources (mic, URL, --realtime): audio buffered while processing lags behind; beyond it "
        "the oldest audio is dropped and reported (default 5; inf: buffer everything, never drop)",
    )
    s.add_argument(
        "--idle-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="end a --follow file that stopped growing, or fail a real-time source that stalls, after this (10)",
    )
    o = p.add_argument_group("detection output")
    o.add_argument(
        "--format",
        "-f",
        default="jsonl,tsv",
        metavar="LIST",
        help=f"with --output, comma-separated: {', '.join(LIVE_FORMATS)} (default: jsonl,tsv)",
    )
    add_postprocess_arguments(p)
    from ptsed.cli.vocabulary import add_vocabulary_arguments

    add_vocabulary_arguments(p, include_exclude=False)  # --include/--exclude: add_postprocess_arguments
    p.set_defaults(func=run)


# ----------------------------------------------------------------------------------------------------
# outputs that grow
# ----------------------------------------------------------------------------------------------------
class LiveOutputs:
    """The output folder of a live run: partial files while it runs, the final files at :meth:`close`.

    Event tables (tsv, csv, json, audacity, raven) are the writers of ``detect`` (:mod:`ptsed.io.results`),
    rewritten under their partial names when events close; score tables and JSON Lines are appended to.

    Args:
        out_dir: the folder (locked for the run with :class:`ptsed.io.lock.FolderLock`).
        formats: names of :data:`LIVE_FORMATS`.
        name: the stream's name (``filename`` of events; names per-stream files).
        settings: the run's settings (stored in JSON).
        sample_rate: the model's rate (Raven's frequency range).
        sort: how the final tables are sorted (a function of a list of events).
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        formats: list[str],
        name: str,
        settings: dict[str, Any],
        sample_rate: int,
        sort: Any,
        overwrite: bool = False,
    ) -> None:
        from ptsed.core.errors import ConfigError
        from ptsed.inference.types import FileResult
        from ptsed.io.lock import FolderLock
        from ptsed.io.results import DETECT_WRITERS, get_writer, output_path, output_stem, partial_name

        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.lock = FolderLock(self.out_dir, "ptsed listen")
        self.lock.__enter__()
        self.sort = sort
        self.result = FileResult(source=name, name=name, sample_rate=sample_rate, channels=1)
        tables = [f for f in formats if f in DETECT_WRITERS and f not in ("scores", "scores_filtered")]
        self.writers = {f: get_writer(f, self.out_dir, settings=settings, sample_rate=sample_rate) for f in tables}
        self._settings = settings
        stem = output_stem(name)
        self.appended: dict[str, tuple[Path, Path]] = {}  # format -> (partial, final)
        if "jsonl" in formats:
            self.appended["jsonl"] = (self.out_dir / "events.partial.jsonl", self.out_dir / "events.jsonl")
        for fmt in ("scores", "scores_filtered"):
            if fmt in formats:
                final = output_path(self.out_dir, fmt, stem + ".tsv")
                self.appended[fmt] = (partial_name(final), final)
        finals = [f for _, f in self.appended.values()]
        for w in self.writers.values():
            finals += w.combined_files() + w.targets(name)
        existing = [f for f in finals if f.exists()]
        if existing and not overwrite:
            self.lock.__exit__(None, None, None)
            raise ConfigError(f"{existing[0]} exists (an earlier run); give --overwrite to replace it")
        self.files: dict[str, Any] = {}
        try:
            for fmt, (partial, _) in self.appended.items():
                partial.parent.mkdir(parents=True, exist_ok=True)
                self.files[fmt] = open(partial, "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as err:
            from ptsed.io.results import write_error

            self.lock.__exit__(None, None, None)
            raise write_error(partial, err) from err
        self._header = {"scores": False, "scores_filtered": False}
        self.closed = False

    def add(self, scores: Any, filtered: Any, events: list[Any]) -> None:
        """Append final frames (raw, filtered) and closed events; refresh the partial event tables."""
        from ptsed.io.results import event_dict, scores_tsv_pieces

        for fmt, fs in (("scores", scores), ("scores_filtered", filtered)):
            fh = self.files.get(fmt)
            if fh is None or (fs.scores.shape[0] == 0 and self._header[fmt]):
                continue
            pieces = scores_tsv_pieces(fs)
            head = next(pieces)
            if not self._header[fmt]:
                fh.write(head)
                self._header[fmt] = True
            fh.writelines(pieces)
            fh.flush()
        if not events:
            return
        if "jsonl" in self.files:
            for e in events:
                row = {"filename": self.result.name, **event_dict(e, False)}
                self.files["jsonl"].write(json.dumps(row, ensure_ascii=False) + "\n")
            self.files["jsonl"].flush()
        self.result.events.extend(events)
        self._tables(partial=True)

    def _tables(self, partial: bool) -> None:
        from ptsed.io.results import atomic_write, get_writer, partial_name

        for fmt, w in self.writers.items():
            if w.combined_files():  # a fresh writer holds this one stream, rendered whole
                fresh = get_writer(fmt, self.out_dir, settings=self._settings, sample_rate=w.sample_rate)
                fresh.add(self.result)
                fresh.close(partial=partial)
            for target in w.targets(self.result.name):
                if partial:
                    with atomic_write(partial_name(target)) as tmp:
                        w.save(tmp, self.result)
                else:
                    w.write(self.result)
                    with contextlib.suppress(FileNotFoundError):
                        partial_name(target).unlink()

    def close(self, duration_s: float) -> list[Path]:
        """The final files (events sorted as ``detect`` sorts them); no partial file stays. Returns them."""
        if self.closed:
            return []
        self.closed = True
        try:
            self.result.duration_s = duration_s
            self.result.events = self.sort(self.result.events)
            for fh in self.files.values():
                fh.close()
            for partial, final in self.appended.values():
                os.replace(partial, final)
            self._tables(partial=False)
        finally:
            self.lock.__exit__(None, None, None)
        out = [f for _, f in self.appended.values()]
        for w in self.writers.values():
            out += w.combined_files() + w.targets(self.result.name)
        return out


# ----------------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------------
class _Interrupt:
    """Ctrl-C: stops the run between blocks (never inside the model); while waiting for audio, at once."""

    def __init__(self) -> None:
        self.stopped = False
        self.waiting = False
        self._old: Any = None

    def __enter__(self) -> _Interrupt:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.stopped = True
        if self.waiting:
            raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _shift(fs: Any, offset: float) -> Any:
    """Frame scores with their times moved by ``offset`` seconds (the stream after a drop)."""
    if not offset:
        return fs
    from ptsed.core.types import FrameScores

    return FrameScores(fs.scores, fs.timestamps + offset, fs.labels, fs.source, fs.channel, fs.meta)


def _event_line(e: Any) -> str:
    score = "" if e.score is None else f"{e.score:.2f}"
    return f"{e.label:<32} {e.onset:9.2f} {e.offset:9.2f}  {score}"


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ptsed.cli.detect import build_predictor, postprocess_options
    from ptsed.cli.vocabulary import apply_to_predictor
    from ptsed.core.errors import AudioError, ConfigError
    from ptsed.inference.stream import StreamDetector
    from ptsed.io.results import parse_formats
    from ptsed.io.sources import Dropped, open_source
    from ptsed.postprocess.pipeline import PostProcessor

    if args.upstream_chunking:
        raise ConfigError("--upstream-chunking needs the whole file; listen uses overlapping windows")
    if args.resume:
        raise ConfigError("--resume is for ptsed detect; a live stream is not resumed")
    formats = parse_formats(args.format, {f: object for f in LIVE_FORMATS})  # type: ignore[misc]
    if args.max_lag <= 0:
        raise ConfigError(f"--max-lag must be > 0 seconds (inf: never drop), not {args.max_lag}")
    profile = None
    if args.postprocess:  # below explicit --threshold / --median-filter, above the checkpoint's values
        from ptsed.postprocess.profile import load_profile

        profile = load_profile(args.postprocess)
    source = open_source(
        args.source,
        rate=args.rate,
        channels=args.channels,
        dtype=args.dtype,
        realtime=args.realtime,
        follow=args.follow,
        max_lag_s=args.max_lag,
        idle_s=args.idle_timeout,
    )
    channels_arg, args.channels = args.channels, "mix"  # build_predictor reads detect's --channels
    try:
        predictor = build_predictor(args)
    finally:
        args.channels = channels_arg
    # the one place detect's post-processing is decided: flags > --postprocess > the checkpoint's > defaults
    predictor.postprocess = PostProcessor.for_model(predictor.models, postprocess_options(args), profile=profile)
    reported = apply_to_predictor(args, predictor, predictor.labels)  # --rollup / --class-map, as detect
    if profile is not None:
        profile.check_labels(reported, f"profile {args.postprocess!r}")
    predictor.postprocess.class_indices(reported)  # unknown class names: before any audio is read
    if predictor.postprocess_from_checkpoint and not args.quiet:
        print(
            f"using the per-class {' and '.join(predictor.postprocess_from_checkpoint)} stored in the checkpoint",
            file=sys.stderr,
        )

    def new_detector() -> StreamDetector:
        return StreamDetector(predictor, source.sample_rate, channels=source.channels, name=source.name)

    det = new_detector()
    pp = det.postprocess
    if source.realtime:
        det.warmup()  # the first forward pass is slow; not while audio is arriving
    source.start()  # a missing or busy device: one line, before any output is made
    settings = {**predictor.settings(), "postprocess": predictor.postprocess.settings(), "source": args.source}
    outputs = None
    if args.output:
        outputs = LiveOutputs(
            args.output,
            formats,
            source.name,
            settings,
            predictor.sample_rate,
            lambda events: pp._sorted(list(events), det.labels),
            overwrite=args.overwrite,
        )
    elif not args.quiet:
        print(f"{'event_label':<32} {'onset':>9} {'offset':>9}  score", flush=True)
    if not args.quiet:
        where = f"{source.sample_rate} Hz, {source.channels} channel{'s' if source.channels > 1 else ''}"
        print(
            f"listening to {source.name} ({where}); window {predictor.window_s:g} s, hop {predictor.hop_s:g} s",
            file=sys.stderr,
        )
    offset = 0.0
    count = 0
    drops: list[Dropped] = []
    error: str | None = None

    def handle(result: Any) -> None:
        nonlocal count
        events = [replace(e, onset=e.onset + offset, offset=e.offset + offset) for e in result.events]
        count += len(events)
        if outputs is not None:
            outputs.add(_shift(result.scores, offset), _shift(result.filtered, offset), events)
        if not args.quiet or outputs is None:
            for e in events:
                print(_event_line(e), flush=True)

    interrupted = False
    with _Interrupt() as stop:
        items = iter(source)
        try:
            while not stop.stopped:
                stop.waiting = True
                try:
                    item = next(items)
                except StopIteration:
                    break
                finally:
                    stop.waiting = False
                if isinstance(item, Dropped):
                    drops.append(item)
                    print(
                        f"ptsed listen: dropped {item.duration_s:.2f} s of audio "
                        f"({item.start_s:.2f}-{item.end_s:.2f} s): "
                        f"processing fell behind by more than --max-lag {args.max_lag:g} s",
                        file=sys.stderr,
                    )
                    handle(det.flush())
                    det = new_detector()
                    offset = item.end_s
                    continue
                handle(det.push(item))
        except KeyboardInterrupt:
            interrupted = True
        except AudioError as err:
            error = str(err)
        finally:
            interrupted = interrupted or stop.stopped
            with contextlib.suppress(Exception):
                source.close()
            try:
                handle(det.flush())
            finally:
                duration = offset + det.duration_s
                files = outputs.close(duration) if outputs is not None else []
    for note in source.warnings:
        print(f"ptsed listen: warning: {note}", file=sys.stderr)
    if not args.quiet:
        lost = sum(d.duration_s for d in drops)
        spans = f"{len(drops)} span{'s' if len(drops) != 1 else ''}"
        dropped = f"; dropped {lost:.2f} s of audio in {spans}" if drops else ""
        how = "interrupted after" if interrupted else "listened to"
        print(f"{how} {duration:.2f} s of {source.name}: {count} events{dropped}", file=sys.stderr)
        if files:
            names = ", ".join(str(f.relative_to(args.output)) for f in files)
            print(f"outputs in {args.output}: {names}", file=sys.stderr)
    if error is not None:
        print(f"ptsed listen: error: {error} (the events before it are written)", file=sys.stderr)
        return 1
    return 0  # the end of the stream, or Ctrl-C: the way a live run is stopped
