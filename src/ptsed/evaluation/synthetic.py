"""A synthetic evaluation set, to try ``ptsed evaluate`` and to test metrics without real data.

``python -m ptsed.evaluation.synthetic OUT [--clips N] [--classes K] [--seed S]`` writes
``OUT/ground_truth.tsv`` (DCASE strong labels), ``OUT/durations.tsv``, ``OUT/scores/<clip>.tsv``
(sed_scores_eval scores of a noisy "system") and ``OUT/detections.tsv`` (its events where the score exceeds 0.5).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ptsed.core.frames import FRAME_HOP_S, frame_times
from ptsed.io.annotations import Events, merge_overlapping_events


def make_synthetic_set(
    n_clips: int = 20,
    n_classes: int = 5,
    *,
    seed: int = 0,
    duration_s: float = 10.0,
    hop_s: float = FRAME_HOP_S,
    levels: int | None = 100,
    class_names: list[str] | None = None,
    skill: float = 0.6,
    event_rate: float = 0.8,
) -> tuple[dict[str, Events], dict[str, float], dict[str, np.ndarray], list[str], np.ndarray]:
    """Random strong labels and matching noisy frame scores.

    Args:
        n_clips: number of clips (``clip000``, ...), each ``duration_s`` long (the last 3 are 9.5 s).
        n_classes: number of classes (``class0``, ... unless ``class_names``).
        seed: random seed.
        duration_s: clip length.
        hop_s: frame hop of the scores.
        levels: round the scores to multiples of ``1 / levels`` (``None``: keep them continuous).
        class_names: names of the classes.
        skill: how much the scores follow the labels (0: pure noise, 1: nearly perfect).
        event_rate: expected number of events per class and clip.

    Returns:
        (ground truth clip -> events (merged, millisecond times), durations, clip -> scores (T, K),
        class names, timestamps (T + 1,)).
    """
    rng = np.random.default_rng(seed)
    names = class_names or [f"class{k}" for k in range(n_classes)]
    n_frames = int(round(duration_s / hop_s))
    ts = frame_times(n_frames + 1, hop_s)
    centres = (ts[:-1] + ts[1:]) / 2
    gt: dict[str, Events] = {}
    durations: dict[str, float] = {}
    scores: dict[str, np.ndarray] = {}
    for i in range(n_clips):
        clip = f"clip{i:03d}"
        dur = duration_s if i < n_clips - 3 else duration_s - 0.5
        events = []
        for name in names:
            for _ in range(rng.poisson(event_rate)):
                length = float(rng.uniform(0.2, 4.0))
                onset = float(rng.uniform(0, max(dur - length, 0.1)))
                events.append((round(onset, 3), round(min(onset + length, dur), 3), name))
        gt[clip], _ = merge_overlapping_events(events)
        durations[clip] = dur
        active = np.zeros((n_frames, len(names)))
        for on, off, name in gt[clip]:
            active[(centres > on) & (centres < off), names.index(name)] = 1.0
        strength = rng.uniform(0.5, 1.5, len(names))
        noise = rng.normal(0, 1, (n_frames, len(names)))
        kernel = np.hanning(15) / np.hanning(15).sum()
        smooth = np.stack([np.convolve(noise[:, k], kernel, mode="same") for k in range(len(names))], axis=1)
        logits = 10 * skill * strength * active + 1.5 * smooth / smooth.std() - 5.0 + 0.2 * noise
        s = 1 / (1 + np.exp(-logits))
        if levels:
            s = np.round(s * levels) / levels
        scores[clip] = s.astype(np.float64)
    return gt, durations, scores, names, ts


def write_synthetic_set(out_dir: str | Path, **kwargs) -> dict[str, Path]:
    """Write a :func:`make_synthetic_set` to files (see the module doc); returns their paths."""
    from ptsed.evaluation.scores import uniform_hop

    out = Path(out_dir)
    gt, durations, scores, names, ts = make_synthetic_set(**kwargs)
    (out / "scores").mkdir(parents=True, exist_ok=True)
    with open(out / "ground_truth.tsv", "w", encoding="utf-8") as fh:
        fh.write("filename\tonset\toffset\tevent_label\n")
        for clip, events in gt.items():
            if not events:
                fh.write(f"{clip}.wav\t\t\t\n")
            for on, off, label in events:
                fh.write(f"{clip}.wav\t{on:.3f}\t{off:.3f}\t{label}\n")
    with open(out / "durations.tsv", "w", encoding="utf-8") as fh:
        fh.write("filename\tduration\n")
        for clip, dur in durations.items():
            fh.write(f"{clip}.wav\t{dur}\n")
    hop = uniform_hop(ts) or FRAME_HOP_S
    with open(out / "detections.tsv", "w", encoding="utf-8") as det:
        det.write("filename\tonset\toffset\tevent_label\n")
        for clip, s in scores.items():
            header = "onset\toffset\t" + "\t".join(names)
            rows = [f"{ts[t]:.6g}\t{ts[t + 1]:.6g}\t" + "\t".join(f"{v:.6g}" for v in s[t]) for t in range(len(s))]
            (out / "scores" / f"{clip}.tsv").write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
            on = s > 0.5
            for k, name in enumerate(names):
                padded = np.r_[False, on[:, k], False].astype(int)
                starts = np.flatnonzero(np.diff(padded) == 1)
                stops = np.flatnonzero(np.diff(padded) == -1)
                for a, b in zip(starts, stops, strict=True):
                    det.write(f"{clip}.wav\t{a * hop:.3f}\t{b * hop:.3f}\t{name}\n")
    return {
        "ground_truth": out / "ground_truth.tsv",
        "durations": out / "durations.tsv",
        "scores": out / "scores",
        "detections": out / "detections.tsv",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a synthetic evaluation set (see the module doc).")
    parser.add_argument("out")
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = write_synthetic_set(args.out, n_clips=args.clips, n_classes=args.classes, seed=args.seed)
    for key, path in paths.items():
        print(f"{key}: {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
