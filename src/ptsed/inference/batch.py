"""Batch runs over many files: writers, progress bar, ``--resume``, failure summary.

``ptsed detect`` and ``ptsed embed`` are thin wrappers over :func:`run_batch`. A file that cannot be read
is reported and skipped; the run goes on and ends with a summary. The output folder holds
``ptsed_settings.json`` (the settings and their hash) and ``ptsed_manifest.jsonl`` (one line per finished
input: name, settings hash, status, duration, events), from which ``--resume`` skips inputs already done
with the same settings and rebuilds the combined tables.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptsed.core.errors import ConfigError
from ptsed.core.types import Event
from ptsed.inference.types import FileResult
from ptsed.io.audio import AudioSource
from ptsed.io.results import (
    DETECT_WRITERS,
    EMBED_WRITERS,
    ResultWriter,
    atomic_write_text,
    event_dict,
    output_stem,
)

MANIFEST = "ptsed_manifest.jsonl"
SETTINGS = "ptsed_settings.json"


def settings_hash(settings: dict[str, Any]) -> str:
    """A short, stable hash of JSON settings (key order does not matter)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def file_identity(path: str | Path | None) -> dict[str, Any] | None:
    """Path, size and modification time of a file (a cheap identity for settings hashes)."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        return {"path": str(p)}
    st = p.stat()
    return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


@dataclass
class RunSummary:
    """What a batch run did."""

    processed: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    audio_s: float = 0.0
    wall_s: float = 0.0
    events: int = 0

    @property
    def exit_code(self) -> int:
        """0 when every input succeeded, 1 otherwise."""
        return 1 if self.failed else 0

    def text(self) -> str:
        speed = self.audio_s / self.wall_s if self.wall_s > 0 else 0.0
        rtf = self.wall_s / self.audio_s if self.audio_s > 0 else 0.0
        lines = [
            f"{self.processed} file(s) processed, {self.skipped} skipped (already done), {len(self.failed)} failed; "
            f"{self.audio_s:.1f} s of audio in {self.wall_s:.1f} s (real-time factor {rtf:.4f}, {speed:.1f}x)"
            + (f"; {self.events} events" if self.events else "")
        ]
        for name, err in self.failed:
            lines.append(f"  FAILED {name}: {err}")
        return "\n".join(lines)


def _read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    entries: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return entries
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
        entries[entry["name"]] = entry
    return entries


def _events_from_entry(entry: dict[str, Any]) -> list[Event]:
    return [
        Event(e["onset"], e["offset"], e["event_label"], entry["name"], e.get("score"), e.get("channel"))
        for e in entry.get("events", [])
    ]


class _Progress:
    """tqdm bar over seconds of audio, with the real-time factor; silent when disabled."""

    def __init__(self, total_s: float, n_files: int, enabled: bool) -> None:
        self.bar = None
        self.n_files = n_files
        self.done_files = 0
        self.failed = 0
        self.start = time.perf_counter()
        self.audio = 0.0
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=round(total_s, 1) if total_s > 0 else None,
                unit="s",
                unit_scale=False,
                desc="audio",
                dynamic_ncols=True,
                bar_format=(
                    "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]"
                    if total_s > 0
                    else "{desc}: {n:.0f} s [{elapsed}{postfix}]"
                ),
                file=sys.stderr,
            )
            self._postfix()

    def _postfix(self) -> None:
        if self.bar is None:
            return
        wall = time.perf_counter() - self.start
        rtf = wall / self.audio if self.audio > 0 else float("nan")
        text = f"files {self.done_files}/{self.n_files}"
        if self.failed:
            text += f", {self.failed} failed"
        if self.audio > 0:
            text += f", RTF {rtf:.4f} ({1 / rtf:.0f}x)"
        self.bar.set_postfix_str(text, refresh=False)

    def advance(self, seconds: float) -> None:
        self.audio += seconds
        if self.bar is not None:
            self.bar.update(seconds)
            self._postfix()

    def file_done(self, ok: bool, message: str | None = None) -> None:
        self.done_files += 1
        self.failed += 0 if ok else 1
        if self.bar is not None:
            self._postfix()
            self.bar.refresh()
            if message:
                self.bar.write(message, file=sys.stderr)
        elif message:
            print(message, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_batch(
    predictor: Any,
    sources: Sequence[AudioSource],
    *,
    output_dir: str | Path | None = None,
    formats: Sequence[str] = ("tsv",),
    task: str = "detect",
    layer: int | None = None,
    per_file: bool = False,
    resume: bool = False,
    plot: bool = False,
    plot_top: int = 10,
    progress: bool = True,
    extra_settings: dict[str, Any] | None = None,
    on_result: Callable[[FileResult], None] | None = None,
) -> RunSummary:
    """Run ``predictor`` over ``sources`` and write the outputs.

    Args:
        predictor: a :class:`ptsed.inference.predictor.Predictor`.
        sources: the inputs (:func:`ptsed.io.audio.list_audio_files`).
        output_dir: output folder; ``None`` writes nothing (results only go to ``on_result``).
        formats: writer names (:data:`ptsed.io.results.DETECT_WRITERS` or ``EMBED_WRITERS``).
        task: ``"detect"`` (scores and events) or ``"embed"`` (embeddings of ``layer``).
        per_file: event tables as one file per input.
        resume: skip inputs whose outputs exist and were made with the same settings.
        plot: write ``plots/<name>.png`` per input (detect only).
        plot_top: classes shown in the plot's heat map.
        progress: show a progress bar on stderr.
        extra_settings: more settings that determine the outputs (e.g. checkpoint files), hashed too.
        on_result: called with every :class:`FileResult` (after writing).

    Returns:
        A :class:`RunSummary` (``exit_code`` 0 when every input succeeded).
    """
    from ptsed.io.audio import audio_info

    stems: dict[str, str] = {}
    for s in sources:
        stem = output_stem(s.name)
        if stem in stems and output_dir is not None:
            raise ConfigError(
                f"inputs {stems[stem]!r} and {s.name!r} would write to the same output files; "
                "rename one or process them in separate runs"
            )
        stems[stem] = s.name
    settings: dict[str, Any] = {"task": task, **predictor.settings(), **(extra_settings or {})}
    if task == "detect":
        settings["postprocess"] = predictor.postprocess.settings()
    else:
        settings["layer"] = layer
    digest = settings_hash(settings)
    out = Path(output_dir) if output_dir is not None else None
    writers: list[ResultWriter] = []
    if out is not None:
        table = EMBED_WRITERS if task == "embed" else DETECT_WRITERS
        out.mkdir(parents=True, exist_ok=True)
        writers = [
            table[f](
                out,
                per_file=per_file,
                upstream=predictor.upstream_chunking,
                settings={**settings, "hash": digest},
                sample_rate=predictor.sample_rate,
                channels=predictor.channels,
            )
            for f in formats
        ]
        atomic_write_text(out / SETTINGS, json.dumps({"hash": digest, "settings": settings}, indent=1) + "\n")
    summary = RunSummary()
    todo: list[AudioSource] = list(sources)
    done: dict[str, FileResult] = {}  # events of finished inputs, for the combined tables (in input order)
    if resume and out is not None:
        entries = _read_manifest(out / MANIFEST)
        todo = []
        for s in sources:
            e = entries.get(s.name)
            plot_ok = not plot or (out / "plots" / (output_stem(s.name) + ".png")).exists()
            if e and e.get("hash") == digest and e.get("ok") and plot_ok and all(w.done(s.name) for w in writers):
                done[s.name] = FileResult(
                    str(s.path), s.name, duration_s=e.get("duration_s"), events=_events_from_entry(e)
                )
                summary.skipped += 1
            else:
                todo.append(s)
    total_s = 0.0
    if progress:
        for s in todo:
            with contextlib.suppress(Exception):  # a bad file is reported when it is processed
                total_s += audio_info(s.path).duration_s or 0.0
    bar = _Progress(total_s, len(todo), progress)
    start = time.perf_counter()
    manifest = open(out / MANIFEST, "a", encoding="utf-8") if out is not None else None  # noqa: SIM115
    try:
        for result in predictor.predict_many(todo, embed=task == "embed", layer=layer, progress=bar.advance):
            entry: dict[str, Any] = {"name": result.name, "source": result.source, "hash": digest, "ok": result.ok}
            if result.ok:
                summary.processed += 1
                summary.audio_s += result.duration_s or 0.0
                summary.events += len(result.events)
                for w in writers:
                    w.write(result)
                done[result.name] = FileResult(
                    result.source, result.name, duration_s=result.duration_s, events=result.events
                )
                if plot and out is not None and task == "detect":
                    from ptsed.plot import plot_result

                    plot_result(result, out / "plots" / (output_stem(result.name) + ".png"), top=plot_top)
                entry["duration_s"] = result.duration_s
                entry["events"] = [event_dict(e, predictor.channels == "each") for e in result.events]
            else:
                summary.failed.append((result.name, result.error or "unknown error"))
                entry["error"] = result.error
            if manifest is not None:
                manifest.write(json.dumps(entry) + "\n")
                manifest.flush()
            if on_result is not None:
                on_result(result)
            bar.file_done(result.ok, None if result.ok else f"skipped {result.name}: {result.error}")
    finally:
        bar.close()
        if manifest is not None:
            manifest.close()
        names = [s.name for s in sources] + [n for n in done if n not in stems.values()]
        for w in writers:
            for name in names:
                if name in done:
                    w.add(done[name])
            w.close()
    summary.wall_s = time.perf_counter() - start
    return summary
