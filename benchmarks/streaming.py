"""Live detection (``ptsed listen`` / :class:`ptsed.StreamDetector`): real-time factor, latency, and the
largest model that keeps up, per hop.

For each model (random weights: speed does not depend on the values; real checkpoints cannot be downloaded
here) and each hop it streams ``--seconds`` of a test signal in 0.1 s blocks, as a microphone would, and
prints:

- ``rtf``: compute time per second of audio after the first window (steady state); ``< 1`` keeps up in
  real time, and ``rtf`` is also the share of one core the detector uses with ``--threads 1``;
- ``latency``: from the end of a sound to the push that emits its event, in a real-time stream. An event
  whose offset is frame ``j`` closes in the push that makes filtered frame ``j`` final (default
  post-processing: 0.36 s median filter, no merge gap), so the latency of an offset at ``t_j`` is
  ``audio pushed - t_j + time of that push``; median and 95th percentile over every frame position after
  the first window as a possible offset (random weights give few real events; the figure does not depend
  on them). In the first window of a stream frames wait for the second window (up to ``window + hop``);
- the largest model that keeps up (``rtf < 1``) at each hop, the models ordered by size.

    python benchmarks/streaming.py                                   # all four models, 30 s per run
    python benchmarks/streaming.py --models frame_mn06 --hops 0.5 --seconds 60
    python benchmarks/streaming.py --device cuda

Timings on a shared machine vary with its load; the figures of one run are comparable with each other.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

SHARED_LABELS = Path(__file__).resolve().parents[1].parent / "shared" / "labels"
if SHARED_LABELS.is_dir():  # the label vocabularies offline (the cache may not hold them)
    os.environ.setdefault("PTSED_LABELS_DIR", str(SHARED_LABELS))

MODELS = ("frame_mn06", "frame_mn10", "atst_frame", "beats")
"""In order of size (MACs per 10 s window)."""
NAMES = {"frame_mn06": "frame_mn06", "frame_mn10": "frame_mn10", "atst_frame": "ATST-F", "beats": "BEATs"}


def signal(seconds: float, sr: int = 16_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    env = 0.05 + 0.5 * (np.sin(2 * np.pi * 0.21 * t) > 0.4) + 0.3 * (np.sin(2 * np.pi * 0.53 * t) > 0.7)
    return ((np.sin(2 * np.pi * 440 * t) * 0.3 + rng.standard_normal(t.size) * 0.2) * env).astype(np.float32)


def run(model: object, hop: float, x: np.ndarray, device: str) -> dict:
    from ptsed.inference.stream import StreamDetector

    det = StreamDetector(model, 16_000, hop_s=hop, device=device, batch_size=1)
    block = 1600
    busy = 0.0
    latencies: list[float] = []
    first_window = int(det.predictor.window_s * 16_000)
    for i in range(0, len(x), block):
        t0 = time.perf_counter()
        r = det.push(x[i : i + block])
        dt = time.perf_counter() - t0
        if i + block > first_window:
            busy += dt
        pushed = (i + block) / 16_000
        latencies += [pushed - t + dt for t in r.filtered.timestamps[:-1] if t >= det.predictor.window_s]
    det.flush()
    steady = (len(x) - first_window) / 16_000
    return {
        "rtf": busy / steady,
        "latency": latencies,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--hops", default="0.5,1,2,5")
    ap.add_argument("--seconds", type=float, default=30.0, help="audio streamed per run (30)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: rtf = share of one core)")
    args = ap.parse_args()
    import torch

    import ptsed

    torch.set_num_threads(args.threads)
    hops = [float(h) for h in args.hops.split(",")]
    x = signal(args.seconds)
    rows = []
    print(f"{args.seconds:g} s streamed in 0.1 s blocks, device {args.device}, {args.threads} thread(s)")
    print(f"{'model':<12} {'hop s':>6} {'rtf':>6} {'keeps up':>8} {'latency median s':>17} {'p95 s':>6}")
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = ptsed.create_model(name, pretrained=False).to(args.device)
        for hop in hops:
            r = run(model, hop, x, args.device)
            lat = np.array(r["latency"]) if r["latency"] else np.array([np.nan])
            rows.append((name, hop, r["rtf"]))
            # a model that does not keep up falls behind without bound: no latency to speak of
            med, p95 = (f"{np.median(lat):.2f}", f"{np.percentile(lat, 95):.2f}") if r["rtf"] < 1 else ("grows", "-")
            print(
                f"{NAMES.get(name, name):<12} {hop:>6g} {r['rtf']:>6.3f} {'yes' if r['rtf'] < 1 else 'no':>8} "
                f"{med:>17} {p95:>6}",
                flush=True,
            )
    print("\nlargest model that keeps up (rtf < 1):")
    for hop in hops:
        ok = [n for n, h, rtf in rows if h == hop and rtf < 1]
        best = max(ok, key=lambda n: MODELS.index(n) if n in MODELS else -1) if ok else "none"
        print(f"  hop {hop:g} s: {NAMES.get(best, best)}")


if __name__ == "__main__":
    main()
