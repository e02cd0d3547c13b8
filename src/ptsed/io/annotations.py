"""Readers for strong labels, detections and clip durations, and the rules that match clip names.

The shared vocabulary of the data loaders (:mod:`ptsed.data`) and the evaluation (:mod:`ptsed.evaluation`).

Every reader returns plain Python data keyed by **clip id**: the file name without folders and without
extension (``"audio/eval/Y-0BIyqJj9ZU.wav"`` -> ``"Y-0BIyqJj9ZU"``). AudioSet segment ids
(``"<youtube id>_<start ms>"``) name the clip ``"Y<youtube id>"``, as AudioSet's audio files are named.
Events are ``(onset_s, offset_s, label)`` tuples in seconds.

Formats:

- DCASE strong labels / detections: TSV with the header ``filename onset offset event_label`` (rows
  with an empty label list a clip without events).
- AudioSet strong labels (Google's ``audioset_{train,eval}_strong.tsv``, columns ``segment_id,
  start_time_seconds, end_time_seconds, label``): :func:`read_audioset_strong`; the labels are MIDs.
- Durations: a DCASE TSV with the header ``filename duration``, or the headerless CSV
  ``Y<id>,duration`` of AudioSet eval.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ptsed.core.errors import ConfigError

Events = list[tuple[float, float, str]]
"""The events of one clip: (onset_s, offset_s, label)."""

_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,5}$")
_SEGMENT_ID = re.compile(r"^(?P<ytid>.+)_(?P<start_ms>\d+)$")


def clip_id(name: str) -> str:
    """The clip id of a file name: no folders, no extension (``"a/b/x.wav"`` -> ``"x"``)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return _EXTENSION.sub("", base)


def audioset_clip_id(segment_id: str) -> str:
    """``"<youtube id>_<start ms>"`` -> ``"Y<youtube id>"`` (AudioSet's audio file stem).

    YouTube ids may contain ``_``: only the last ``_<digits>`` is the start time.
    """
    m = _SEGMENT_ID.match(segment_id.strip())
    if m is None:
        raise ValueError(f"{segment_id!r} is not an AudioSet segment id of the form <youtube id>_<start ms>")
    return "Y" + m.group("ytid")


def merge_overlapping_events(events: Iterable[tuple[float, float, str]]) -> tuple[Events, int]:
    """Merge events of the same class that overlap or touch, as upstream merges AudioSet labels.

    Per class, events are sorted by onset; an event that starts at or before the end of the previous one
    extends it. (sed_scores_eval refuses ground truth with overlapping or touching events of one class.)

    Returns:
        (events sorted by onset then label, number of events merged away).
    """
    by_label: dict[str, list[list[float]]] = {}
    n_in = 0
    for onset, offset, label in events:
        n_in += 1
        by_label.setdefault(label, []).append([float(onset), float(offset)])
    out: Events = []
    for label, spans in by_label.items():
        spans.sort(key=lambda s: s[0])
        merged: list[list[float]] = []
        for onset, offset in spans:
            if merged and not merged[-1][1] < onset:
                merged[-1][1] = max(merged[-1][1], offset)
            else:
                merged.append([onset, offset])
        out.extend((on, off, label) for on, off in merged)
    out.sort(key=lambda e: (e[0], e[2], e[1]))
    return out, n_in - len(out)


def read_text(path: Path) -> str:
    """The text of a UTF-8 file (a byte-order mark is dropped).

    Raises:
        ConfigError: a binary file or text in another encoding (naming the line of the first bad byte).
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ConfigError(
            f"{str(path)!r} is not a UTF-8 text file (byte {err.start}, on line {line}, is not UTF-8): a binary "
            "file, or text in another encoding (save it as UTF-8)"
        ) from None


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a TSV file (tab separated, header in the first line)."""
    if not path.is_file():
        raise ConfigError(f"{str(path)!r} does not exist or is not a file")
    text = read_text(path)
    if "\0" in text:
        raise ConfigError(f"{str(path)!r} holds NUL bytes: it is a binary file, not a TSV")
    rows = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter="\t") if r and any(c.strip() for c in r)]
    if not rows:
        raise ConfigError(f"{str(path)!r} is empty")
    return [c.strip() for c in rows[0]], rows[1:]


def _float(value: str, path: Path, line: int, what: str) -> float:
    try:
        out = float(value)
    except ValueError:
        raise ConfigError(f"{str(path)!r}, line {line}: {what} {value!r} is not a number") from None
    if not math.isfinite(out):
        raise ConfigError(f"{str(path)!r}, line {line}: {what} {value!r} is not finite")
    return out


def sniff_label_format(path: str | Path) -> str:
    """``"dcase"`` (``filename onset offset event_label``) or ``"audioset"`` (``segment_id ...``)."""
    path = Path(path)
    header, _ = _read_rows(path)
    cols = {c.lower() for c in header}
    if {"filename", "onset", "offset", "event_label"} <= cols:
        return "dcase"
    if {"segment_id", "start_time_seconds", "end_time_seconds", "label"} <= cols:
        return "audioset"
    raise ConfigError(
        f"{str(path)!r} is neither a DCASE strong-label TSV (header: filename onset offset event_label) nor "
        f"an AudioSet strong-label TSV (header: segment_id start_time_seconds end_time_seconds label); "
        f"its header is {header}"
    )


def read_dcase_events(path: str | Path, *, merge: bool = True) -> tuple[dict[str, Events], dict[str, int]]:
    """Events per clip from a DCASE TSV (``filename onset offset event_label``).

    Clips listed with an empty label (a clip without events) are kept with an empty list.

    Args:
        path: the TSV file.
        merge: merge overlapping or touching events of one class (see :func:`merge_overlapping_events`).

    Returns:
        (clip id -> events, counts ``events_merged`` (merged away) and ``events_zero_length`` (dropped:
        an event without duration cannot be detected and sed_scores_eval rejects it)).

    Raises:
        ConfigError: a missing column, a bad number, an offset before its onset.
    """
    path = Path(path)
    header, rows = _read_rows(path)
    cols = {c.lower(): i for i, c in enumerate(header)}
    missing = [c for c in ("filename", "onset", "offset", "event_label") if c not in cols]
    if missing:
        raise ConfigError(f"{str(path)!r} lacks the column(s) {missing}; its header is {header}")
    i_f, i_on, i_off, i_lab = cols["filename"], cols["onset"], cols["offset"], cols["event_label"]
    out: dict[str, Events] = {}
    n_zero = 0
    for line, row in enumerate(rows, start=2):
        row = row + [""] * (len(header) - len(row))
        cid = clip_id(row[i_f])
        if not cid:
            raise ConfigError(f"{str(path)!r}, line {line}: empty filename")
        events = out.setdefault(cid, [])
        label = row[i_lab].strip()
        if not label or label.lower() == "nan":
            continue
        onset = _float(row[i_on], path, line, "onset")
        offset = _float(row[i_off], path, line, "offset")
        if offset < onset or onset < 0:
            raise ConfigError(f"{str(path)!r}, line {line}: bad event times onset={onset} offset={offset}")
        if offset > onset:
            events.append((onset, offset, label))
        else:
            n_zero += 1
    n_merged = 0
    if merge:
        for cid, events in out.items():
            out[cid], n = merge_overlapping_events(events)
            n_merged += n
    return out, {"events_merged": n_merged, "events_zero_length": n_zero}


def read_audioset_strong(
    path: str | Path, *, mid_to_name: Mapping[str, str] | None = None, merge: bool = True
) -> tuple[dict[str, Events], dict]:
    """Google's AudioSet strong labels, per clip, with class names.

    Reads ``segment_id, start_time_seconds, end_time_seconds, label`` (tab- or comma-separated, with that
    header). Labels are MIDs, mapped with ``mid_to_name`` (``None``: no mapping; the AudioSet vocabularies
    give one: :func:`ptsed.data.audioset.mid_to_name_map`); a MID that is not in it stays as it is and is
    counted in ``info["unknown_mids"]``.

    Args:
        path: the TSV (or CSV) file.
        mid_to_name: MID -> class name.
        merge: merge overlapping or touching events of one class (upstream does, before evaluation and
            before encoding targets).

    Returns:
        (clip id ``Y<id>`` -> events sorted by onset, info with ``events_merged``, ``events_zero_length``
        (dropped), ``unknown_mids`` (sorted list) and ``segments``).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"AudioSet label file {str(path)!r} does not exist")
    if mid_to_name is None:
        mid_to_name = {}
    with open(path, newline="", encoding="utf-8") as fh:
        first = fh.readline()
        fh.seek(0)
        delim = "\t" if "\t" in first else ","
        reader = csv.reader(fh, delimiter=delim)
        header = [c.strip() for c in next(reader, [])]
        need = ("segment_id", "start_time_seconds", "end_time_seconds", "label")
        if not set(need) <= set(header):
            raise ConfigError(
                f"{str(path)!r} is not an AudioSet strong-label file: its header is {header}, expected {need}"
            )
        i_seg, i_on, i_off, i_lab = (header.index(c) for c in need)
        out: dict[str, Events] = {}
        segments: set[str] = set()
        unknown: set[str] = set()
        n_zero = 0
        for line, row in enumerate(reader, start=2):
            if not row or not any(c.strip() for c in row):
                continue
            try:
                seg, mid = row[i_seg].strip(), row[i_lab].strip()
                onset, offset = float(row[i_on]), float(row[i_off])
                cid = audioset_clip_id(seg)
            except (IndexError, ValueError) as err:
                raise ConfigError(f"{str(path)!r}, line {line}: bad row {row} ({err})") from None
            if offset < onset:
                raise ConfigError(f"{str(path)!r}, line {line}: offset {offset} is before onset {onset}")
            segments.add(seg)
            events = out.setdefault(cid, [])
            if offset == onset:
                n_zero += 1
                continue
            name = mid_to_name.get(mid)
            if name is None:
                unknown.add(mid)
                name = mid
            events.append((onset, offset, name))
    n_merged = 0
    if merge:
        for cid, events in out.items():
            out[cid], n = merge_overlapping_events(events)
            n_merged += n
    info = {
        "events_merged": n_merged,
        "events_zero_length": n_zero,
        "unknown_mids": sorted(unknown),
        "segments": len(segments),
    }
    return out, info


def read_ground_truth(
    path: str | Path, *, mid_to_name: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None
) -> tuple[dict[str, Events], dict]:
    """Strong labels of any supported format, merged per class.

    Args:
        path: a DCASE strong-label TSV or an AudioSet strong-label TSV (labels are MIDs, mapped to names
            with ``mid_to_name``).
        mid_to_name: MID -> class name for the AudioSet format, or a function returning it (called only
            for an AudioSet file; ``ptsed evaluate`` passes :func:`ptsed.data.audioset.mid_to_name_map`, the
            AudioSet vocabularies). ``None``: MIDs stay as they are.

    Returns:
        (clip id -> events, info) where info holds ``format``, ``events_merged``, ``events_zero_length``
        and, for AudioSet, ``unknown_mids``.
    """
    fmt = sniff_label_format(path)
    if fmt == "audioset":
        mapping = mid_to_name() if callable(mid_to_name) else mid_to_name
        labels, info = read_audioset_strong(path, mid_to_name=mapping)
    else:
        labels, info = read_dcase_events(path)
    return labels, {"format": fmt, **info}


def read_detections(path: str | Path) -> dict[str, Events]:
    """Detected events per clip from a DCASE TSV or a folder of them (one per clip or several).

    Overlapping detections of one class are merged (a detection is a region where the class is on).
    """
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix == ".tsv") if path.is_dir() else [path]
    if not files:
        raise ConfigError(f"{str(path)!r} holds no .tsv detection files")
    out: dict[str, Events] = {}
    for f in files:
        events, _ = read_dcase_events(f)
        for cid, ev in events.items():
            out.setdefault(cid, []).extend(ev)
    return {cid: merge_overlapping_events(ev)[0] for cid, ev in out.items()}


def read_durations(path: str | Path) -> dict[str, float]:
    """Clip durations in seconds, keyed by clip id.

    Reads a DCASE TSV with the header ``filename duration``, or the headerless CSV ``Y<id>,duration``
    of AudioSet eval (upstream's ``eval_durations.csv``).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"durations file {str(path)!r} does not exist")
    text = read_text(path)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ConfigError(f"durations file {str(path)!r} is empty")
    delim = "\t" if "\t" in lines[0] else ","
    rows = list(csv.reader(lines, delimiter=delim))
    first = [c.strip().lower() for c in rows[0]]
    i_name, i_dur, start = 0, 1, 0
    if "filename" in first and "duration" in first:
        i_name, i_dur, start = first.index("filename"), first.index("duration"), 1
    else:
        try:
            float(rows[0][1])
        except (IndexError, ValueError):
            raise ConfigError(
                f"durations file {str(path)!r} must be a TSV with the header 'filename duration' or a "
                f"headerless 'name,duration' CSV; its first line is {lines[0]!r}"
            ) from None
    out: dict[str, float] = {}
    for line, row in enumerate(rows[start:], start=start + 1):
        if len(row) <= max(i_name, i_dur):
            raise ConfigError(f"durations file {str(path)!r}, line {line}: expected name and duration, got {row}")
        dur = _float(row[i_dur], path, line, "duration")
        if dur <= 0:
            raise ConfigError(f"durations file {str(path)!r}, line {line}: duration {dur} must be > 0")
        out[clip_id(row[i_name])] = dur
    return out


def match_clip_ids(names: Iterable[str], reference: Iterable[str]) -> dict[str, str]:
    """Map prediction names to ground-truth clip ids.

    A name matches a reference id when both are equal after :func:`clip_id`, or when the name is an
    AudioSet segment id (``<id>_<start ms>``) and ``Y<id>`` is a reference id.

    Returns:
        name -> reference id, for the names that match.
    """
    ref = set(reference)
    out: dict[str, str] = {}
    for name in names:
        cid = clip_id(name)
        if cid in ref:
            out[name] = cid
            continue
        m = _SEGMENT_ID.match(cid)
        if m is not None and "Y" + m.group("ytid") in ref:
            out[name] = "Y" + m.group("ytid")
    return out
