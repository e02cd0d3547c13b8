"""Writers and readers of detection results: events, frame scores, embeddings.

Writers are small classes picked by format name (:func:`get_writer`). Each writes under one output folder:

==================== ================================================ ==========================================
format               content                                          file(s)
==================== ================================================ ==========================================
``tsv``              events, DCASE table (filename onset offset label) ``events.tsv`` (per file: ``events/<name>.tsv``)
``csv``              events, upstream's CSV columns + ``score``        ``events.csv`` (per file: ``events/<name>.csv``)
``json``             events with scores, durations and the settings   ``events.json`` (per file: ``events/<name>.json``)
``audacity``         Audacity label track                             ``audacity/<name>.txt``
``raven``            Raven selection table                            ``raven/<name>.selections.txt``
``scores``           raw frame probabilities, sed_scores_eval TSV     ``scores/<name>.tsv``
``scores_filtered``  post-processed scores, same format               ``scores_filtered/<name>.tsv``
``scores_sebb``      cSEBB boxes as score tables (``--decoder csebb``) ``scores_sebb/<name>.tsv``
``npz``              raw probabilities + timestamps + labels          ``frames/<name>.npz``
``h5``               the same in one HDF5 file, a group per input     ``frame_scores.h5``
==================== ================================================ ==========================================

Embedding writers (``ptsed embed``): ``npy`` (``embeddings/<name>.npy``, (T, D) or (C, T, D) float32) and
``h5`` (``embeddings.h5``). ``<name>`` is the input's relative path without its extension (made safe by
:func:`output_path`, the one place per-input paths are made); with ``channels="each"`` score files get a
``_ch<c>`` suffix. Combined files of an interrupted run are named ``events.partial.tsv`` and so on. Every
file is written through :func:`atomic_write` (a unique temporary name, then a rename). Times are
seconds; frame ``t`` of a frame or embedding array spans ``[timestamps[t], timestamps[t + 1])``.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ptsed.core.errors import ConfigError, PtsedError
from ptsed.core.files import atomic_write, atomic_write_text, temporary_name, write_error  # noqa: F401 - old home
from ptsed.core.frames import FRAME_HOP_S
from ptsed.core.types import Event, FrameScores
from ptsed.io.scores_tsv import (  # noqa: F401 - scores_tsv_text, valid_frames: their old home
    format_time,
    read_scores_tsv,
    scores_tsv_pieces,
    scores_tsv_text,
    valid_frames,
)


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------
def safe_relative_name(name: str) -> str:
    """An input's name as a safe relative path: ``..``, ``.`` and empty parts, a root and a drive are left
    out, and backslashes count as separators (``"../../a/b.wav"`` -> ``"a/b.wav"``,
    ``"/etc/x.wav"`` -> ``"etc/x.wav"``).

    Raises:
        ConfigError: nothing is left (a name such as ``".."``).
    """
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    if parts and len(parts[0]) == 2 and parts[0][1] == ":":  # a Windows drive
        parts = parts[1:]
    if not parts:
        raise ConfigError(f"cannot name output files after the input {name!r}")
    return "/".join(parts)


def output_stem(name: str) -> str:
    """``"site1/rec.wav"`` -> ``"site1/rec"``: the input's safe relative name (:func:`safe_relative_name`)
    without its extension."""
    safe = safe_relative_name(name)
    p = Path(safe)
    return (p.parent / p.stem).as_posix() if p.suffix and p.stem else safe


def output_path(out_dir: str | os.PathLike, folder: str, relative: str) -> Path:
    """The one place per-input output paths are made: ``out_dir/folder/relative``.

    ``relative`` is an input's own relative name (with the suffix of the output), made safe with
    :func:`safe_relative_name`; the resolved path must lie inside ``out_dir``.

    Raises:
        ConfigError: the path would lie outside ``out_dir`` (a symbolic link inside it pointing out).
    """
    root = Path(out_dir)
    path = root / folder / safe_relative_name(relative) if folder else root / safe_relative_name(relative)
    if not path.resolve().is_relative_to(root.resolve()):
        raise ConfigError(f"refusing to write {str(path)!r}: it resolves outside the output folder {str(root)!r}")
    return path


def plan_output_stems(names: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Output stems of inputs (name -> stem) whose per-input files do not collide.

    Inputs whose stems would collide (``take1.wav`` and ``take1.flac``) keep their extension
    (``take1.wav``, ``take1.flac``).

    Returns:
        The stems, and the names that kept their extension.

    Raises:
        ConfigError: two inputs collide even with their extensions (``a/x.wav`` and ``../a/x.wav``).
    """
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(output_stem(n), []).append(n)
    stems: dict[str, str] = {}
    kept: list[str] = []
    for stem, group in groups.items():
        for n in group:
            stems[n] = stem if len(group) == 1 else safe_relative_name(n)
            if len(group) > 1:
                kept.append(n)
    seen: dict[str, str] = {}
    for n, stem in stems.items():
        if stem in seen:
            raise ConfigError(
                f"inputs {seen[stem]!r} and {n!r} would write to the same output files; "
                "rename one or process them in separate runs"
            )
        seen[stem] = n
    return stems, kept


def event_dict(e: Event, with_channel: bool) -> dict[str, Any]:
    d: dict[str, Any] = {"onset": e.onset, "offset": e.offset, "event_label": e.label}
    if e.score is not None:
        d["score"] = round(float(e.score), 6)
    if with_channel:
        d["channel"] = e.channel
    return d


# ----------------------------------------------------------------------------------------------------
# writers
# ----------------------------------------------------------------------------------------------------
class ResultWriter:
    """Base class of all writers.

    The runner calls :meth:`write` for every input processed in this run, :meth:`add` for every input
    that succeeded (also those skipped by ``--resume``; combined tables are built from these), and
    :meth:`close` at the end. :meth:`targets` lists the per-input files (what ``--resume`` checks).

    Inputs are known by their key (:attr:`ptsed.inference.types.FileResult.input_name`, the input's own
    relative name); per-input files are named after the key's stem (:attr:`stems`, else
    :func:`output_stem`) and made by :func:`output_path` only.

    Args:
        out_dir: the output folder.
        per_file: event tables as one file per input instead of one combined table.
        upstream: upstream layout where it differs (CSV without the score column).
        settings: the run's settings (stored in JSON outputs).
        sample_rate: the model's sample rate (Raven's frequency range).
        channels: ``"mix"`` or ``"each"`` (adds channel columns/suffixes).
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "events"  # events | scores | embeddings
    help: ClassVar[str] = ""

    def __init__(
        self,
        out_dir: str | os.PathLike,
        *,
        per_file: bool = False,
        upstream: bool = False,
        settings: dict[str, Any] | None = None,
        sample_rate: int = 16_000,
        channels: str = "mix",
    ) -> None:
        self.out_dir = Path(out_dir)
        self.per_file = per_file
        self.upstream = upstream
        self.settings = settings or {}
        self.sample_rate = sample_rate
        self.each_channel = channels == "each"
        self.stems: dict[str, str] = {}
        """Output stems by input key (:func:`plan_output_stems`); keys not in it use :func:`output_stem`."""

    def stem(self, key: str) -> str:
        """The output stem of an input (its safe relative name without the extension)."""
        return self.stems.get(key) or output_stem(key)

    def file_for(self, folder: str, key: str, suffix: str) -> Path:
        """``out_dir/folder/<stem of key><suffix>`` (:func:`output_path`)."""
        return output_path(self.out_dir, folder, self.stem(key) + suffix)

    @property
    def per_input(self) -> bool:
        """True when this writer writes files named after the inputs."""
        return bool(self.targets("x"))

    def combined_files(self, partial: bool = False) -> list[Path]:
        """Files that combine all inputs (``partial``: their names in an interrupted run)."""
        return []

    def targets(self, result_name: str) -> list[Path]:
        """Per-input output files (empty for formats written only as one combined file)."""
        return []

    def done(self, result_name: str) -> bool:
        """True when this input's per-input outputs exist (``--resume``)."""
        return all(p.exists() for p in self.targets(result_name))

    def write(self, result: Any) -> None:
        """Write the per-input outputs of a processed :class:`ptsed.inference.types.FileResult`."""

    def add(self, result: Any) -> None:
        """Register a successful input for the combined outputs (``name``, ``duration_s``, ``events``)."""

    def close(self, partial: bool = False) -> None:
        """Write combined outputs: under their normal names, or (``partial``: the run was interrupted)
        under names that say they are partial (``events.partial.tsv``)."""


def _key(result: Any) -> str:
    return getattr(result, "input_name", "") or result.name


def partial_name(path: Path) -> Path:
    """``events.tsv`` -> ``events.partial.tsv``: the name of a combined file of an interrupted run."""
    return path.with_name(f"{path.stem}.partial{path.suffix}")


class _PerInput(ResultWriter):
    """One file per input: ``<out_dir>/<folder>/<name><suffix>``."""

    folder: ClassVar[str] = ""
    suffix: ClassVar[str] = ""

    def targets(self, result_name: str) -> list[Path]:
        return [self.file_for(self.folder, result_name, self.suffix)]

    def write(self, result: Any) -> None:
        if result.error is None:
            with atomic_write(self.targets(_key(result))[0]) as tmp:
                self.save(tmp, result)

    def save(self, path: Path, result: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class _EventTable(ResultWriter):
    """Events of all inputs in one table, or one table per input."""

    suffix: ClassVar[str] = ""

    def __init__(self, out_dir: str | os.PathLike, **kw: Any) -> None:
        super().__init__(out_dir, **kw)
        self._records: list[Any] = []

    def targets(self, result_name: str) -> list[Path]:
        if not self.per_file:
            return []
        return [self.file_for("events", result_name, self.suffix)]

    def combined_files(self, partial: bool = False) -> list[Path]:
        if self.per_file:
            return []
        path = self.out_dir / f"events{self.suffix}"
        return [partial_name(path) if partial else path]

    def write(self, result: Any) -> None:
        if self.per_file and result.error is None:
            atomic_write_text(self.targets(_key(result))[0], self.render([result]))

    def add(self, result: Any) -> None:
        if not self.per_file:
            self._records.append(result)

    def close(self, partial: bool = False) -> None:
        if not self.per_file:
            atomic_write_text(self.combined_files(partial)[0], self.render(self._records))
            if not partial:
                with contextlib.suppress(FileNotFoundError):
                    self.combined_files(True)[0].unlink()

    def render(self, records: Sequence[Any]) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


class DcaseTsvWriter(_EventTable):
    """DCASE event table: ``filename<TAB>onset<TAB>offset<TAB>event_label`` (+ ``channel``).

    A field holding a tab, a newline or a double quote is quoted as in CSV (``"a<TAB>b.wav"``), which
    :func:`read_events`, pandas and sed_scores_eval read back."""

    name = "tsv"
    suffix = ".tsv"
    help = "events as a DCASE TSV (filename onset offset event_label)"

    def render(self, records: Sequence[Any]) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, delimiter="\t", lineterminator="\n")
        w.writerow(["filename", "onset", "offset", "event_label"] + (["channel"] if self.each_channel else []))
        for r in records:
            for e in r.events:
                row = [r.name, format_time(e.onset), format_time(e.offset), e.label]
                if self.each_channel:
                    row.append(str(e.channel))
                w.writerow(row)
        return buf.getvalue()


class CsvWriter(_EventTable):
    """CSV ``event_label,onset,offset,filename,score`` (upstream's columns first; no score in upstream mode)."""

    name = "csv"
    suffix = ".csv"
    help = "events as CSV (event_label,onset,offset,filename,score)"

    def render(self, records: Sequence[Any]) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        cols = ["event_label", "onset", "offset", "filename"]
        if not self.upstream:
            cols.append("score")
        if self.each_channel:
            cols.append("channel")
        w.writerow(cols)
        for r in records:
            for e in r.events:
                row = [e.label, format_time(e.onset), format_time(e.offset), r.name]
                if not self.upstream:
                    row.append("" if e.score is None else f"{e.score:.6g}")
                if self.each_channel:
                    row.append(e.channel)
                w.writerow(row)
        return buf.getvalue()


class JsonWriter(_EventTable):
    """JSON: ``{"ptsed_version", "settings", "files": [{"filename", "source", "duration_s", "events"}]}``."""

    name = "json"
    suffix = ".json"
    help = "events with scores, durations and settings as JSON"

    def render(self, records: Sequence[Any]) -> str:
        from ptsed._version import __version__

        files = [
            {
                "filename": r.name,
                "source": str(r.source),
                "duration_s": r.duration_s,
                "events": [event_dict(e, self.each_channel) for e in r.events],
            }
            for r in records
        ]
        doc = {"ptsed_version": __version__, "settings": self.settings, "files": files}
        return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


class AudacityWriter(_PerInput):
    """Audacity label track per input: ``onset<TAB>offset<TAB>label`` (File > Import > Labels)."""

    name = "audacity"
    folder = "audacity"
    suffix = ".txt"
    help = "Audacity label tracks (audacity/<name>.txt)"

    def save(self, path: Path, result: Any) -> None:
        lines = []
        for e in result.events:
            label = e.label if not self.each_channel else f"{e.label} [ch{e.channel}]"
            lines.append(f"{e.onset:.6f}\t{e.offset:.6f}\t{label}\n")
        path.write_text("".join(lines), encoding="utf-8")


class RavenWriter(_PerInput):
    """Raven Pro selection table per input (File > Open Selection Table)."""

    name = "raven"
    folder = "raven"
    suffix = ".selections.txt"
    help = "Raven selection tables (raven/<name>.selections.txt)"
    columns = (
        "Selection",
        "View",
        "Channel",
        "Begin Time (s)",
        "End Time (s)",
        "Low Freq (Hz)",
        "High Freq (Hz)",
        "Annotation",
        "Score",
    )

    def save(self, path: Path, result: Any) -> None:
        lines = ["\t".join(self.columns)]
        high = f"{self.sample_rate / 2:.1f}"
        for i, e in enumerate(result.events, 1):
            channel = 1 if e.channel is None else e.channel + 1
            score = "" if e.score is None else f"{e.score:.4f}"
            lines.append(
                f"{i}\tSpectrogram 1\t{channel}\t{e.onset:.4f}\t{e.offset:.4f}\t0.0\t{high}\t{e.label}\t{score}"
            )
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


class _ScoresTsv(ResultWriter):
    kind = "scores"
    folder: ClassVar[str] = "scores"
    attr: ClassVar[str] = "scores"

    def _paths(self, result_name: str, n_streams: int) -> list[Path]:
        if not self.each_channel:
            return [self.file_for(self.folder, result_name, ".tsv")]
        return [self.file_for(self.folder, result_name, f"_ch{c}.tsv") for c in range(n_streams)]

    def targets(self, result_name: str) -> list[Path]:
        return self._paths(result_name, 1)

    def write(self, result: Any) -> None:
        if result.error is not None:
            return
        streams = getattr(result, self.attr)
        for path, fs in zip(self._paths(_key(result), len(streams)), streams, strict=True):
            atomic_write_text(path, scores_tsv_pieces(fs))


class ScoresWriter(_ScoresTsv):
    """Raw frame probabilities as sed_scores_eval TSV."""

    name = "scores"
    help = "raw frame probabilities, sed_scores_eval TSV (scores/<name>.tsv)"


class FilteredScoresWriter(_ScoresTsv):
    """Post-processed frame scores as sed_scores_eval TSV."""

    name = "scores_filtered"
    folder = "scores_filtered"
    attr = "filtered"
    help = "median-filtered frame scores, sed_scores_eval TSV (scores_filtered/<name>.tsv)"


class SebbScoresWriter(_ScoresTsv):
    """cSEBB boxes (``ptsed detect --decoder csebb``) as sed_scores_eval TSV: each box's span carries its
    confidence (:meth:`ptsed.postprocess.sebb.CSEBB.score_table`)."""

    name = "scores_sebb"
    folder = "scores_sebb"
    help = "cSEBB boxes as sed_scores_eval TSV, with --decoder csebb (scores_sebb/<name>.tsv)"

    def write(self, result: Any) -> None:
        if result.error is not None:
            return
        table = result.postprocessor.score_table
        for path, fs in zip(self._paths(_key(result), len(result.scores)), result.scores, strict=True):
            atomic_write_text(path, scores_tsv_pieces(table(fs)))


def _stack(streams: Sequence[Any], attr: str) -> np.ndarray:
    arrays = [getattr(s, attr) for s in streams]
    return arrays[0] if len(arrays) == 1 else np.stack(arrays)


class NpzWriter(_PerInput):
    """Raw frame probabilities, timestamps and labels as ``.npz`` (``read_frame_scores`` reads it back)."""

    name = "npz"
    kind = "scores"
    folder = "frames"
    suffix = ".npz"
    help = "raw frame probabilities as NPZ (frames/<name>.npz), for redoing post-processing"

    def save(self, path: Path, result: Any) -> None:
        meta = {"name": result.name, "source": str(result.source), "duration_s": result.duration_s}
        meta["settings"] = self.settings
        np.savez(
            path,
            scores=_stack(result.scores, "scores"),
            timestamps=result.scores[0].timestamps,
            labels=np.array(result.scores[0].labels),
            channels=np.array([-1 if s.channel is None else s.channel for s in result.scores]),
            meta=np.array(json.dumps(meta)),
        )


PARTS_DIR = ".ptsed_parts"
"""Hidden folder of the output folder where HDF5 writers keep one part file per input until they assemble."""


class _H5Writer(ResultWriter):
    """One HDF5 file with a group per input (datasets ``values``/``scores``, ``timestamps``).

    Each input is first written to a part file of its own (``.ptsed_parts/<filename>/<hash>.h5``, through
    :func:`atomic_write`); :meth:`close` assembles the parts, and the groups of the previous file that
    ``--resume`` kept, into a new file that then replaces the old one. A full disk or a kill never damages
    the file, and a damaged file (from an older version) only makes ``--resume`` redo its inputs.
    """

    filename: ClassVar[str] = ""

    def __init__(self, out_dir: str | os.PathLike, **kw: Any) -> None:
        super().__init__(out_dir, **kw)
        self._keys: dict[str, None] = {}  # inputs to assemble, in order
        self._existing: set[str] | None = None
        self.warning: str | None = None
        """Set when a previous file is damaged (its inputs count as not done)."""

    @property
    def path(self) -> Path:
        return self.out_dir / self.filename

    @staticmethod
    def _h5py() -> Any:
        try:
            import h5py
        except ImportError as err:
            raise ConfigError("the h5 format needs h5py: pip install 'ptsed[hdf5]'") from err
        return h5py

    def _part(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:24]
        return output_path(self.out_dir, f"{PARTS_DIR}/{self.filename}", digest + ".h5")

    def existing(self) -> set[str]:
        """Inputs held by the file a previous run left (empty when it is missing or damaged)."""
        if self._existing is None:
            self._existing = set()
            if self.path.exists():
                h5py = self._h5py()
                found: set[str] = set()

                def visit(name: str, obj: Any) -> None:
                    if isinstance(obj, h5py.Group) and "timestamps" in obj:
                        found.add(name)

                try:
                    with h5py.File(self.path, "r") as fh:
                        fh.visititems(visit)
                    self._existing = found
                except Exception as err:  # noqa: BLE001 - h5py raises several kinds for a damaged file
                    self.warning = f"{str(self.path)!r} is damaged ({err}); its inputs are processed again"
        return self._existing

    def combined_files(self, partial: bool = False) -> list[Path]:
        return [partial_name(self.path) if partial else self.path]

    def done(self, result_name: str) -> bool:
        return self._part(result_name).exists() or safe_relative_name(result_name) in self.existing()

    def write(self, result: Any) -> None:
        if result.error is not None:
            return
        h5py = self._h5py()
        with atomic_write(self._part(_key(result))) as tmp, h5py.File(tmp, "w") as fh:
            g = fh.create_group("input")
            g.attrs["source"] = str(result.source)
            g.attrs["duration_s"] = float(result.duration_s or 0.0)
            self.fill(g, result)
        self._keys[_key(result)] = None

    def fill(self, group: Any, result: Any) -> None:  # pragma: no cover - abstract
        """Write the datasets and attributes of one input into its group."""
        raise NotImplementedError

    def add(self, result: Any) -> None:
        self._keys[_key(result)] = None

    def close(self, partial: bool = False) -> None:
        if not self._keys:
            return
        h5py = self._h5py()
        target = self.combined_files(partial)[0]
        existing = self.existing()
        new = [k for k in self._keys if self._part(k).exists()]
        if not partial and not new and {safe_relative_name(k) for k in self._keys} == existing:
            return  # a resumed run with nothing new: the file is already what it would be
        with contextlib.ExitStack() as stack:
            old = None
            if len(new) < len(self._keys) and existing:
                old = stack.enter_context(h5py.File(self.path, "r"))
            with atomic_write(target) as tmp, h5py.File(tmp, "w") as dst:
                dst.attrs["settings"] = json.dumps(self.settings)
                for key in self._keys:
                    name, part = safe_relative_name(key), self._part(key)
                    if part.exists():
                        with h5py.File(part, "r") as src:
                            _copy_group(src["input"], dst, name)
                    elif old is not None and name in existing:
                        _copy_group(old[name], dst, name)
        self._existing = None  # the new file is read again when asked
        if not partial:
            shutil.rmtree(self.out_dir / PARTS_DIR / self.filename, ignore_errors=True)
            with contextlib.suppress(OSError):
                (self.out_dir / PARTS_DIR).rmdir()  # when no other writer's parts are left
            with contextlib.suppress(FileNotFoundError):
                partial_name(self.path).unlink()


def _copy_group(src: Any, dst: Any, name: str) -> None:
    """Copy the HDF5 group ``src`` to ``dst[name]`` (a path; its parent groups are made)."""
    parent, _, base = name.rpartition("/")
    into = dst.require_group(parent) if parent else dst
    if base in into:
        del into[base]
    into.copy(src, base)


class H5ScoresWriter(_H5Writer):
    name = "h5"
    kind = "scores"
    filename = "frame_scores.h5"
    help = "raw frame probabilities in one HDF5 file (frame_scores.h5), a group per input"

    def fill(self, group: Any, result: Any) -> None:
        group.create_dataset("scores", data=_stack(result.scores, "scores"))
        group.create_dataset("timestamps", data=result.scores[0].timestamps)
        group.attrs["labels"] = json.dumps(result.scores[0].labels)
        group.attrs["channels"] = [-1 if s.channel is None else s.channel for s in result.scores]


class NpyEmbeddingsWriter(_PerInput):
    name = "npy"
    kind = "embeddings"
    folder = "embeddings"
    suffix = ".npy"
    help = "embeddings as NPY, (T, D) float32, frame t starts at t * 0.04 s (embeddings/<name>.npy)"

    def save(self, path: Path, result: Any) -> None:
        np.save(path, _stack(result.embeddings, "values"))


class H5EmbeddingsWriter(_H5Writer):
    name = "h5"
    kind = "embeddings"
    filename = "embeddings.h5"
    help = "embeddings in one HDF5 file (embeddings.h5), a group per input"

    def fill(self, group: Any, result: Any) -> None:
        first = result.embeddings[0]
        group.create_dataset("values", data=_stack(result.embeddings, "values"))
        group.create_dataset("timestamps", data=first.timestamps)
        group.attrs["layer"] = -999 if first.layer is None else first.layer
        group.attrs["models"] = json.dumps(first.models)


DETECT_WRITERS: dict[str, type[ResultWriter]] = {
    w.name: w
    for w in (
        DcaseTsvWriter,
        CsvWriter,
        JsonWriter,
        AudacityWriter,
        RavenWriter,
        ScoresWriter,
        FilteredScoresWriter,
        SebbScoresWriter,
        NpzWriter,
        H5ScoresWriter,
    )
}
"""Formats of ``ptsed detect``."""

EMBED_WRITERS: dict[str, type[ResultWriter]] = {w.name: w for w in (NpyEmbeddingsWriter, H5EmbeddingsWriter)}
"""Formats of ``ptsed embed``."""

_ALIASES = {"hdf5": "h5", "dcase": "tsv", "txt": "audacity", "scores_raw": "scores", "frames": "npz"}


def parse_formats(spec: str | Sequence[str], table: dict[str, type[ResultWriter]]) -> list[str]:
    """``"tsv,scores,json"`` -> ``["tsv", "scores", "json"]``; unknown names raise ``ConfigError``."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for raw in parts:
        name = _ALIASES.get(raw.strip().lower(), raw.strip().lower())
        if not name:
            continue
        if name not in table:
            raise ConfigError(f"unknown output format {raw.strip()!r}; known: {', '.join(table)}")
        if name not in out:
            out.append(name)
    if not out:
        raise ConfigError("no output format given")
    return out


def get_writer(name: str, out_dir: str | os.PathLike, *, kind: str = "detect", **options: Any) -> ResultWriter:
    """A writer by format name (``kind="detect"`` or ``"embed"``); options as :class:`ResultWriter`."""
    table = EMBED_WRITERS if kind == "embed" else DETECT_WRITERS
    (fmt,) = parse_formats(name, table)
    return table[fmt](out_dir, **options)


# ----------------------------------------------------------------------------------------------------
# readers
# ----------------------------------------------------------------------------------------------------
def read_events(path: str | os.PathLike) -> list[Event]:
    """Events from a table ptsed wrote (``.tsv`` DCASE, ``.csv``, ``.json``); also upstream's CSVs."""
    path = Path(path)
    if not path.is_file():
        raise PtsedError(f"event file {str(path)!r} does not exist")
    if path.suffix.lower() == ".json":
        doc = json.loads(path.read_text(encoding="utf-8"))
        return [
            Event(
                float(e["onset"]),
                float(e["offset"]),
                e["event_label"],
                f["filename"],
                e.get("score"),
                e.get("channel"),
            )
            for f in doc["files"]
            for e in f["events"]
        ]
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter=delimiter))
    out = []
    for r in rows:
        if not r.get("event_label"):
            continue
        score = r.get("score")
        channel = r.get("channel")
        out.append(
            Event(
                float(r["onset"]),
                float(r["offset"]),
                r["event_label"],
                r.get("filename", ""),
                float(score) if score not in (None, "") else None,
                int(channel) if channel not in (None, "", "None") else None,
            )
        )
    return out


def _frame_scores_from_arrays(
    scores: np.ndarray, timestamps: np.ndarray, labels: list[str], channels: Sequence[int], source: str
) -> list[FrameScores]:
    scores3 = scores[None] if scores.ndim == 2 else scores
    return [
        FrameScores(
            np.asarray(s, dtype=np.float32),
            np.asarray(timestamps, dtype=np.float64),
            labels,
            source=source,
            channel=None if int(c) < 0 else int(c),
            meta={"hop_s": float(np.round(timestamps[1] - timestamps[0], 9)) if len(timestamps) > 1 else FRAME_HOP_S},
        )
        for s, c in zip(scores3, channels, strict=True)
    ]


def read_frame_scores(path: str | os.PathLike, name: str | None = None) -> list[FrameScores]:
    """Frame scores written by ptsed: ``.npz``, a group ``name`` of an ``.h5`` file, or a score ``.tsv``.

    Returns one :class:`FrameScores` per stream (one, or one per channel).
    """
    path = Path(path)
    if not path.is_file():
        raise PtsedError(f"frame score file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
            return _frame_scores_from_arrays(
                z["scores"], z["timestamps"], [str(x) for x in z["labels"]], z["channels"], meta.get("name", path.stem)
            )
    if suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as fh:
            if name is None:
                names = list(fh.keys())
                if len(names) != 1:
                    raise PtsedError(f"{str(path)!r} holds {len(names)} inputs; name the one to read")
                name = names[0]
            g = fh[name]
            return _frame_scores_from_arrays(
                g["scores"][()], g["timestamps"][()], json.loads(g.attrs["labels"]), list(g.attrs["channels"]), name
            )
    if suffix == ".tsv":
        values, timestamps, labels = read_scores_tsv(path)
        return _frame_scores_from_arrays(values.astype(np.float32), timestamps, labels, [-1], path.stem)
    raise PtsedError(f"cannot read frame scores from {str(path)!r}: expected .npz, .h5 or .tsv")


def read_embeddings(path: str | os.PathLike, name: str | None = None) -> np.ndarray:
    """Embeddings written by ``ptsed embed``: an ``.npy`` file, or group ``name`` of an ``.h5`` file."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        return np.load(path)
    import h5py

    with h5py.File(path, "r") as fh:
        if name is None:
            names = list(fh.keys())
            if len(names) != 1:
                raise PtsedError(f"{str(path)!r} holds {len(names)} inputs; name the one to read")
            name = names[0]
        return fh[name]["values"][()]
