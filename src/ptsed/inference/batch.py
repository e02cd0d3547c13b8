"""Batch runs over many files: writers, progress bar, ``--resume``, failure summary.

:func:`ptsed.detect` (``ptsed detect``) and ``ptsed embed`` are thin wrappers over :func:`run_batch`. A file
that cannot be read is reported and skipped; the run goes on and ends with a summary. The output folder holds
``ptsed_settings.json`` (the settings and their hash), ``ptsed_manifest.jsonl`` (a ``start`` record, one
line per finished input: name, settings hash, status, duration, events, the input's size, mtime and
sha256; and an ``end`` record naming the combined tables and the inputs they cover) and, while a run
works in it, the lock ``.ptsed.lock``. ``--resume`` skips inputs already done with the same settings
from the same input and rebuilds the combined tables.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptsed.core.errors import ConfigError
from ptsed.core.types import Event
from ptsed.hub.download import sha256_file
from ptsed.inference.types import FileResult
from ptsed.io.audio import AudioSource
from ptsed.io.lock import FolderLock
from ptsed.io.results import (
    DETECT_WRITERS,
    EMBED_WRITERS,
    PARTS_DIR,
    ResultWriter,
    atomic_write,
    atomic_write_text,
    event_dict,
    output_path,
    output_stem,
    plan_output_stems,
    write_error,
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
    results: list[FileResult] = field(default_factory=list)
    """The events of every input done (processed or skipped by ``--resume``), in input order; no scores."""
    source: Any = None
    """The score source of the run (a :class:`ptsed.inference.predictor.Predictor`, ...)."""

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
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():  # a damaged line is skipped
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):  # not the start/end records
            entries[entry["name"]] = entry
    return entries


def _events_from_entry(entry: dict[str, Any]) -> list[Event]:
    return [
        Event(
            e["onset"],
            e["offset"],
            e["event_label"],
            entry.get("filename", entry["name"]),
            e.get("score"),
            e.get("channel"),
        )
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


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def settings_difference(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The settings that differ, as ``"key: old -> new"`` lines (nested keys joined with dots)."""
    a, b = _flat(old), _flat(json.loads(json.dumps(new, default=str)))

    def short(v: Any) -> str:
        text = v if v == "<unset>" else json.dumps(v, default=str)
        return text if len(text) <= 40 else text[:37] + "..."

    out = []
    for k in sorted(set(a) | set(b)):
        if a.get(k, "<unset>") != b.get(k, "<unset>"):
            out.append(f"{k}: {short(a.get(k, '<unset>'))} -> {short(b.get(k, '<unset>'))}")
    return out


def _output_layout(task: str) -> tuple[list[Path], list[str]]:
    """Relative files and folders that ptsed writes into an output folder (what ``--overwrite`` removes)."""
    table = EMBED_WRITERS if task == "embed" else DETECT_WRITERS
    files, folders = [Path(SETTINGS), Path(MANIFEST)], [PARTS_DIR, "plots", "events"]
    for cls in table.values():
        w = cls(".")
        files += [*w.combined_files(False), *w.combined_files(True)]
        folder = getattr(cls, "folder", "")
        if folder:
            folders.append(folder)
    return files, folders


def _remove_outputs(out: Path, task: str, sources: Sequence[AudioSource]) -> None:
    """Remove what an earlier run wrote into ``out`` (``--overwrite``), never an input."""
    files, folders = _output_layout(task)
    targets = [out / f for f in files] + [out / f for f in folders]
    inputs = [Path(s.path).resolve() for s in sources]
    for t in targets:
        if t.exists() and any(p == t.resolve() or p.is_relative_to(t.resolve()) for p in inputs):
            raise ConfigError(
                f"--overwrite would remove {str(t)!r}, which holds inputs of this run; use another --output"
            )
    for t in targets:
        try:
            if t.is_dir() and not t.is_symlink():
                shutil.rmtree(t)
            elif t.exists() or t.is_symlink():
                t.unlink()
        except OSError as err:
            raise ConfigError(f"--overwrite cannot remove {str(t)!r}: {err.strerror or err}") from err


def _check_previous_run(out: Path, settings: dict[str, Any], digest: str) -> None:
    """Refuse a folder holding the results of other settings (one line naming them)."""
    path = out / SETTINGS
    if not path.exists():
        return
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
        old_hash, old = rec["hash"], rec.get("settings", {})
    except (OSError, ValueError, KeyError, TypeError):
        old_hash, old = None, None
    if old_hash == digest:
        return
    diff = settings_difference(old, settings) if isinstance(old, dict) else [f"{SETTINGS} cannot be read"]
    shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
    raise ConfigError(
        f"the output folder {str(out)!r} holds results made with other settings ({shown or 'other hash'}); "
        "use --overwrite to remove them first, or another --output"
    )


def _prepare_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output {str(out)!r} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR):
            raise ConfigError(f"cannot create the output folder {str(out)!r}: {err.strerror}") from err
        raise write_error(out, err) from err
    if not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write to the output folder {str(out)!r}: permission denied")


def input_identity(path: str | Path) -> dict[str, Any]:
    """Size, modification time and sha256 of an input file (empty when it cannot be read)."""
    try:
        st = os.stat(path)
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(path)}
    except OSError:
        return {}


def unchanged_input(entry: dict[str, Any], path: str | Path) -> bool:
    """True when the file at ``path`` is still the input ``entry`` records: the same size and mtime, or
    (when the mtime changed) the same sha256. Entries without an identity never match."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if "size" not in entry or entry["size"] != st.st_size:
        return False
    if entry.get("mtime_ns") == st.st_mtime_ns:
        return True
    try:
        same = entry.get("sha256") == sha256_file(path)
    except OSError:
        return False
    if same:
        entry["mtime_ns"] = st.st_mtime_ns  # written back, so the next resume trusts it without reading
    return same


def run_batch(
    predictor: Any,
    sources: Sequence[AudioSource],
    *,
    postprocess: Any = None,
    output_dir: str | Path | None = None,
    formats: Sequence[str] = ("tsv",),
    task: str = "detect",
    layer: int | None = None,
    per_file: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    lock: bool = True,
    plot: bool = False,
    plot_top: int = 10,
    progress: bool = True,
    extra_settings: dict[str, Any] | None = None,
    on_result: Callable[[FileResult], None] | None = None,
) -> RunSummary:
    """Run ``predictor`` over ``sources`` and write the outputs.

    An output folder is used by one run at a time (:class:`ptsed.io.lock.FolderLock`) and holds the
    results of one set of settings: a folder whose recorded settings differ is refused unless
    ``overwrite``. Combined tables (``events.tsv``, ``frame_scores.h5``, ...) get their normal names only
    when every input was attempted; an interrupted run writes them as ``events.partial.tsv`` and the
    manifest's last line lists the inputs they cover.

    Args:
        predictor: the score source (:class:`ptsed.inference.source.ScoreSource`: a
            :class:`ptsed.inference.predictor.Predictor`, saved scores, ...); for ``task="embed"`` a
            :class:`Predictor`.
        sources: the inputs (:func:`ptsed.io.audio.list_audio_files`).
        postprocess: the :class:`ptsed.postprocess.pipeline.PostProcessor` that turns the scores into
            events (``None``: the predictor's own ``postprocess``).
        output_dir: output folder; ``None`` writes nothing (results only go to ``on_result``).
        formats: writer names (:data:`ptsed.io.results.DETECT_WRITERS` or ``EMBED_WRITERS``).
        task: ``"detect"`` (scores and events) or ``"embed"`` (embeddings of ``layer``).
        per_file: event tables as one file per input.
        resume: skip inputs whose outputs exist, made with the same settings from the same input
            (same size and mtime, or the same sha256).
        overwrite: remove what an earlier run wrote into the folder first.
        lock: take the folder's lock (``False``: the caller holds it, e.g. rank 0 of a distributed run).
        plot: write ``plots/<name>.png`` per input (detect only).
        plot_top: classes shown in the plot's heat map.
        progress: show a progress bar on stderr.
        extra_settings: more settings that determine the outputs (e.g. checkpoint files), hashed too.
        on_result: called with every :class:`FileResult` (after writing).

    Returns:
        A :class:`RunSummary` (``exit_code`` 0 when every input succeeded).

    Raises:
        ConfigError: the folder is a file, not writable, in use, or holds other settings.
        PtsedError: an output cannot be written (a full disk: one line naming the file and the free space).
    """
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    settings: dict[str, Any] = {"task": task, **predictor.settings(), **(extra_settings or {})}
    if task == "detect":
        postprocess = postprocess if postprocess is not None else predictor.postprocess
        settings["postprocess"] = postprocess.settings()
    else:
        settings["layer"] = layer
    digest = settings_hash(settings)
    out = Path(output_dir) if output_dir is not None else None
    with contextlib.ExitStack() as stack:
        if out is not None:
            _prepare_folder(out)
            if lock:
                stack.enter_context(FolderLock(out, f"ptsed {task}"))
            if overwrite:
                _remove_outputs(out, task, sources)
            else:
                _check_previous_run(out, settings, digest)
        return _run(predictor, postprocess, sources, out, settings, digest, formats, task, layer, per_file, resume,
                    plot, plot_top, progress, on_result)  # fmt: skip


def _results(
    predictor: Any, postprocess: Any, todo: Sequence[AudioSource], task: str, layer: int | None, advance: Callable
) -> Any:
    """The results of the inputs to do: embeddings, or the source's scores with the events of ``postprocess``."""
    if task == "embed":
        return predictor.predict_many(todo, embed=True, layer=layer, progress=advance)
    return (r.add_events(postprocess) for r in predictor.score_many(todo, progress=advance))


def _run(
    predictor: Any,
    postprocess: Any,
    sources: Sequence[AudioSource],
    out: Path | None,
    settings: dict[str, Any],
    digest: str,
    formats: Sequence[str],
    task: str,
    layer: int | None,
    per_file: bool,
    resume: bool,
    plot: bool,
    plot_top: int,
    progress: bool,
    on_result: Callable[[FileResult], None] | None,
) -> RunSummary:
    """:func:`run_batch` after the folder checks (and under its lock)."""
    from ptsed.io.audio import audio_info

    plot = plot and out is not None and task == "detect"
    writers: list[ResultWriter] = []
    stems: dict[str, str] = {}
    if out is not None:
        table = EMBED_WRITERS if task == "embed" else DETECT_WRITERS
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
        if plot or any(w.per_input for w in writers):
            stems, kept = plan_output_stems([s.name for s in sources])
            if kept:
                print(
                    f"inputs share a name but not the extension ({', '.join(kept[:4])}"
                    f"{', ...' if len(kept) > 4 else ''}): their per-file outputs keep the extension "
                    f"({stems[kept[0]]}.tsv, ...)",
                    file=sys.stderr,
                )
            for w in writers:
                w.stems = stems
        # the combined tables of an earlier run go now: a killed run never leaves complete-looking ones
        files, _ = _output_layout(task)
        for f in files:
            if f.name not in (SETTINGS, MANIFEST) and f.suffix != ".h5":
                with contextlib.suppress(FileNotFoundError):
                    (out / f).unlink()
        atomic_write_text(out / SETTINGS, json.dumps({"hash": digest, "settings": settings}, indent=1) + "\n")

    def plot_path(key: str) -> Path:
        assert out is not None
        return output_path(out, "plots", (stems.get(key) or output_stem(key)) + ".png")

    summary = RunSummary()
    todo: list[AudioSource] = list(sources)
    by_key = {s.name: s for s in sources}
    done: dict[str, FileResult] = {}  # events of finished inputs, for the combined tables
    revalidated: list[dict[str, Any]] = []
    if resume and out is not None:
        entries = _read_manifest(out / MANIFEST)
        mtimes = {k: e.get("mtime_ns") for k, e in entries.items()}
        todo = []
        for s in sources:
            e = entries.get(s.name)
            if (
                e
                and e.get("hash") == digest
                and e.get("ok")
                and (not plot or plot_path(s.name).exists())
                and all(w.done(s.name) for w in writers)
                and unchanged_input(e, s.path)
            ):
                if e.get("mtime_ns") != mtimes.get(s.name):
                    revalidated.append(e)  # the content was hashed again: record the new mtime
                done[s.name] = FileResult(
                    str(s.path),
                    e.get("filename", s.name),
                    duration_s=e.get("duration_s"),
                    events=_events_from_entry(e),
                    input_name=s.name,
                )
                summary.skipped += 1
            else:
                todo.append(s)
    for w in writers:
        if getattr(w, "warning", None):
            print(f"warning: {w.warning}", file=sys.stderr)  # type: ignore[attr-defined]
    total_s = 0.0
    if progress:
        for s in todo:
            with contextlib.suppress(Exception):  # a bad file is reported when it is processed
                total_s += audio_info(s.path).duration_s or 0.0
    bar = _Progress(total_s, len(todo), progress)
    start = time.perf_counter()
    manifest = _Manifest(out / MANIFEST) if out is not None else None
    finished = False
    try:
        if manifest is not None:
            manifest.write({"record": "start", "hash": digest, "pid": os.getpid(), "time": time.time()})
            for e in revalidated:
                manifest.write(e)
        for result in _results(predictor, postprocess, todo, task, layer, bar.advance):
            key = result.input_name
            entry: dict[str, Any] = {"name": key, "source": result.source, "hash": digest, "ok": result.ok}
            if result.name != key:
                entry["filename"] = result.name
            if result.ok:
                summary.processed += 1
                summary.audio_s += result.duration_s or 0.0
                summary.events += len(result.events)
                for w in writers:
                    w.write(result)
                done[key] = FileResult(
                    result.source, result.name, duration_s=result.duration_s, events=result.events, input_name=key
                )
                if plot:
                    from ptsed.plot import plot_result

                    with atomic_write(plot_path(key)) as tmp:
                        plot_result(result, tmp, top=plot_top)
                entry["duration_s"] = result.duration_s
                entry["events"] = [event_dict(e, predictor.channels == "each") for e in result.events]
                if out is not None and key in by_key:
                    entry.update(input_identity(by_key[key].path))
            else:
                summary.failed.append((result.name, result.error or "unknown error"))
                entry["error"] = result.error
            if manifest is not None:
                manifest.write(entry)
            if on_result is not None:
                on_result(result)
            bar.file_done(result.ok, None if result.ok else f"skipped {result.name}: {result.error}")
        finished = True
    finally:
        bar.close()
        try:
            covered = [s.name for s in sources if s.name in done]
            tables: list[str] = []
            for w in writers:
                for key in covered:
                    w.add(done[key])
                w.close(partial=not finished)
                tables += [str(p.relative_to(out)) for p in w.combined_files(not finished) if out and p.exists()]
            if manifest is not None:
                status = "finished" if finished else "interrupted"
                manifest.write({"record": "end", "status": status, "hash": digest, "tables": tables, "files": covered})
            if not finished and out is not None and tables:
                print(
                    f"interrupted: {', '.join(tables)} cover {len(covered)} of {len(sources)} inputs "
                    "(--resume continues the run)",
                    file=sys.stderr,
                )
        except BaseException as err:
            if finished:
                raise
            print(f"could not write the partial results: {err}", file=sys.stderr)
        finally:
            if manifest is not None:
                manifest.close()
    summary.wall_s = time.perf_counter() - start
    summary.results = [done[s.name] for s in sources if s.name in done]
    summary.source = predictor
    return summary


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1)


class _Manifest:
    """The manifest, opened for appending; a failed write is one :class:`PtsedError` line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            cut = path.exists() and path.stat().st_size > 0 and _last_byte(path) != b"\n"
            self.fh = open(path, "a", encoding="utf-8")  # noqa: SIM115
            if cut:  # a line cut by a crash or a full disk stays alone on its line
                self.fh.write("\n")
        except OSError as err:
            raise write_error(path, err) from err

    def write(self, entry: dict[str, Any]) -> None:
        try:
            self.fh.write(json.dumps(entry) + "\n")
            self.fh.flush()
        except OSError as err:
            raise write_error(self.path, err) from err

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.fh.close()
