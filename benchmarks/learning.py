"""Offline learning benchmark: does training learn, does fine-tuning transfer, does distillation help?

Everything runs on soundscapes synthesised (``ptsed.data.synth.synthesize``, the machinery of ``ptsed synth``)
from the recordings of ``../shared/soundscapes``. Every class's clips and the backgrounds are split into
train, validation and test sides **by recording group** (variants of one recording never straddle a split),
so the test soundscapes are built from recordings that no model saw. Two tasks:

- ``demo``: the 10 classes of the shipped demo model (``recipes/demo_data.py``);
- ``transfer``: the *other* classes with at least three recording groups (Engine, Explosion, Pig, Sheep,
  Dog, Door, Splash; Glass and Goat have a single group and cannot be split).

Every model is trained with ``ptsed finetune`` and scored with ``ptsed evaluate`` (subprocesses, as users run
them) on the test side: PSDS1 (``psds1``, sed_scores_eval's variance-penalised form, and ``psds1_macro``, the
mean over classes), collar-based event-F1 at threshold 0.5 (micro / macro), with a 0.28 s median filter (the
validation default of finetune), and the wall time of the finetune command. Rows:

- (a) ``scratch``: frame_mn06 from random initialisation on the demo task;
- (b) ``transfer``: model (a) fine-tuned (preset ``full``) to the transfer classes with N training soundscapes,
  against frame_mn06 from scratch on the same N soundscapes and the same budget (optimiser steps);
- (c) presets ``linear-probe``, ``full`` and ``drop-top`` from model (a) on the transfer task (middle N);
- (d) distillation: a stronger teacher (frame_mn10 with a BiGRU, from scratch on the demo task) distilled
  into frame_mn06 (``--teacher``), against (a) (frame_mn06 without distillation, same data and budget).

Usage (from the repository root; the full run takes hours on 2 CPU cores)::

    python benchmarks/learning.py --quick                    # smoke test, a few minutes
    python benchmarks/learning.py                            # the full table
    python benchmarks/learning.py --rows a,b --epochs 20 --workdir out/learning --json out/learning.json

Data and finished runs are kept in ``--workdir`` (keyed by their settings) and reused by a later call.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "recipes"))
from demo_data import DEMO_CLASSES, split_groups  # noqa: E402

from ptsed.data.synth import synthesize  # noqa: E402
from ptsed.data.tables import read_tsv  # noqa: E402

TRANSFER_CANDIDATES = ["Engine", "Explosion", "Pig", "Sheep", "Dog", "Door", "Glass", "Goat", "Splash, splatter"]
"""The classes of ``../shared/soundscapes`` outside the demo's 10; used when they have >= 3 recording groups."""

SIDES = ("train", "val", "test")


@dataclass
class Sizes:
    """Soundscape counts and the training budget of one benchmark profile."""

    demo_train: int
    val: int
    test: int
    labels: list[int]
    epochs: int
    epoch_len: int
    batch: int
    window_s: float
    warmup: int
    rnn_dim: int


FULL = Sizes(
    demo_train=1000,
    val=100,
    test=150,
    labels=[20, 50, 200],
    epochs=20,
    epoch_len=600,
    batch=16,
    window_s=4.0,
    warmup=50,
    rnn_dim=128,
)
QUICK = Sizes(
    demo_train=24, val=8, test=10, labels=[8, 16], epochs=1, epoch_len=16, batch=8, window_s=4.0, warmup=1, rnn_dim=32
)


# -- data ------------------------------------------------------------------------------------------------------
def groups_per_class(manifest: list[dict[str, str]]) -> dict[str, int]:
    out: dict[str, set[str]] = {}
    for r in manifest:
        if r["role"] == "fg":
            out.setdefault(r["label"], set()).add(r["group"])
    return {k: len(v) for k, v in out.items()}


def three_way_split(rows: list[dict[str, str]], seed: int, key: str) -> dict[str, str]:
    """Side of each row's path: whole recording groups on test (about 25 %), then validation (about 20 %)."""
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    if len({r["group"] for r in rows}) < 3:
        raise SystemExit(f"cannot split {key!r} three ways by recording group: fewer than three groups")
    test = split_groups(rows, 0.25, rng)
    rest = [r for r in rows if r["group"] not in test]
    val = split_groups(rest, 0.25, rng)
    return {r["path"]: "test" if r["group"] in test else "val" if r["group"] in val else "train" for r in rows}


def build_task(src: Path, out: Path, classes: list[str], counts: dict[str, int], seed: int) -> dict[str, Path]:
    """Synthesise the soundscapes of one task: ``out/<side>`` for each entry of ``counts`` (side -> count;
    ``train_N`` sides use the training recordings). Reuses a folder that is already complete."""
    manifest = [row for _, row in read_tsv(src / "manifest.tsv", ("role", "path", "label", "group"))]
    side: dict[str, str] = {}
    for c in classes:
        side.update(three_way_split([r for r in manifest if r["role"] == "fg" and r["label"] == c], seed, c))
    side.update(three_way_split([r for r in manifest if r["role"] == "bg"], seed, "background"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
    folders = {}
    for i, (name, count) in enumerate(counts.items()):
        folder = out / name
        folders[name] = folder
        if (folder / "durations.tsv").is_file() and len(list((folder / "audio").glob("*.wav"))) == count:
            continue
        files = [src / p for p, s in side.items() if s == name.split("_")[0]]
        synthesize(
            src / "sources" / "foreground",
            src / "sources" / "background",
            folder,
            count,
            seed * 100 + i,
            classes=src / "classes.tsv",
            only=classes,
            files=files,
            overwrite=True,
            progress=False,
        )
    return folders


# -- runs ------------------------------------------------------------------------------------------------------
def ptsed(*args: str) -> float:
    """Run ``ptsed ARGS`` with this Python (the checkout's package when PYTHONPATH=src); wall seconds."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ptsed", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"ptsed {args[0]} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return time.perf_counter() - t0


class Runner:
    """Trains (``ptsed finetune``) and tests (``ptsed evaluate``) one configuration, once per settings."""

    def __init__(self, workdir: Path, sizes: Sizes, seed: int, threads: int) -> None:
        self.workdir, self.sizes, self.seed, self.threads = workdir, sizes, seed, threads

    def train(self, name: str, task: dict[str, Path], labels: Path, train_side: str, *args: str) -> dict[str, Any]:
        s = self.sizes
        common = [
            "--labels",
            str(labels),
            "--train",
            str(task[train_side]),
            "--valid",
            str(task["val"]),
            "--epochs",
            str(s.epochs),
            "--epoch-len",
            str(s.epoch_len),
            "--batch-size",
            str(s.batch),
            "--window",
            f"{s.window_s:g}",
            "--warmup-steps",
            str(s.warmup),
            "--val-every",
            str(max(1, s.epochs // 5)),
            "--threads",
            str(self.threads),
            "--seed",
            str(self.seed),
            "--quiet",
        ]
        cmd = [*args, *common]
        key = hashlib.sha1(json.dumps(cmd).encode()).hexdigest()[:10]
        run = self.workdir / "runs" / f"{name}-{key}"
        record = run / "benchmark.json"
        if record.is_file():
            return json.loads(record.read_text())
        wall = run / "train_wall_s.txt"
        if not (run / "model.pt").is_file() or not wall.is_file():
            resume = ["--resume"] if (run / "checkpoints" / "last.ckpt").is_file() else []
            wall.parent.mkdir(parents=True, exist_ok=True)
            wall.write_text(f"{ptsed('finetune', *cmd, '--output', str(run), *resume):.1f}\n")
        seconds = float(wall.read_text())
        test = task["test"]
        ptsed(
            "evaluate",
            "--model",
            str(run / "model.pt"),
            "--audio",
            str(test / "audio"),
            "--ground-truth",
            str(test / "labels.tsv"),
            "--durations",
            str(test / "durations.tsv"),
            "--median-filter",
            "0.28",
            "--metrics",
            "psds1,collar_f1",
            "--no-plot",
            "--output",
            str(run / "test"),
        )
        summary = json.loads((run / "test" / "summary.json").read_text())
        f1 = summary["collar_f1"]["0.5"]
        result = {
            "name": name,
            "run": str(run),
            "command": "ptsed finetune " + " ".join(cmd),
            "psds1": summary["psds1"],
            "psds1_macro": summary["psds1_macro"],
            "event_f1_micro": f1["micro"],
            "event_f1_macro": f1["macro"],
            "train_wall_s": round(seconds, 1),
        }
        record.write_text(json.dumps(result, indent=1))
        return result


SCRATCH = ["--model", "frame_mn06", "--preset", "scratch", "--lr", "3e-3"]  # recipes/demo_train.sh's settings


def benchmark(args: argparse.Namespace) -> list[dict[str, Any]]:
    sizes = QUICK if args.quick else FULL
    if args.epochs:
        sizes.epochs = args.epochs
    if args.labels:
        sizes.labels = [int(x) for x in args.labels.split(",")]
    rows = set(args.rows.split(","))
    src = Path(args.sources)
    workdir = Path(args.workdir) / ("quick" if args.quick else "full")
    manifest = [row for _, row in read_tsv(src / "manifest.tsv", ("role", "path", "label", "group"))]
    groups = groups_per_class(manifest)
    transfer_classes = [c for c in TRANSFER_CANDIDATES if groups.get(c, 0) >= 3]
    runner = Runner(workdir, sizes, args.seed, args.threads)
    results: list[dict[str, Any]] = []

    def add(row: str, setting: str, labels: int, result: dict[str, Any]) -> None:
        results.append({"row": row, "setting": setting, "train_soundscapes": labels, **result})
        print(f"[{row}] {setting}: psds1_macro {result['psds1_macro']:.3f}", file=sys.stderr, flush=True)

    counts = {"train": sizes.demo_train, "val": sizes.val, "test": sizes.test}
    demo = build_task(src, workdir / "data" / "demo", DEMO_CLASSES, counts, args.seed)
    demo_labels = workdir / "data" / "demo" / "classes.txt"
    base = runner.train("a_scratch", demo, demo_labels, "train", *SCRATCH)  # the source model of (b)-(d)
    if "a" in rows:
        add("a", "frame_mn06 from scratch, demo classes", sizes.demo_train, base)
    source = ["--model", "frame_mn06", "--checkpoint", str(Path(base["run"]) / "model.pt")]
    if rows & {"b", "c"}:
        counts = {f"train_{n}": n for n in sizes.labels} | {"val": sizes.val, "test": sizes.test}
        task = build_task(src, workdir / "data" / "transfer", transfer_classes, counts, args.seed)
        labels = workdir / "data" / "transfer" / "classes.txt"
        lr = ["--lr", str(args.transfer_lr)] if args.transfer_lr else []
        for n in sizes.labels if "b" in rows else []:
            add(
                "b",
                "transfer from (a), preset full",
                n,
                runner.train(f"b_full_{n}", task, labels, f"train_{n}", *source, "--preset", "full", *lr),
            )
            add("b", "frame_mn06 from scratch", n, runner.train(f"b_scratch_{n}", task, labels, f"train_{n}", *SCRATCH))
        if "c" in rows:
            n = sizes.labels[len(sizes.labels) // 2]
            for preset in ("linear-probe", "full", "drop-top"):
                add(
                    "c",
                    f"transfer from (a), preset {preset}",
                    n,
                    runner.train(
                        f"b_full_{n}" if preset == "full" else f"c_{preset}_{n}",
                        task,
                        labels,
                        f"train_{n}",
                        *source,
                        "--preset",
                        preset,
                        *([] if preset != "full" else lr),
                    ),
                )
    if "d" in rows:
        teacher = runner.train(
            "d_teacher",
            demo,
            demo_labels,
            "train",
            "--model",
            "frame_mn10",
            "--preset",
            "scratch",
            "--lr",
            "3e-3",
            "--rnn-dim",
            str(sizes.rnn_dim),
        )
        add("d", f"teacher: frame_mn10 + BiGRU {sizes.rnn_dim}, from scratch", sizes.demo_train, teacher)
        student = runner.train(
            "d_student",
            demo,
            demo_labels,
            "train",
            *SCRATCH,
            "--teacher",
            str(Path(teacher["run"]) / "model.pt"),
            "--distill-weight",
            "0.5",
        )
        add("d", "frame_mn06 distilled from the teacher", sizes.demo_train, student)
        add("d", "frame_mn06 without distillation (= a)", sizes.demo_train, base)
    return results


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| row | setting | training soundscapes | PSDS1 | PSDS1 macro | event-F1 micro / macro | train wall s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['row']} | {r['setting']} | {r['train_soundscapes']} | {r['psds1']:.3f} | {r['psds1_macro']:.3f} "
            f"| {r['event_f1_micro']:.3f} / {r['event_f1_macro']:.3f} | {r['train_wall_s']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of a few minutes")
    p.add_argument("--rows", default="a,b,c,d", help="rows to run: a,b,c,d (default all)")
    p.add_argument("--epochs", type=int, help="training epochs of every run (default 20, quick 1)")
    p.add_argument("--labels", metavar="N,N", help="training soundscapes of the transfer task (default 20,50,200)")
    p.add_argument("--transfer-lr", type=float, help="learning rate of preset full in (b)/(c) (default the preset's)")
    p.add_argument("--workdir", default="out/learning_benchmark", help="data and runs (reused)")
    p.add_argument("--json", metavar="FILE", help="write the results here (default WORKDIR/learning.json)")
    p.add_argument("--sources", default=str(ROOT.parent / "shared" / "soundscapes"), help="the sound sources")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the soundscapes and training")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training run (1)")
    args = p.parse_args(argv)
    unknown = set(args.rows.split(",")) - set("abcd")
    if unknown:
        p.error(f"unknown rows {sorted(unknown)}; rows are a, b, c, d")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    t0 = time.perf_counter()
    results = benchmark(args)
    table = markdown(results)
    print(table)
    out = Path(args.json) if args.json else Path(args.workdir) / "learning.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    sizes = asdict(QUICK if args.quick else FULL)
    info = {"quick": args.quick, "seed": args.seed, "rows": args.rows, "threads": args.threads, "sizes": sizes}
    info["wall_s"] = round(time.perf_counter() - t0, 1)
    out.write_text(json.dumps({**info, "results": results}, indent=1) + "\n")
    print(f"\n{len(results)} results in {info['wall_s']:.0f} s; JSON: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
