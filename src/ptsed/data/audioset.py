"""AudioSet strong, as users hold it: Google's label files, clip durations, and the audio.

- Labels: ``audioset_{train,eval}_strong.tsv`` (columns ``segment_id, start_time_seconds,
  end_time_seconds, label``, the label a MID). MIDs become class names with the vocabularies of
  :mod:`ptsed.hub.labels`; overlapping or touching events of one class are merged, as upstream does.
  The clip of segment ``<id>_<start ms>`` is named ``Y<id>``.
- Durations: :func:`read_durations` (DCASE ``filename duration`` TSV, or the headerless ``Y<id>,duration``
  CSV of AudioSet eval).
- Audio: a folder of files named by clip id (``Y<id>.<ext>``, any format :mod:`ptsed.io.audio` reads), or
  PaSST-style HDF5 files (datasets ``audio_name``, ``mp3`` with the encoded bytes of each clip, and
  ``target``), as upstream's training reads them. See :func:`open_audio`.
- Targets: :func:`frame_targets` gives (K, 250) many-hot targets per 10 s clip on the 40 ms grid.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ptsed.core.errors import AudioError, ConfigError
from ptsed.core.frames import FRAME_HOP_S, events_to_frame_targets
from ptsed.io.annotations import Events, clip_id, read_audioset_strong, read_durations
from ptsed.io.annotations import read_ground_truth as io_read_ground_truth

STRONG_VOCAB = "audioset_strong_447"
WEAK_VOCAB = "audioset_weak_527"
CLIP_S = 10.0
"""Length of an AudioSet clip in seconds (models see exactly this much, zero-padded)."""
HDF5_SUFFIXES = (".h5", ".hdf", ".hdf5")

__all__ = [
    "AudioFolder",
    "AudioSetHDF5",
    "AudioSetStrong",
    "decode_audio_bytes",
    "frame_targets",
    "mid_to_name_map",
    "open_audio",
    "read_durations",
    "read_ground_truth",
    "read_strong_labels",
    "vocabulary_mids",
]


# ----------------------------------------------------------------------------------------------------
# labels
# ----------------------------------------------------------------------------------------------------
def vocabulary_mids(vocab: str) -> list[tuple[str, str]]:
    """(MID, class name) pairs of a ptsed label vocabulary, in output order."""
    from ptsed.hub.labels import find_labels_file, get_labels

    names = get_labels(vocab)  # finds (or fetches) and checks the file
    path = find_labels_file(vocab)
    if path is None:  # pragma: no cover - get_labels found or fetched it
        raise ConfigError(f"the label file of {vocab!r} is not available")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = sorted(csv.DictReader(fh, delimiter="\t"), key=lambda r: int(r["index"]))
    mids = [r["mid"].strip() for r in rows]
    if len(mids) != len(names):  # pragma: no cover - get_labels checked the file
        raise ConfigError(f"label file {str(path)!r} of {vocab!r} does not give a MID per class")
    return list(zip(mids, names, strict=True))


def mid_to_name_map(vocabs: Sequence[str] = (STRONG_VOCAB, WEAK_VOCAB)) -> dict[str, str]:
    """MID -> class name from the given vocabularies; earlier vocabularies win (strong names first)."""
    out: dict[str, str] = {}
    for vocab in vocabs:
        for mid, name in vocabulary_mids(vocab):
            out.setdefault(mid, name)
    return out


def read_strong_labels(
    path: str | Path, *, mid_to_name: Mapping[str, str] | None = None, merge: bool = True
) -> tuple[dict[str, Events], dict]:
    """:func:`ptsed.io.annotations.read_audioset_strong` with the MIDs mapped to class names by the AudioSet
    vocabularies (:func:`mid_to_name_map`) unless ``mid_to_name`` is given."""
    if not Path(path).is_file():
        raise ConfigError(f"AudioSet label file {str(path)!r} does not exist")
    return read_audioset_strong(
        path, mid_to_name=mid_to_name_map() if mid_to_name is None else mid_to_name, merge=merge
    )


def read_ground_truth(
    path: str | Path, *, mid_to_name: Mapping[str, str] | None = None
) -> tuple[dict[str, Events], dict]:
    """Strong labels of any supported format (:func:`ptsed.io.annotations.read_ground_truth`), the MIDs of an
    AudioSet file mapped to class names by ``mid_to_name``, by default the AudioSet vocabularies
    (:func:`mid_to_name_map`, read only for an AudioSet file)."""
    return io_read_ground_truth(path, mid_to_name=mid_to_name_map if mid_to_name is None else mid_to_name)


def frame_targets(
    events: Iterable[tuple[float, float, str]],
    labels: Sequence[str] | Mapping[str, int],
    duration_s: float = CLIP_S,
    hop_s: float = FRAME_HOP_S,
) -> np.ndarray:
    """(K, T) many-hot targets of one clip on the 40 ms grid: T = 250 for 10 s (upstream's encoder).

    Events of classes not in ``labels`` are ignored (upstream encodes only the 447 training classes).
    """
    num_frames = int(round(duration_s / hop_s))
    return events_to_frame_targets(events, labels, num_frames, hop_s)


# ----------------------------------------------------------------------------------------------------
# audio
# ----------------------------------------------------------------------------------------------------
def decode_audio_bytes(data: bytes, sample_rate: int | None = None, *, name: str = "<bytes>") -> np.ndarray:
    """Mono float32 samples (N,) of an encoded file held in memory (mp3, flac, wav, ...).

    Decoded by :func:`ptsed.io.audio.decode_bytes` (soundfile; libsndfile >= 1.1 reads mp3): mixed to mono
    by the channel mean and resampled as a file of the same content would be.
    """
    from ptsed.io.audio import decode_bytes

    return decode_bytes(data, sample_rate, name=f"the audio of {name}")[0]


class _Clips:
    """A collection of clips addressed by clip id (``self._index``: clip id -> where it is)."""

    _index: dict

    def clip_ids(self) -> list[str]:
        return sorted(self._index)

    def __contains__(self, clip: str) -> bool:
        return clip in self._index

    def __len__(self) -> int:
        return len(self._index)


class AudioFolder(_Clips):
    """Audio files named by clip id (``Y<id>.wav``, ``Y<id>.mp3``, ...) below a folder.

    Args:
        root: the folder (searched recursively).
        extensions: file extensions to pick up (default: every format :mod:`ptsed.io.audio` reads).
    """

    def __init__(self, root: str | Path, extensions: Iterable[str] | None = None) -> None:
        from ptsed.io.audio import list_audio_files

        self.root = Path(root)
        self._index: dict[str, Path] = {}
        for src in list_audio_files(self.root, extensions=extensions):
            cid = clip_id(src.name)
            if cid in self._index:
                raise ConfigError(f"two audio files in {str(self.root)!r} are named {cid!r}: "
                                  f"{self._index[cid]} and {src.path}")  # fmt: skip
            self._index[cid] = src.path

    def path(self, clip: str) -> Path:
        return self._index[clip]

    def load(self, clip: str, sample_rate: int) -> np.ndarray:
        """Mono float32 samples (N,) of a clip at ``sample_rate``."""
        from ptsed.io.audio import load_audio

        return load_audio(self._index[clip], sample_rate)[0]

    def close(self) -> None:
        pass


class AudioSetHDF5(_Clips):
    """PaSST-style HDF5 file(s): ``audio_name`` (bytes), ``mp3`` (encoded bytes per clip), ``target``.

    Args:
        paths: one ``.hdf``/``.h5`` file, a list of them, or a folder holding them (e.g. the
            ``balanced_train``, ``unbalanced_train`` and ``eval`` files).
    """

    def __init__(self, paths: str | Path | Sequence[str | Path]) -> None:
        import h5py

        if isinstance(paths, (str, Path)):
            p = Path(paths)
            paths = sorted(q for q in p.iterdir() if q.suffix.lower() in HDF5_SUFFIXES) if p.is_dir() else [p]
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ConfigError("no HDF5 files given")
        self._files = []
        self._index: dict[str, tuple[int, int]] = {}
        for fi, path in enumerate(self.paths):
            try:
                f = h5py.File(path, "r")
            except OSError as err:
                raise AudioError(f"cannot open HDF5 file {str(path)!r}: {err}") from err
            self._files.append(f)
            for key in ("audio_name", "mp3"):
                if key not in f:
                    raise AudioError(f"HDF5 file {str(path)!r} has no dataset {key!r} (expected PaSST's layout)")
            for i, raw in enumerate(f["audio_name"][()]):
                name = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
                self._index.setdefault(clip_id(name), (fi, i))

    def encoded(self, clip: str) -> bytes:
        """The stored (mp3) bytes of a clip."""
        fi, i = self._index[clip]
        return np.asarray(self._files[fi]["mp3"][i], dtype=np.uint8).tobytes()

    def weak_target(self, clip: str, num_classes: int = 527) -> np.ndarray | None:
        """The clip's weak (527-class) target unpacked from ``target``, or ``None`` without that dataset."""
        fi, i = self._index[clip]
        f = self._files[fi]
        if "target" not in f:
            return None
        return np.unpackbits(np.asarray(f["target"][i], dtype=np.uint8), count=num_classes).astype(np.float32)

    def load(self, clip: str, sample_rate: int) -> np.ndarray:
        """Mono float32 samples (N,) of a clip at ``sample_rate``."""
        return decode_audio_bytes(self.encoded(clip), sample_rate, name=f"{clip} in {self.paths[self._index[clip][0]]}")

    def close(self) -> None:
        for f in self._files:
            f.close()
        self._files = []

    def __enter__(self) -> AudioSetHDF5:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_audio(path: str | Path) -> AudioFolder | AudioSetHDF5:
    """A clip-id-addressed audio collection: an HDF5 file (or a folder of only HDF5 files), else a folder."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"audio {str(p)!r} does not exist")
    if p.is_file():
        if p.suffix.lower() in HDF5_SUFFIXES:
            return AudioSetHDF5(p)
        raise ConfigError(f"{str(p)!r} is a file but not an HDF5 file; give a folder of audio files")
    entries = [q for q in p.iterdir() if q.is_file() and not q.name.startswith(".")]
    if entries and all(q.suffix.lower() in HDF5_SUFFIXES for q in entries):
        return AudioSetHDF5(p)
    return AudioFolder(p)


def fit_length(samples: np.ndarray, num_samples: int) -> np.ndarray:
    """Cut to the first ``num_samples`` or zero-pad at the end (as upstream's clip loader)."""
    if len(samples) >= num_samples:
        return samples[:num_samples]
    return np.pad(samples, (0, num_samples - len(samples)))


class AudioSetStrong:
    """AudioSet-strong clips with audio and frame targets: a map-style dataset.

    Item ``i`` is a dict with ``clip`` (id), ``audio`` (float32 (N,), exactly ``clip_s`` long at
    ``sample_rate``: cut or zero-padded), ``targets`` (float32 (K, T), T = 250 for 10 s) and ``events``.

    Args:
        labels: a label file for :func:`read_strong_labels`, or clip id -> events.
        audio: a path for :func:`open_audio`, or an opened collection.
        classes: the K target classes in order (default: the 447 training classes).
        sample_rate: Hz of the returned audio.
        clip_s: clip length in seconds.
        hop_s: frame hop of the targets.

    Clips that have labels but no audio are left out and listed in ``missing_audio``.
    """

    def __init__(
        self,
        labels: str | Path | Mapping[str, Events],
        audio: str | Path | AudioFolder | AudioSetHDF5,
        *,
        classes: Sequence[str] | None = None,
        sample_rate: int = 16000,
        clip_s: float = CLIP_S,
        hop_s: float = FRAME_HOP_S,
    ) -> None:
        from ptsed.hub.labels import get_labels

        self.events = dict(read_strong_labels(labels)[0] if isinstance(labels, (str, Path)) else labels)
        self.audio = open_audio(audio) if isinstance(audio, (str, Path)) else audio
        self.classes = list(classes) if classes is not None else get_labels(STRONG_VOCAB)
        self._index = {c: i for i, c in enumerate(self.classes)}
        self.sample_rate, self.clip_s, self.hop_s = sample_rate, clip_s, hop_s
        self.clip_ids = [c for c in sorted(self.events) if c in self.audio]
        self.missing_audio = [c for c in sorted(self.events) if c not in self.audio]

    def __len__(self) -> int:
        return len(self.clip_ids)

    def __getitem__(self, i: int) -> dict:
        clip = self.clip_ids[i]
        samples = self.audio.load(clip, self.sample_rate)
        samples = fit_length(samples, int(round(self.clip_s * self.sample_rate)))
        events = self.events[clip]
        return {
            "clip": clip,
            "audio": samples,
            "targets": frame_targets(events, self._index, self.clip_s, self.hop_s),
            "events": events,
        }
