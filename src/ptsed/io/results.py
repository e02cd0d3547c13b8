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
``npz``              raw probabilities + timestamps + labels          ``frames/<name>.npz``
``h5``               the same in one HDF5 file, a group per input     ``frame_scores.h5``
==================== ================================================ ==========================================

Embedding writers (``ptsed embed``): ``npy`` (``embeddings/<name>.npy``, (T, D) or (C, T, D) float32) and
``h5`` (``embeddings.h5``). ``<name>`` is the input's relative path without its extension; with
``channels="each"`` score files get a ``_ch<c>`` suffix. Times are seconds; frame ``t`` of a frame or
embedding array spans ``[timestamps[t], timestamps[t + 1])``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ptsed.core.errors import ConfigError, PtsedError
from ptsed.core.types import Event, FrameScores


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------
def output_stem(name: str) -> str:
    """``"site1/rec.wav"`` -> ``"site1/rec"`` (the input name without its extension)."""
    p = Path(name)
    return (p.parent / p.stem).as_posix() if p.suffix else name


def _fmt(t: float) -> str:
    """Shortest text of a time in seconds (``10.32``, not ``10.320000000000002``)."""
    return repr(float(t))


def atomic_write_text(path: Path, text: str | Iterable[str]) -> None:
    """Write a text file (a string, or pieces written one after another) through a temporary file, so a
    crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.writelines([text] if isinstance(text, str) else text)
    os.replace(tmp, path)


def valid_frames(fs: FrameScores) -> int:
    """Number of leading frames of non-zero length (upstream mode keeps zero-length padded frames at the
    end, which score files leave out: sed_scores_eval rejects them)."""
    ts = fs.timestamps
    positive = np.flatnonzero(ts[1:] > ts[:-1])
    return int(positive[-1]) + 1 if positive.size else 0


def scores_tsv_pieces(fs: FrameScores, float_format: str = "%.9g", rows_per_piece: int = 500) -> Iterator[str]:
    """sed_scores_eval score table text: ``onset offset <label>...``, one row per frame of non-zero length,
    in pieces of ``rows_per_piece`` rows (a 3-hour file's table is about 1 GB of text; it is never held whole).

    Nine significant digits round-trip float32 exactly, so saved scores evaluate as the model's own."""
    n = valid_frames(fs)
    yield "\t".join(["onset", "offset", *fs.labels]) + "\n"
    ts = fs.timestamps
    for a in range(0, n, rows_per_piece):
        buf = io.StringIO()
        for i, row in enumerate(fs.scores[a : min(n, a + rows_per_piece)].tolist(), a):
            buf.write(f"{_fmt(ts[i])}\t{_fmt(ts[i + 1])}\t")
            buf.write("\t".join(float_format % v for v in row))
            buf.write("\n")
        yield buf.getvalue()


def scores_tsv_text(fs: FrameScores, float_format: str = "%.9g") -> str:
    """The whole sed_scores_eval score table of ``fs`` as one string (see :func:`scores_tsv_pieces`)."""
    return "".join(scores_tsv_pieces(fs, float_format))


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

    def close(self) -> None:
        """Write combined outputs."""


class _PerInput(ResultWriter):
    """One file per input: ``<out_dir>/<folder>/<name><suffix>``."""

    folder: ClassVar[str] = ""
    suffix: ClassVar[str] = ""

    def targets(self, result_name: str) -> list[Path]:
        return [self.out_dir / self.folder / (output_stem(result_name) + self.suffix)]

    def write(self, result: Any) -> None:
        if result.error is None:
            path = self.targets(result.name)[0]
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(".tmp-" + path.name)  # same suffix, so numpy does not add one
            self.save(tmp, result)
            os.replace(tmp, path)

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
        return [self.out_dir / "events" / (output_stem(result_name) + self.suffix)]

    def write(self, result: Any) -> None:
        if self.per_file and result.error is None:
            atomic_write_text(self.targets(result.name)[0], self.render([result]))

    def add(self, result: Any) -> None:
        if not self.per_file:
            self._records.append(result)

    def close(self) -> None:
        if not self.per_file:
            atomic_write_text(self.out_dir / f"events{self.suffix}", self.render(self._records))

    def render(self, records: Sequence[Any]) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


class DcaseTsvWriter(_EventTable):
    """DCASE event table: ``filename<TAB>onset<TAB>offset<TAB>event_label`` (+ ``channel``)."""

    name = "tsv"
    suffix = ".tsv"
    help = "events as a DCASE TSV (filename onset offset event_label)"

    def render(self, records: Sequence[Any]) -> str:
        cols = ["filename", "onset", "offset", "event_label"] + (["channel"] if self.each_channel else [])
        lines = ["\t".join(cols)]
        for r in records:
            for e in r.events:
                row = [r.name, _fmt(e.onset), _fmt(e.offset), e.label]
                if self.each_channel:
                    row.append(str(e.channel))
                lines.append("\t".join(row))
        return "\n".join(lines) + "\n"


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
                row = [e.label, _fmt(e.onset), _fmt(e.offset), r.name]
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
        from ptsed import __version__

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
        stem = output_stem(result_name)
        if not self.each_channel:
            return [self.out_dir / self.folder / f"{stem}.tsv"]
        return [self.out_dir / self.folder / f"{stem}_ch{c}.tsv" for c in range(n_streams)]

    def targets(self, result_name: str) -> list[Path]:
        return self._paths(result_name, 1)

    def write(self, result: Any) -> None:
        if result.error is not None:
            return
        streams = getattr(result, self.attr)
        for path, fs in zip(self._paths(result.name, len(streams)), streams, strict=True):
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


class _H5Writer(ResultWriter):
    """One HDF5 file with a group per input (datasets ``values``/``scores``, ``timestamps``)."""

    filename: ClassVar[str] = ""

    def __init__(self, out_dir: str | os.PathLike, **kw: Any) -> None:
        super().__init__(out_dir, **kw)
        self._file = None

    @property
    def path(self) -> Path:
        return self.out_dir / self.filename

    def _h5(self):  # noqa: ANN202
        if self._file is None:
            try:
                import h5py
            except ImportError as err:
                raise ConfigError("the h5 format needs h5py: pip install 'ptsed[hdf5]'") from err
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = h5py.File(self.path, "a")
            self._file.attrs["settings"] = json.dumps(self.settings)
        return self._file

    def done(self, result_name: str) -> bool:
        if self._file is not None:
            return result_name in self._file
        if not self.path.exists():
            return False
        import h5py

        with h5py.File(self.path, "r") as fh:
            return result_name in fh

    def write(self, result: Any) -> None:
        if result.error is not None:
            return
        fh = self._h5()
        if result.name in fh:
            del fh[result.name]
        g = fh.create_group(result.name)
        g.attrs["source"] = str(result.source)
        g.attrs["duration_s"] = float(result.duration_s or 0.0)
        self.fill(g, result)
        fh.flush()

    def fill(self, group: Any, result: Any) -> None:  # pragma: no cover - abstract
        """Write the datasets and attributes of one input into its group."""
        raise NotImplementedError

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


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
            meta={"hop_s": float(np.round(timestamps[1] - timestamps[0], 9)) if len(timestamps) > 1 else 0.04},
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
        with open(path, encoding="utf-8") as fh:
            header = fh.readline().rstrip("\n").split("\t")
        if header[:2] != ["onset", "offset"]:
            raise PtsedError(f"{str(path)!r} is not a score table (first columns must be onset, offset)")
        data = np.loadtxt(path, delimiter="\t", skiprows=1, ndmin=2, dtype=np.float64)
        timestamps = np.concatenate([data[:, 0], data[-1:, 1]])
        return _frame_scores_from_arrays(data[:, 2:].astype(np.float32), timestamps, header[2:], [-1], path.stem)
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
