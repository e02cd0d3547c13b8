"""Strongly labelled synthetic soundscapes from isolated event clips and backgrounds (DESED-like).

Each soundscape takes one background (a random crop, looped with crossfades when too short, at a random
level) and 1 to 5 foreground events at random onsets (overlap allowed), each scaled to an event-to-background
SNR drawn from 0 to 20 dB. Events are trimmed of leading and trailing silence and, when longer than the
soundscape, cropped; an event's offset is its onset plus the length of the audio placed, so the labels are
exact. Soundscape ``i`` depends only on ``(seed, i)`` and the source lists, so the same seed gives the same
bytes, and a larger ``count`` only adds soundscapes.

Sources:

- foreground: a folder with one subfolder per class (subfolder names are mapped to labels with a
  ``classes.tsv``: ``folder label``, or are the labels themselves), or a TSV table with a ``path`` (or
  ``filename``) column relative to the table and a ``label``/``event_label``, ``labels`` (``;``-separated)
  or ``class`` column. A ``role`` column, if present, keeps the ``fg`` rows.
- background: folders (all audio files below them), audio files, or TSV tables as above (``bg`` rows).

Output in ``output/``: ``audio/soundscape_00000.wav`` ... (PCM-16 mono), ``labels.tsv`` (DCASE strong,
``filename onset offset event_label``, filename relative to ``audio/``), ``durations.tsv``
(``filename duration``) and ``sources.tsv`` (which source clip went where: ``filename role source onset offset
event_labels source_offset level_db``, with ``level_db`` the background's RMS in dBFS or an event's SNR in dB;
for attribution).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ptsed.core.errors import AudioError, ConfigError, PtsedError
from ptsed.data.tables import read_tsv, tsv_columns, write_tsv
from ptsed.io.audio import list_audio_files, load_audio
from ptsed.io.tables import read_lines

FG_ROLES = ("fg", "foreground")
BG_ROLES = ("bg", "background")


@dataclass(frozen=True)
class SourceClip:
    """One foreground clip: its file, the labels its events get, and the class it is drawn under."""

    path: Path
    labels: tuple[str, ...]
    folder: str = ""

    @property
    def key(self) -> str:
        """The class this clip is sampled under (its first label)."""
        return self.labels[0]


@dataclass
class SynthResult:
    """What :func:`synthesize` wrote.

    Attributes:
        output: the output folder.
        files: soundscape file names (relative to ``output/audio``).
        num_events: number of foreground events placed.
        classes: class names (event labels) that could be drawn.
        sources_used: every source file that went into a soundscape.
        problems: ``"path: reason"`` of source clips that were skipped (unreadable or silent).
        seconds: wall time.
    """

    output: Path
    files: list[str] = field(default_factory=list)
    num_events: int = 0
    classes: list[str] = field(default_factory=list)
    sources_used: set[Path] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def labels_tsv(self) -> Path:
        return self.output / "labels.tsv"

    @property
    def durations_tsv(self) -> Path:
        return self.output / "durations.tsv"

    @property
    def sources_tsv(self) -> Path:
        return self.output / "sources.tsv"


# -- source lists ----------------------------------------------------------------------------------------------


def read_classes_tsv(path: str | Path) -> dict[str, str]:
    """``{folder: label}`` from a TSV with columns ``folder label``."""
    out = {}
    for line, row in read_tsv(path, ("folder", "label")):
        if not row["folder"] or not row["label"]:
            raise ConfigError(f"{path}:{line}: empty folder or label")
        out[row["folder"]] = row["label"]
    return out


def read_file_list(path: str | Path) -> set[Path]:
    """Resolved paths listed in ``path``: a TSV with a ``path`` (or ``filename``) column, or one path per line.

    Relative paths are relative to the list's folder (so ``manifest.tsv`` of the shared sound sources works
    as is).
    """
    path = Path(path)
    columns = tsv_columns(path)
    if "path" in columns or "filename" in columns:
        col = "path" if "path" in columns else "filename"
        names = [row[col] for _, row in read_tsv(path, (col,)) if row[col]]
    else:
        names = read_lines(path, "file list", comments=False)
    return {(path.parent / n).resolve() for n in names}


def _audio_below(folder: Path) -> list[Path]:
    """Audio files below ``folder`` (recursive, sorted); none for a folder without audio."""
    try:
        return [s.path for s in list_audio_files(folder)]
    except AudioError:
        return []


def _table_rows(path: Path, roles: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    header = set(tsv_columns(path))
    if not {"path", "filename"} & header:
        raise ConfigError(f"{path}: a source table needs a 'path' or 'filename' column")
    rows = read_tsv(path, ())
    if "role" in header:
        rows = [(line, r) for line, r in rows if r["role"].lower() in roles]
    return rows


def _row_path(table: Path, row: dict[str, str]) -> Path:
    return table.parent / (row.get("path") or row.get("filename") or "")


def _row_labels(table: Path, line: int, row: dict[str, str], classes: dict[str, str] | None) -> tuple[str, str]:
    """(labels joined by ';', folder/class) of a foreground table row."""
    folder = row.get("class", "")
    for col in ("label", "event_label"):
        if row.get(col):
            return row[col], folder
    if row.get("labels"):
        return row["labels"], folder
    if folder:
        if classes is not None:
            if folder not in classes:
                raise ConfigError(f"{table}:{line}: class {folder!r} is not in the classes table")
            return classes[folder], folder
        return folder, folder
    raise ConfigError(f"{table}:{line}: no label (columns label, event_label, labels or class)")


def collect_foreground(source: str | Path, classes: str | Path | dict[str, str] | None = None) -> list[SourceClip]:
    """All foreground clips of a class-folder tree or a source table (see the module docstring), sorted."""
    source = Path(source)
    mapping = read_classes_tsv(classes) if isinstance(classes, (str, Path)) else classes
    clips: list[SourceClip] = []
    if source.is_dir():
        folders = sorted(p for p in source.iterdir() if p.is_dir())
        if not folders:
            raise ConfigError(f"foreground folder {source} has no class subfolders")
        for folder in folders:
            if mapping is not None and folder.name not in mapping:
                label = ""  # resolved (or rejected) when the classes are chosen
            else:
                label = mapping[folder.name] if mapping is not None else folder.name
            clips.extend(SourceClip(p, (label,) if label else (), folder.name) for p in _audio_below(folder))
    elif source.is_file() and source.suffix.lower() in (".tsv", ".txt"):
        for line, row in _table_rows(source, FG_ROLES):
            labels, folder = _row_labels(source, line, row, mapping)
            names = tuple(dict.fromkeys(x.strip() for x in labels.split(";") if x.strip()))
            clips.append(SourceClip(_row_path(source, row), names, folder))
        clips.sort(key=lambda c: c.path.as_posix())
    else:
        raise ConfigError(f"foreground {source} is neither a folder of class subfolders nor a .tsv table")
    if not clips:
        raise ConfigError(f"no foreground clips found in {source}")
    return clips


def collect_background(sources: str | Path | Iterable[str | Path]) -> list[Path]:
    """All background files of folders, files and source tables (see the module docstring), sorted."""
    if isinstance(sources, (str, Path)):
        sources = [sources]
    out: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            out.extend(_audio_below(source))
        elif source.is_file() and source.suffix.lower() in (".tsv", ".txt"):
            out.extend(_row_path(source, row) for _, row in _table_rows(source, BG_ROLES))
        elif source.is_file():
            out.append(source)
        else:
            raise ConfigError(f"background {source} does not exist")
    out = sorted(set(out), key=lambda p: p.as_posix())
    if not out:
        raise ConfigError(f"no background files found in {', '.join(map(str, sources))}")
    return out


def select_classes(clips: Sequence[SourceClip], only: Sequence[str] | None) -> list[SourceClip]:
    """Clips whose folder or labels are among ``only`` (labels or folder names), their labels cut to ``only``.

    Raises:
        ConfigError: an entry of ``only`` matches no clip, or a clip to be used has no label (its folder
            is missing from the classes table).
    """
    if not only:
        unlabeled = sorted({c.folder for c in clips if not c.labels})
        if unlabeled:
            raise ConfigError(f"foreground folder(s) {', '.join(unlabeled)} are not in the classes table")
        return list(clips)
    wanted: set[str] = set()
    for entry in only:
        hits = {entry} if any(entry in c.labels for c in clips) else set()
        hits |= {c.labels[0] for c in clips if c.folder == entry and c.labels}
        if not hits:
            if any(c.folder == entry for c in clips):
                raise ConfigError(f"foreground folder {entry!r} is not in the classes table")
            known = sorted({lab for c in clips for lab in c.labels} | {c.folder for c in clips if c.folder})
            raise ConfigError(f"class {entry!r} matches no foreground clip; known: {', '.join(known)}")
        wanted |= hits
    out = []
    for c in clips:
        keep = tuple(lab for lab in c.labels if lab in wanted)
        if keep:
            out.append(SourceClip(c.path, keep, c.folder))
    return out


# -- signal helpers ----------------------------------------------------------------------------------------------


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def trim_silence(x: np.ndarray, trim_db: float) -> np.ndarray:
    """``x`` without leading and trailing samples more than ``trim_db`` below its peak."""
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak == 0.0:
        return x[:0]
    loud = np.flatnonzero(np.abs(x) > peak * 10.0 ** (-trim_db / 20.0))
    return x[loud[0] : loud[-1] + 1]


def loop_to_length(x: np.ndarray, n: int, start: int, fade: int) -> np.ndarray:
    """``n`` samples of ``x`` played in a loop from ``start``, with linear crossfades of ``fade`` samples."""
    fade = min(fade, len(x) // 2)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    pieces, length = [x[: len(x) - fade]], len(x) - fade  # the last `fade` samples are held for the crossfade
    while length < start + n:
        pieces.append(x[len(x) - fade :] * (1.0 - ramp) + x[:fade] * ramp)
        pieces.append(x[fade : len(x) - fade])
        length += len(x) - fade
    return np.concatenate(pieces)[start : start + n].astype(np.float32)


class _ClipCache:
    """Decoded clips (mono float32 at one rate), least recently used dropped beyond ``max_bytes``."""

    def __init__(self, sample_rate: int, max_bytes: int = 512 << 20) -> None:
        self.sample_rate = sample_rate
        self.max_bytes = max_bytes
        self._data: OrderedDict[Path, np.ndarray] = OrderedDict()
        self._bytes = 0

    def get(self, path: Path) -> np.ndarray:
        if path in self._data:
            self._data.move_to_end(path)
            return self._data[path]
        x = load_audio(path, self.sample_rate)[0]
        self._data[path] = x
        self._bytes += x.nbytes
        while self._bytes > self.max_bytes and len(self._data) > 1:
            _, old = self._data.popitem(last=False)
            self._bytes -= old.nbytes
        return x


def format_time(t: float) -> str:
    """Seconds with up to 7 decimals and no trailing zeros (``1.5``, ``0.0000625``, ``3``): exact for 16 kHz samples."""
    text = f"{t:.7f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


# -- synthesis -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Placed:
    path: Path
    labels: tuple[str, ...]
    onset: int
    length: int
    source_offset: int
    level_db: float


class Synthesizer:
    """Makes soundscapes from chosen pools of foreground clips and backgrounds (see :func:`synthesize`)."""

    def __init__(
        self,
        foreground: Sequence[SourceClip],
        background: Sequence[Path],
        *,
        duration_s: float = 10.0,
        sample_rate: int = 16000,
        min_events: int = 1,
        max_events: int = 5,
        snr_db: tuple[float, float] = (0.0, 20.0),
        background_db: tuple[float, float] = (-45.0, -25.0),
        trim_db: float = 60.0,
        fade_s: float = 0.1,
        peak: float = 0.95,
    ) -> None:
        if not foreground or not background:
            raise ConfigError("synthesis needs at least one foreground clip and one background")
        if not 0 <= min_events <= max_events:
            raise ConfigError(f"need 0 <= min_events <= max_events, got {min_events}, {max_events}")
        if duration_s <= 0:
            raise ConfigError(f"duration must be positive, got {duration_s}")
        if snr_db[0] > snr_db[1] or background_db[0] > background_db[1]:
            raise ConfigError("SNR and background level ranges must be (low, high)")
        self.by_class: dict[str, list[SourceClip]] = {}
        for c in foreground:
            self.by_class.setdefault(c.key, []).append(c)
        self.classes = sorted(self.by_class)
        self.background = list(background)
        self.sample_rate = int(sample_rate)
        self.num_samples = round(duration_s * sample_rate)
        self.min_events, self.max_events = int(min_events), int(max_events)
        self.snr_db, self.background_db = tuple(snr_db), tuple(background_db)
        self.trim_db, self.fade = trim_db, round(fade_s * sample_rate)
        self.peak = peak
        self.cache = _ClipCache(self.sample_rate)
        self.bad: dict[Path, str] = {}

    def _load(self, path: Path, *, foreground: bool) -> np.ndarray | None:
        if path in self.bad:
            return None
        try:
            x = self.cache.get(path)
        except PtsedError as err:
            self.bad[path] = str(err)
            return None
        if foreground:
            x = trim_silence(x, self.trim_db)
        if not len(x) or not np.isfinite(x).all() or _rms(x) == 0.0:
            self.bad[path] = "silent, empty or not finite"
            return None
        return x

    def _draw(self, rng: np.random.Generator, pool: Sequence, load) -> tuple:  # noqa: ANN001
        """A random item of ``pool`` whose audio loads (unloadable ones are remembered and skipped)."""
        for _ in range(100):
            item = pool[int(rng.integers(len(pool)))]
            x = load(item)
            if x is not None:
                return item, x
        raise AudioError(f"100 draws in a row gave unreadable or silent clips (last: {item})")

    def make(self, seed: int, index: int) -> tuple[np.ndarray, list[_Placed], _Placed]:
        """Soundscape ``index`` of ``seed``: (samples (N,) float32, events, background)."""
        rng = np.random.default_rng([seed, index])
        n = self.num_samples
        bg_path, bg = self._draw(rng, self.background, lambda p: self._load(p, foreground=False))
        if len(bg) >= n:
            bg_start = int(rng.integers(len(bg) - n + 1))
            bed = bg[bg_start : bg_start + n].astype(np.float32)
        else:
            bg_start = int(rng.integers(len(bg)))
            bed = loop_to_length(bg, n, bg_start, self.fade)
        bg_db = float(rng.uniform(*self.background_db))
        ref = 10.0 ** (bg_db / 20.0)
        bed_rms = _rms(bed)
        mix = (bed * (ref / bed_rms)).astype(np.float32) if bed_rms > 0 else np.zeros(n, np.float32)
        background = _Placed(bg_path, (), 0, n, bg_start, bg_db)
        events = []
        for _ in range(int(rng.integers(self.min_events, self.max_events + 1))):
            cls = self.classes[int(rng.integers(len(self.classes)))]
            clip, x = self._draw(rng, self.by_class[cls], lambda c: self._load(c.path, foreground=True))
            src_off = 0
            if len(x) > n:
                src_off = int(rng.integers(len(x) - n + 1))
                x = x[src_off : src_off + n]
            onset = int(rng.integers(n - len(x) + 1))
            snr = float(rng.uniform(*self.snr_db))
            gain = ref * 10.0 ** (snr / 20.0) / _rms(x)
            mix[onset : onset + len(x)] += (x * gain).astype(np.float32)
            events.append(_Placed(clip.path, clip.labels, onset, len(x), src_off, snr))
        top = float(np.max(np.abs(mix))) if n else 0.0
        if top > self.peak:
            mix *= np.float32(self.peak / top)
        return mix, events, background


def synthesize(
    foreground: str | Path,
    background: str | Path | Sequence[str | Path],
    output: str | Path,
    count: int,
    seed: int = 0,
    *,
    duration_s: float = 10.0,
    sample_rate: int = 16000,
    classes: str | Path | dict[str, str] | None = None,
    only: Sequence[str] | None = None,
    files: str | Path | Iterable[str | Path] | None = None,
    min_events: int = 1,
    max_events: int = 5,
    snr_db: tuple[float, float] = (0.0, 20.0),
    background_db: tuple[float, float] = (-45.0, -25.0),
    overwrite: bool = False,
    progress: bool = True,
) -> SynthResult:
    """Write ``count`` soundscapes with exact strong labels to ``output`` (layout: see the module docstring).

    Args:
        foreground: class-folder tree or source table of isolated events.
        background: folder(s), file(s) or source table(s) of backgrounds.
        output: folder to write to (created).
        count: number of soundscapes.
        seed: random seed; the same seed and sources give identical files.
        duration_s: soundscape length in seconds.
        sample_rate: output sample rate in Hz (sources are resampled and mixed to mono).
        classes: ``classes.tsv`` (``folder label``) or a dict, mapping class folders to labels.
        only: use only these classes (labels or folder names); multi-label clips keep only these labels.
        files: use only these source files (a list file, see :func:`read_file_list`, or paths), e.g. one
            side of a train/validation split.
        min_events, max_events: number of foreground events per soundscape (uniform, inclusive).
        snr_db: range of the event-to-background SNR in dB (uniform).
        background_db: range of the background RMS level in dBFS (uniform): the random gain.
        overwrite: replace an existing output (its old soundscapes are deleted first).
        progress: show a progress bar.

    Returns:
        A :class:`SynthResult`.
    """
    import time

    import soundfile as sf
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    if count < 0:
        raise ConfigError(f"count must be >= 0, got {count}")
    fg = select_classes(collect_foreground(foreground, classes), only)
    bg = collect_background(background)
    if files is not None:
        allowed = read_file_list(files) if isinstance(files, (str, Path)) else {Path(p).resolve() for p in files}
        fg = [c for c in fg if c.path.resolve() in allowed]
        bg = [p for p in bg if p.resolve() in allowed]
        if not fg or not bg:
            raise ConfigError(f"the file list {files} leaves no {'foreground clip' if not fg else 'background'}")
    synth = Synthesizer(
        fg,
        bg,
        duration_s=duration_s,
        sample_rate=sample_rate,
        min_events=min_events,
        max_events=max_events,
        snr_db=snr_db,
        background_db=background_db,
    )
    out = Path(output)
    audio_dir = out / "audio"
    if (out / "labels.tsv").exists() or any(audio_dir.glob("soundscape_*.wav")):
        if not overwrite:
            raise ConfigError(f"{out} already holds soundscapes; choose another folder or overwrite")
        for old in audio_dir.glob("soundscape_*.wav"):
            old.unlink()
    audio_dir.mkdir(parents=True, exist_ok=True)
    result = SynthResult(out, classes=list(synth.classes))
    label_rows: list[tuple[str, int, int, str]] = []
    source_rows: list[list[str]] = []
    sr = synth.sample_rate
    for i in tqdm(range(count), desc="synth", unit="soundscape", disable=not progress):
        mix, events, bed = synth.make(seed, i)
        name = f"soundscape_{i:05d}.wav"
        pcm = np.clip(np.round(mix * 32768.0), -32768, 32767).astype(np.int16)  # ptsed reads int16 / 32768
        sf.write(audio_dir / name, pcm, sr, subtype="PCM_16", format="WAV")
        result.files.append(name)
        result.num_events += len(events)
        result.sources_used.add(bed.path)
        source_rows.append([name, "bg", str(bed.path), "0", format_time(synth.num_samples / sr), "",
                            format_time(bed.source_offset / sr), f"{bed.level_db:.2f}"])  # fmt: skip
        for e in events:
            result.sources_used.add(e.path)
            for label in e.labels:
                label_rows.append((name, e.onset, e.onset + e.length, label))
            source_rows.append([name, "fg", str(e.path), format_time(e.onset / sr),
                                format_time((e.onset + e.length) / sr), ";".join(e.labels),
                                format_time(e.source_offset / sr), f"{e.level_db:.2f}"])  # fmt: skip
    label_rows.sort()
    write_tsv(
        out / "labels.tsv",
        ["filename", "onset", "offset", "event_label"],
        [[n, format_time(a / sr), format_time(b / sr), lab] for n, a, b, lab in label_rows],
    )
    write_tsv(
        out / "durations.tsv",
        ["filename", "duration"],
        [[n, format_time(synth.num_samples / sr)] for n in result.files],
    )
    write_tsv(
        out / "sources.tsv",
        ["filename", "role", "source", "onset", "offset", "event_labels", "source_offset", "level_db"],
        source_rows,
    )
    result.problems = [f"{p}: {why}" for p, why in sorted(synth.bad.items())]
    result.seconds = time.perf_counter() - t0
    return result
