"""Decoder comparison: median filter + thresholds against cSEBBs, each tuned on a dev split, measured on a test split.

Data: soundscapes synthesised (``ptsed.data.synth``) from ``../shared/soundscapes`` with the 10 classes of the
shipped demo model, from the recordings of the demo's own validation side (``recipes/demo_data.py``: seed 0,
25 % of each class's recording groups), which the demo model never trained on. Those recording groups are
split again by group into a dev half and a test half, so no recording straddles dev and test (a class whose
validation side has a single group goes to test only, and keeps the defaults).

Every step runs the ``ptsed`` commands as users do (subprocesses): ``detect`` (raw frame scores of dev and
test), ``tune`` (``--decoder median`` and ``--decoder csebb``, objective ``--objective``) on dev, ``detect
--postprocess`` on the saved test scores, then ``evaluate``: PSDS1 (``psds1``, sed_scores_eval's
variance-penalised value, and ``psds1_macro``, the mean over classes) on the decoder's score files
(``scores_filtered`` with the profile's median filters, ``scores_sebb``), and the collar-based event-F1
(micro and macro) of the decoder's detections. The decoders with their default settings are rows too.

Usage (from the repository root)::

    PYTHONPATH=src python benchmarks/decoders.py --dev 100 --test 100 --workdir out/decoders
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "recipes"))
from demo_data import DEMO_CLASSES, make_split, split_groups  # noqa: E402

from ptsed.data.synth import synthesize  # noqa: E402
from ptsed.data.tables import read_tsv  # noqa: E402


def ptsed(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "ptsed", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"ptsed {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")


def build(src: Path, out: Path, counts: dict[str, int], seed: int) -> dict[str, str]:
    """``out/<side>`` soundscapes (dev, test) from the demo's validation recordings split by group."""
    manifest = [row for _, row in read_tsv(src / "manifest.tsv", ("role", "path", "label", "group"))]
    demo_side = make_split(manifest, DEMO_CLASSES, 0.25, 0)
    rng = np.random.default_rng(seed)
    side: dict[str, str] = {}
    pools = [[r for r in manifest if r["role"] == "fg" and r["label"] == c] for c in DEMO_CLASSES]
    pools.append([r for r in manifest if r["role"] == "bg"])
    for rows in pools:
        val = [r for r in rows if demo_side.get(r["path"]) == "val"]
        if len({r["group"] for r in val}) < 2:
            side.update({r["path"]: "test" for r in val})
            continue
        dev = split_groups(val, 0.5, rng)
        side.update({r["path"]: "dev" if r["group"] in dev else "test" for r in val})
    for i, (name, count) in enumerate(counts.items()):
        if (out / name / "durations.tsv").is_file():
            continue
        synthesize(
            src / "sources" / "foreground",
            src / "sources" / "background",
            out / name,
            count,
            seed * 100 + i,
            classes=src / "classes.tsv",
            only=DEMO_CLASSES,
            files=[src / p for p, s in side.items() if s == name],
            overwrite=True,
            progress=False,
        )
    return side


def evaluate(out: Path, gt: Path, durations: Path, **source: str) -> dict:
    ((kind, path),) = source.items()
    ptsed("evaluate", "--ground-truth", str(gt), "--durations", str(durations), f"--{kind}", path,
          "--median-filter", "0", "--no-plot", "--output", str(out))  # fmt: skip
    return json.loads((out / "summary.json").read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sources", default=str(ROOT.parent / "shared" / "soundscapes"))
    p.add_argument("--workdir", default="out/decoders")
    p.add_argument("--dev", type=int, default=100, help="dev soundscapes (100)")
    p.add_argument("--test", type=int, default=100, help="test soundscapes (100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--objective", default="event_f1", choices=["event_f1", "psds1"])
    p.add_argument("--json", help="write the rows as JSON here")
    args = p.parse_args(argv)
    work = Path(args.workdir)
    t0 = time.perf_counter()
    build(Path(args.sources), work / "data", {"dev": args.dev, "test": args.test}, args.seed)
    for split in ("dev", "test"):
        if not (work / split / "frames").is_dir():
            ptsed("detect", str(work / "data" / split / "audio"), "--model", "demo", "--format", "scores,npz",
                  "--output", str(work / split), "--quiet", "--device", "cpu")  # fmt: skip
    data = work / "data" / "dev"
    test = work / "data" / "test"
    profiles = {}
    for decoder in ("median", "csebb"):
        profiles[decoder] = work / f"{decoder}.json"
        ptsed("tune", "--scores", str(work / "dev" / "scores"), "--ground-truth", str(data / "labels.tsv"),
              "--durations", str(data / "durations.tsv"), "--decoder", decoder, "--objective", args.objective,
              "--output", str(profiles[decoder]))  # fmt: skip
    rows = []
    for decoder, tuned in (("median", False), ("median", True), ("csebb", False), ("csebb", True)):
        name = f"{decoder}_{'tuned' if tuned else 'default'}"
        fmt = "scores_filtered" if decoder == "median" else "scores_sebb"
        extra = ["--postprocess", str(profiles[decoder])] if tuned else []
        if decoder == "csebb" and not tuned:
            extra = ["--decoder", "csebb"]
        out = work / "runs" / name
        ptsed("detect", str(work / "test" / "frames"), *extra, "--format", f"tsv,{fmt}", "--output", str(out),
              "--overwrite", "--quiet")  # fmt: skip
        gt, dur = test / "labels.tsv", test / "durations.tsv"
        scores = evaluate(work / "eval" / f"{name}_scores", gt, dur, scores=str(out / fmt))
        dets = evaluate(work / "eval" / f"{name}_detections", gt, dur, detections=str(out / "events.tsv"))
        f1 = dets["collar_f1"]["0.5"]
        rows.append({
            "decoder": name, "psds1": scores["psds1"], "psds1_macro": scores["psds1_macro"],
            "event_f1_micro": f1["micro"], "event_f1_macro": f1["macro"],
            "clips": scores["n_clips"], "classes": scores["n_classes"],
        })  # fmt: skip
    print("| decoder | PSDS1 | PSDS1 (mean over classes) | event-F1 micro | event-F1 macro |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['decoder']} | {r['psds1']:.3f} | {r['psds1_macro']:.3f} | {r['event_f1_micro']:.3f} | "
              f"{r['event_f1_macro']:.3f} |")  # fmt: skip
    print(f"{rows[0]['clips']} test clips, {rows[0]['classes']} classes; {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
