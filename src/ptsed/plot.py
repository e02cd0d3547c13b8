"""One PNG per input: spectrogram, heat map of the top classes' scores, detected events.

Needs matplotlib (``pip install 'ptsed[plot]'``). Uses the Agg canvas directly, so it never touches
pyplot's global state or needs a display.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ptsed.core.errors import ConfigError

SPEC_SR = 16_000
N_FFT = 512


def _frames(blocks: Iterator[np.ndarray], hop: int, n_fft: int) -> Iterator[np.ndarray]:
    """Frames (n_fft,) every ``hop`` samples from a stream of 1-D blocks (the last frames zero-padded)."""
    buf = np.zeros(0, np.float32)
    pos = 0  # absolute start of buf
    nxt = 0
    for block in blocks:
        buf = np.concatenate([buf, block])
        while nxt + n_fft <= pos + buf.size:
            lo = nxt - pos
            yield buf[lo : lo + n_fft]
            nxt += hop
        drop = nxt - pos
        if drop > 0:
            buf = buf[drop:]
            pos += drop
    while nxt < pos + buf.size:
        lo = nxt - pos
        yield np.pad(buf[lo : lo + n_fft], (0, max(0, n_fft - (buf.size - lo))))
        nxt += hop


def spectrogram(path: str | Path, max_columns: int = 2000) -> tuple[np.ndarray, float, float]:
    """Log-power spectrogram (F, N) in dB of a file at 16 kHz, decoded in blocks, at most ``max_columns``
    columns. Returns ``(spec_db, hop_s, duration_s)``."""
    from ptsed.io.audio import audio_info, stream_audio

    info = audio_info(path)
    duration = info.duration_s or 0.0
    hop = max(160, int(np.ceil(duration * SPEC_SR / max_columns))) if duration else 160
    window = np.hanning(N_FFT).astype(np.float32)
    stream = stream_audio(path, SPEC_SR, mono=True)
    cols = []
    batch: list[np.ndarray] = []
    for frame in _frames(iter(stream), hop, N_FFT):
        batch.append(frame)
        if len(batch) == 256:
            cols.append(np.abs(np.fft.rfft(np.stack(batch) * window, axis=1)) ** 2)
            batch = []
    if batch:
        cols.append(np.abs(np.fft.rfft(np.stack(batch) * window, axis=1)) ** 2)
    power = np.concatenate(cols).T if cols else np.zeros((N_FFT // 2 + 1, 1))
    spec_db = 10 * np.log10(power + 1e-10)
    return spec_db, hop / SPEC_SR, (stream.num_samples or 0) / SPEC_SR


def plot_result(result: Any, path: str | Path, *, top: int = 10, title: str | None = None) -> Path:
    """Write a PNG of one :class:`ptsed.inference.types.FileResult` (detect task).

    Panels: spectrogram of the input (0-8 kHz), heat map of the median-filtered scores of ``top`` classes
    (classes with events first, by peak score, then the highest-scoring others), and the detected events of
    the same classes, row for row.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ConfigError("--plot needs matplotlib: pip install 'ptsed[plot]'") from err

    fs = (result.filtered or result.scores)[0]
    duration = float(result.duration_s or fs.duration)
    n = min(fs.scores.shape[0], int(np.ceil(duration / max(fs.timestamps[1] - fs.timestamps[0], 1e-9))))
    scores = fs.scores[:n]
    peak = scores.max(axis=0) if n else np.zeros(len(fs.labels))
    event_labels = list(dict.fromkeys(e.label for e in result.events))
    index = {lab: i for i, lab in enumerate(fs.labels)}
    by_peak = [i for i in np.argsort(-peak) if fs.labels[i] not in event_labels]
    chosen = sorted((index[lab] for lab in event_labels), key=lambda i: -peak[i])[:top]
    chosen += by_peak[: max(0, top - len(chosen))]
    spec, spec_hop, _ = spectrogram(result.source)

    rows = max(1, len(chosen))
    fig = Figure(figsize=(14, 3.2 + 0.5 * rows), dpi=110)
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(3, 2, height_ratios=[2.2, 0.3 * rows + 0.4, 0.3 * rows + 0.4], width_ratios=[60, 1],
                          hspace=0.12, wspace=0.02)  # fmt: skip
    ax_spec = fig.add_subplot(gs[0, 0])
    ax_heat = fig.add_subplot(gs[1, 0], sharex=ax_spec)
    ax_ev = fig.add_subplot(gs[2, 0], sharex=ax_spec)
    cax = fig.add_subplot(gs[1, 1])

    vmax = float(np.percentile(spec, 99.5))
    ax_spec.imshow(
        spec, origin="lower", aspect="auto", cmap="magma", vmin=vmax - 80, vmax=vmax,
        extent=(0, spec.shape[1] * spec_hop, 0, SPEC_SR / 2000),
    )  # fmt: skip
    ax_spec.set_ylabel("kHz")
    ax_spec.set_title(title or f"{result.name}  ({duration:.1f} s)", loc="left", fontsize=10)
    ax_spec.tick_params(labelbottom=False)

    names = [_short(fs.labels[i]) for i in chosen]
    heat = scores[:, chosen].T if chosen else np.zeros((1, max(n, 1)))
    im = ax_heat.imshow(
        heat, origin="upper", aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest",
        extent=(0, fs.timestamps[n] if n else duration, len(chosen) - 0.5, -0.5),
    )  # fmt: skip
    ax_heat.set_yticks(range(len(chosen)))
    ax_heat.set_yticklabels(names, fontsize=8)
    ax_heat.set_ylabel("score", fontsize=9)
    ax_heat.tick_params(labelbottom=False)
    fig.colorbar(im, cax=cax)

    for row, i in enumerate(chosen):  # the same rows as the heat map
        spans = [(e.onset, max(e.offset - e.onset, 1e-3)) for e in result.events if e.label == fs.labels[i]]
        if spans:
            ax_ev.broken_barh(spans, (row - 0.38, 0.76), facecolors=f"C{row % 10}")
    ax_ev.set_yticks(range(len(chosen)))
    ax_ev.set_yticklabels(names, fontsize=8)
    ax_ev.set_ylim(rows - 0.5, -0.5)
    ax_ev.set_xlim(0, duration)
    ax_ev.set_ylabel("events", fontsize=9)
    ax_ev.set_xlabel("time (s)")
    hidden = len(event_labels) - sum(fs.labels[i] in event_labels for i in chosen)
    note = "no events" if not result.events else (f"+{hidden} more classes with events" if hidden > 0 else "")
    if note:
        ax_ev.text(0.995, 0.02, note, transform=ax_ev.transAxes, ha="right", va="bottom", fontsize=8, color="grey")
    ax_ev.grid(axis="x", alpha=0.3)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    return path


def _short(label: str, width: int = 32) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"
