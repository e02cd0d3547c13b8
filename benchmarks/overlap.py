"""Detection quality against window overlap: PSDS1 of ``ptsed evaluate --model M --hop H`` for several hops.

The data is the held-out *test* side of the demo task (``recipes/demo_data.py``): the same split by recording
group and the same seed as the demo model's training (``--train 6000 --val 150 --test 200 --seed 0``), so the
test soundscapes use recordings the model never heard. Those soundscapes are 10 s long, one window, where the
hop changes nothing; here the test side is synthesised as longer soundscapes (``--duration``, default 60 s)
with the same event density (1-5 events per 10 s), so a file spans several windows and the overlap matters.

For every model and hop the script runs ``ptsed evaluate`` (a subprocess, as a user runs it; detect's default
median filter) and prints one markdown table: ``psds1`` (sed_scores_eval's variance-penalised PSDS1),
``psds1_macro`` (mean single-class PSDS1), their ratios to the figure at the first hop (5 s: 50 % overlap
of a 10 s window), the windows per file, and the wall time of the evaluate command (model load, inference
and PSDS; on a shared CPU the seconds are indicative, the window counts are exact).

Usage (from the repository root)::

    python benchmarks/overlap.py                                  # demo model, 100 soundscapes of 60 s
    python benchmarks/overlap.py --models demo,run/model.pt --hops 5,7.5,8,9,10 --clips 100 --duration 60
    python benchmarks/overlap.py --hops 5,6.25,7.5,10 --mix-seed 12      # another draw of the mixtures

The figures and the decision they support (the default hop stays 5 s) are in docs/inference.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _demo_data():  # noqa: ANN202
    """``recipes/demo_data.py`` as a module (its split and classes)."""
    spec = importlib.util.spec_from_file_location("demo_data", ROOT / "recipes" / "demo_data.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def build_test(sources: Path, out: Path, clips: int, duration_s: float, seed: int, mix_seed: int | None = None) -> Path:
    """Synthesise ``clips`` test soundscapes of ``duration_s`` seconds from the demo split's held-out groups
    (``recipes/demo_data.py`` with ``--test``: the validation groups become the test side; mixtures drawn with
    ``mix_seed``, default ``seed + 2`` as there) into ``out`` (reused when complete). Returns ``out``."""
    from ptsed.data.synth import synthesize
    from ptsed.data.tables import read_tsv

    if (out / "durations.tsv").is_file() and len(list((out / "audio").glob("*.wav"))) == clips:
        return out
    demo = _demo_data()
    manifest = [row for _, row in read_tsv(sources / "manifest.tsv", ("role", "path", "label", "group", "license"))]
    side = demo.make_split(manifest, demo.DEMO_CLASSES, 0.25, seed)
    files = [sources / path for path, s in side.items() if s == "val"]  # the held-out groups: the test side
    per_10s = duration_s / 10.0
    synthesize(
        sources / "sources" / "foreground",
        sources / "sources" / "background",
        out,
        clips,
        seed + 2 if mix_seed is None else mix_seed,
        duration_s=duration_s,
        classes=sources / "classes.tsv",
        only=demo.DEMO_CLASSES,
        files=files,
        min_events=max(1, round(per_10s)),
        max_events=max(1, round(5 * per_10s)),
        overwrite=True,
        progress=False,
    )
    return out


def windows_per_file(test: Path, hop_s: float, window_s: float = 10.0, frame_s: float = 0.04, sr: int = 16000) -> float:
    """Mean number of model windows per file of ``test`` at ``hop_s`` (the Predictor's plan)."""
    from ptsed.data.tables import read_tsv
    from ptsed.inference.windows import window_starts

    frame = round(frame_s * sr)
    window = round(window_s / frame_s) * frame
    hop = round(hop_s / frame_s) * frame
    counts = [
        len(window_starts(round(float(r["duration"]) * sr), window, hop, frame))
        for _, r in read_tsv(test / "durations.tsv", ("filename", "duration"))
    ]
    return sum(counts) / len(counts)


def evaluate(model: str, test: Path, hop_s: float, out: Path) -> tuple[dict, float]:
    """Run ``ptsed evaluate --model`` at ``hop_s``; returns (summary.json, wall seconds)."""
    cmd = [
        sys.executable, "-m", "ptsed", "evaluate", "--model", model, "--audio", str(test / "audio"),
        "--ground-truth", str(test / "labels.tsv"), "--durations", str(test / "durations.tsv"),
        "--hop", f"{hop_s:g}", "--metrics", "psds1", "--no-plot", "--output", str(out),
    ]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    return json.loads((out / "summary.json").read_text()), seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sources", nargs="?", default=str(ROOT.parent / "shared" / "soundscapes"))
    p.add_argument("--models", default="demo", help="comma-separated zoo names or checkpoints (demo)")
    p.add_argument("--hops", default="5,7.5,8,9,10", help="hops in seconds; the first is the reference (5)")
    p.add_argument("--clips", type=int, default=100, help="test soundscapes (100)")
    p.add_argument("--duration", type=float, default=60.0, help="soundscape length in seconds (60)")
    p.add_argument("--seed", type=int, default=0, help="seed of the demo split (0, as the demo model)")
    p.add_argument("--mix-seed", type=int, help="seed of the mixtures (default: seed + 2, as demo_data.py)")
    p.add_argument("--workdir", default="out/overlap", help="data and evaluation outputs (out/overlap)")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = p.parse_args(argv)

    hops = [float(h) for h in args.hops.split(",") if h.strip()]
    work = Path(args.workdir)
    mix = args.seed + 2 if args.mix_seed is None else args.mix_seed
    test = build_test(Path(args.sources), work / f"test_{args.clips}x{args.duration:g}s_seed{args.seed}_mix{mix}",
                      args.clips, args.duration, args.seed, mix)  # fmt: skip
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = []
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        ref: dict | None = None
        for hop in hops:
            tag = Path(model).stem if Path(model).suffix else model
            summary, seconds = evaluate(model, test, hop, work / f"eval_{tag}_mix{mix}_hop{hop:g}")
            row = {
                "model": model,
                "hop_s": hop,
                "psds1": summary["psds1"],
                "psds1_macro": summary["psds1_macro"],
                "windows_per_file": windows_per_file(test, hop),
                "seconds": seconds,
            }
            ref = ref or row
            row["psds1_ratio"] = row["psds1"] / ref["psds1"]
            row["psds1_macro_ratio"] = row["psds1_macro"] / ref["psds1_macro"]
            row["windows_ratio"] = row["windows_per_file"] / ref["windows_per_file"]
            rows.append(row)
            print(f"{model} hop {hop:g} s: psds1_macro {row['psds1_macro']:.4f}, {seconds:.0f} s", file=sys.stderr)
    print(f"\n{args.clips} held-out test soundscapes of {args.duration:g} s (split seed {args.seed}, mixtures {mix}), "
          "10 s windows\n")  # fmt: skip
    print("| model | hop (s) | overlap | psds1 | ratio | psds1_macro | ratio | windows/file | rel. windows "
          "| evaluate s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['hop_s']:g} | {100 * (1 - r['hop_s'] / 10):.0f} % | {r['psds1']:.4f} | "
            f"{r['psds1_ratio']:.3f} | {r['psds1_macro']:.4f} | {r['psds1_macro_ratio']:.3f} | "
            f"{r['windows_per_file']:.2f} | {r['windows_ratio']:.2f} | {r['seconds']:.0f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
