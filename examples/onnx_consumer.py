"""Sound event detection with an ONNX file exported by ``ptsed export --format onnx``, without ptsed or torch.

Needs only onnxruntime, numpy and soundfile. Everything else comes from the file's metadata: the class names
(``labels``), the sample rate, the window length and the frame hop, and, for a fine-tuned model, per-class
thresholds and median filters (``postprocess``).

    ptsed export demo --format onnx --output demo.onnx
    python examples/onnx_consumer.py demo.onnx examples/soundscape.wav

Procedure: the audio (mixed to mono; resampled by linear interpolation when its rate differs, which is cruder
than ptsed's resampler) is cut into windows of ``window_s`` with a hop of half a window, the last one padded
with zeros; ONNX Runtime gives the frame logits of each window; each frame takes the mean probability of the
windows that cover it; a median filter (default 0.36 s) smooths each class; runs of frames at or above the
threshold (default 0.5) are the events, printed as a DCASE table ``onset offset event_label`` in seconds.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import onnxruntime as ort
import soundfile as sf


def load_model(path: str) -> tuple[ort.InferenceSession, dict]:
    """The session and its metadata (labels as a list, numbers as floats, postprocess as a dict)."""
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    raw = sess.get_modelmeta().custom_metadata_map
    meta = {
        "labels": json.loads(raw["labels"]),
        "sample_rate": int(raw["sample_rate"]),
        "window_s": float(raw["window_s"]),
        "frame_hop_s": float(raw["frame_hop_s"]),
        "postprocess": json.loads(raw.get("postprocess", "{}")),
        "probabilities": raw.get("head_type") == "attention",  # attention heads output probabilities
    }
    return sess, meta


def read_audio(path: str, sample_rate: int) -> np.ndarray:
    """Mono float32 samples at ``sample_rate``."""
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    audio = data.mean(axis=1)
    if sr != sample_rate:
        n = int(round(len(audio) * sample_rate / sr))
        audio = np.interp(np.arange(n) * sr / sample_rate, np.arange(len(audio)), audio).astype(np.float32)
    return audio


def frame_probabilities(sess: ort.InferenceSession, meta: dict, audio: np.ndarray, batch: int = 4) -> np.ndarray:
    """(T, K) probabilities on the frame grid, T = ceil(duration / frame_hop_s)."""
    win = int(round(meta["window_s"] * meta["sample_rate"]))
    hop_frames = int(round(meta["window_s"] / meta["frame_hop_s"])) // 2
    frame = int(round(meta["frame_hop_s"] * meta["sample_rate"]))
    total = max(1, int(np.ceil(len(audio) / frame)))
    starts = list(range(0, max(total - 2 * hop_frames, 0) + 1, hop_frames))
    if starts[-1] + 2 * hop_frames < total:
        starts.append(starts[-1] + hop_frames)
    acc = np.zeros((starts[-1] + 2 * hop_frames, len(meta["labels"])))
    count = np.zeros((len(acc), 1))
    for i in range(0, len(starts), batch):
        chunk = starts[i : i + batch]
        windows = np.zeros((len(chunk), win), dtype=np.float32)
        for j, s in enumerate(chunk):
            piece = audio[s * frame : s * frame + win]
            windows[j, : len(piece)] = piece
        logits = sess.run(["strong_logits"], {"waveform": windows})[0]  # (B, K, T)
        probs = logits if meta["probabilities"] else 1.0 / (1.0 + np.exp(-logits))
        for j, s in enumerate(chunk):
            acc[s : s + probs.shape[2]] += probs[j].T
            count[s : s + probs.shape[2]] += 1
    return (acc / np.maximum(count, 1))[:total]


def median_filter(x: np.ndarray, size: int) -> np.ndarray:
    """Median over ``size`` frames (odd), edges repeated."""
    if size <= 1:
        return x
    half = size // 2
    padded = np.pad(x, (half, half), mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, size), axis=-1)


def events(probs: np.ndarray, meta: dict, threshold: float, median_s: float) -> list[tuple[float, float, str]]:
    """(onset, offset, label) of every run of filtered frames at or above the threshold, by onset."""
    hop = meta["frame_hop_s"]
    thresholds = meta["postprocess"].get("threshold", {})
    medians = meta["postprocess"].get("median_filter_s", {})
    duration = len(probs) * hop
    out = []
    for k, label in enumerate(meta["labels"]):
        size = int(round(float(medians.get(label, median_s)) / hop)) // 2 * 2 + 1
        active = median_filter(probs[:, k], size) >= float(thresholds.get(label, threshold))
        edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(np.int8), [0]])))
        for on, off in zip(edges[::2], edges[1::2], strict=True):
            out.append((on * hop, min(off * hop, duration), label))
    return sorted(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="print the events of an audio file with an ONNX model of ptsed")
    p.add_argument("model", help="the .onnx file (ptsed export --format onnx)")
    p.add_argument("audio", help="a WAV/FLAC/OGG file")
    p.add_argument("--threshold", type=float, default=0.5, help="threshold of the probabilities [0.5]")
    p.add_argument("--median-filter", type=float, default=0.36, help="median filter length in seconds [0.36]")
    args = p.parse_args(argv)
    try:
        sess, meta = load_model(args.model)
        audio = read_audio(args.audio, meta["sample_rate"])
    except Exception as err:  # noqa: BLE001 - one line for any unreadable input
        print(f"error: {err}", file=sys.stderr)
        return 1
    probs = frame_probabilities(sess, meta, audio)
    print("onset\toffset\tevent_label")
    for onset, offset, label in events(probs, meta, args.threshold, args.median_filter):
        print(f"{onset:.3f}\t{offset:.3f}\t{label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
