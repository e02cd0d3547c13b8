"""Datasets from DCASE-style metadata: strong, weak and durations TSVs beside a folder of audio files.

File formats (tab-separated, with a header row):

- strong: ``filename onset offset event_label`` (seconds). A row with an empty label lists a file without
  events.
- weak: ``filename event_labels`` (labels separated by commas).
- durations: ``filename duration`` (seconds).

Files are matched to the audio by clip id (the name without folders and extension, as the evaluation
matches them), so a TSV that says ``x.wav`` finds ``audio/x.flac``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from ptsed.core.errors import AudioError, ConfigError
from ptsed.core.frames import FRAME_HOP_S
from ptsed.data.tables import read_tsv
from ptsed.data.windows import AudioRecord, WindowedDataset, clip_events
from ptsed.io.annotations import clip_id, read_dcase_events, read_durations
from ptsed.io.audio import audio_info, list_audio_files, load_audio

Events = list[tuple[float, float, str]]


def audio_duration(path: str | Path) -> float:
    """Length of an audio file in seconds (from its header; decoded when the header does not say)."""
    seconds = audio_info(path).duration_s
    if seconds is None:
        samples, sr = load_audio(path)
        seconds = len(samples) / sr
    return seconds


def read_weak_tsv(path: str | Path) -> dict[str, tuple[str, ...]]:
    """Clip labels per clip id: ``{clip_id: (label, ...)}`` from a ``filename event_labels`` TSV."""
    out: dict[str, tuple[str, ...]] = {}
    for line, row in read_tsv(path, ("filename", "event_labels")):
        cid = clip_id(row["filename"])
        if not cid:
            raise ConfigError(f"{str(path)!r}, line {line}: empty filename")
        labels = tuple(x.strip() for x in row["event_labels"].split(",") if x.strip())
        out[cid] = tuple(dict.fromkeys(out.get(cid, ()) + labels))
    return out


def check_labels(used: Iterable[str], labels: Sequence[str], source: str) -> None:
    """Raise a :class:`ConfigError` naming ``source`` when ``used`` holds a label outside ``labels``."""
    unknown = sorted(set(used) - set(labels))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise ConfigError(f"{source}: {len(unknown)} label(s) not in the class list: {shown}")


def make_records(
    audio_dir: str | Path,
    names: Sequence[str],
    *,
    strong: dict[str, Events] | None = None,
    weak: dict[str, tuple[str, ...]] | None = None,
    durations: dict[str, float] | None = None,
    source: str = "",
    skip_missing: bool = False,
) -> list[AudioRecord]:
    """:class:`AudioRecord` items for audio files ``names`` (relative to ``audio_dir``).

    ``strong``, ``weak`` and ``durations`` are keyed by the same names. A name is strongly labelled when it
    is in ``strong``, or when ``strong`` is given, the name is in ``durations`` and it has no weak labels
    (a file without events). Durations come from ``durations``, else from the audio header.

    Raises:
        AudioError: audio files are missing (unless ``skip_missing``), naming the first ones and ``source``.
    """
    audio_dir = Path(audio_dir)
    strong_given = strong is not None
    strong, weak, durations = strong or {}, weak or {}, durations or {}
    missing = [n for n in names if not (audio_dir / n).is_file()]
    if missing and not skip_missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise AudioError(
            f"{len(missing)} audio file(s) listed in {source or 'the metadata'} are missing from {audio_dir}: {shown}"
        )
    gone = set(missing)
    records = []
    for name in names:
        if name in gone:
            continue
        path = audio_dir / name
        duration = durations[name] if name in durations else audio_duration(path)
        records.append(
            AudioRecord(
                path=path,
                name=name,
                duration_s=duration,
                events=clip_events(strong.get(name, []), duration),
                weak=weak.get(name, ()),
                has_strong=name in strong or (strong_given and name in durations and name not in weak),
                has_weak=name in weak,
            )
        )
    return records


def _audio_names(audio_dir: Path) -> dict[str, list[str]]:
    """clip id -> audio files (relative POSIX paths) below ``audio_dir``."""
    out: dict[str, list[str]] = {}
    try:
        sources = list_audio_files(audio_dir)
    except AudioError:  # a folder without audio files
        return out
    for s in sources:
        out.setdefault(clip_id(s.name), []).append(s.name)
    return out


def dcase_records(
    audio_dir: str | Path,
    strong_tsv: str | Path | None = None,
    *,
    weak_tsv: str | Path | None = None,
    durations_tsv: str | Path | None = None,
    labels: Sequence[str] | None = None,
    skip_missing: bool = False,
) -> tuple[list[AudioRecord], set[str]]:
    """Records of a DCASE-style folder (see :class:`DCASEDataset` for which files) and the labels they use.

    Raises:
        ConfigError: a bad TSV row (naming file and line), or, with ``labels`` given, a label outside it
            (naming the TSV).
        AudioError: audio files the TSVs list are missing (naming the first ones), unless ``skip_missing``.
    """
    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise ConfigError(f"audio folder {str(audio_dir)!r} does not exist")
    strong = read_dcase_events(strong_tsv, merge=False)[0] if strong_tsv is not None else None
    weak = read_weak_tsv(weak_tsv) if weak_tsv is not None else None
    durations = read_durations(durations_tsv) if durations_tsv is not None else None
    strong_used = {e[2] for evs in (strong or {}).values() for e in evs}
    weak_used = {x for w in (weak or {}).values() for x in w}
    if labels is not None:
        check_labels(strong_used, labels, str(strong_tsv))
        check_labels(weak_used, labels, str(weak_tsv))
    files = _audio_names(audio_dir)
    if strong is None and weak is None and durations is None:
        ids = sorted(files)
    else:
        ids = sorted(set(strong or {}) | set(weak or {}) | set(durations or {}))
    source = ", ".join(str(p) for p in (strong_tsv, weak_tsv, durations_tsv) if p is not None) or str(audio_dir)
    twins = [files[c] for c in ids if len(files.get(c, ())) > 1]
    if twins:
        raise ConfigError(f"{len(twins)} clip(s) of {source} match several audio files, e.g. {', '.join(twins[0])}")
    name = {c: files[c][0] if c in files else c for c in ids}  # a missing file keeps its clip id as name

    def rekey(d: dict | None) -> dict | None:
        return None if d is None else {name[c]: v for c, v in d.items()}

    records = make_records(
        audio_dir,
        [name[c] for c in ids],
        strong=rekey(strong),
        weak=rekey(weak),
        durations=rekey(durations),
        source=source,
        skip_missing=skip_missing,
    )
    return records, strong_used | weak_used


class DCASEDataset(WindowedDataset):
    """A folder of recordings with DCASE metadata, cut into training windows.

    Which files: those named in any of the TSVs given; with no TSV, every audio file below ``audio_dir``
    (unlabelled: ``mask_strong`` and ``mask_weak`` False, zero targets). A file named in the strong TSV,
    or in the durations TSV of a strongly labelled set, has strong labels (none: a file without events);
    a file only in the weak TSV has clip labels.

    Args:
        audio_dir: folder holding the audio files (searched recursively).
        strong_tsv: strong labels (``filename onset offset event_label``).
        durations_tsv: ``filename duration`` (else durations are read from the audio headers).
        weak_tsv: clip labels (``filename event_labels``).
        labels: class order (default: all labels of the TSVs, sorted).
        sample_rate, window_s, window_hop_s, frame_hop_s, train: see
            :class:`~ptsed.data.windows.WindowedDataset`.
        ignore_unknown: drop labels outside ``labels`` instead of raising.
        skip_missing: drop files whose audio is missing instead of raising.

    Items: see :meth:`~ptsed.data.windows.WindowedDataset.__getitem__`; ``filename`` is the audio file's
    path relative to ``audio_dir``.

    Example::

        ds = DCASEDataset("synth/audio", "synth/labels.tsv", durations_tsv="synth/durations.tsv")
        item = ds[0]  # item["waveform"] (160000,), item["strong"] (K, 250)
    """

    def __init__(
        self,
        audio_dir: str | Path,
        strong_tsv: str | Path | None = None,
        *,
        durations_tsv: str | Path | None = None,
        weak_tsv: str | Path | None = None,
        labels: Sequence[str] | None = None,
        sample_rate: int = 16000,
        window_s: float = 10.0,
        window_hop_s: float | None = None,
        frame_hop_s: float = FRAME_HOP_S,
        train: bool = False,
        ignore_unknown: bool = False,
        skip_missing: bool = False,
    ) -> None:
        records, used = dcase_records(
            audio_dir,
            strong_tsv,
            weak_tsv=weak_tsv,
            durations_tsv=durations_tsv,
            labels=None if ignore_unknown else labels,
            skip_missing=skip_missing,
        )
        super().__init__(
            records,
            sorted(used) if labels is None else labels,
            sample_rate=sample_rate,
            window_s=window_s,
            window_hop_s=window_hop_s,
            frame_hop_s=frame_hop_s,
            train=train,
        )
