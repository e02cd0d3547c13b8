#!/usr/bin/env python
"""Build the demo model's training and validation soundscapes from the offline sound sources.

Reads ``SOURCES/manifest.tsv`` (default ``../shared/soundscapes``), splits the clips of the ten demo classes
and the backgrounds into a training and a validation side by their ``group`` column (every group on one side,
so variants of one recording never straddle the split), and runs :func:`ptsed.data.synth.synthesize` on each
side with fixed seeds. Output (``--output``, default ``out/demo_data``)::

    train/audio/soundscape_00000.wav ...  train/labels.tsv  train/durations.tsv  train/sources.tsv
    val/...                                (the same for the validation side)
    classes.txt        the ten labels, one per line (the class order for training)
    splits.tsv         every manifest row used for drawing, with its side (train/val)
    ATTRIBUTION.tsv    every clip that went into a soundscape: side, role, path, label, Debian package,
                       source file in the package, licence, group, and how often it was used
    README.md          what this is, the command that made it and the licences

Run from the repository root::

    python recipes/demo_data.py                           # 600 training and 150 validation soundscapes
    python recipes/demo_data.py ../shared/soundscapes --train 600 --val 150 --seed 0 --output out/demo_data
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from ptsed.data.synth import synthesize
from ptsed.data.tables import read_tsv, write_tsv

DEMO_CLASSES = [
    "Speech",
    "Music",
    "Walk, footsteps",
    "Beep, bleep",
    "Bird vocalization, bird call, bird song",
    "Hammer",
    "Cattle, bovinae",
    "Gunshot, gunfire",
    "Horse",
    "Chicken, rooster",
]
"""The ten classes with enough distinct recordings (``../shared/soundscapes/README.md``), AudioSet names."""


def split_groups(rows: list[dict[str, str]], fraction: float, rng: np.random.Generator) -> set[str]:
    """Groups for the validation side: whole groups, taken in random order when they bring the validation
    share closer to ``fraction`` of the clips; at least one group on each side."""
    sizes = Counter(r["group"] for r in rows)
    groups = sorted(sizes)
    rng.shuffle(groups)
    target = fraction * sum(sizes.values())
    val: set[str] = set()
    have = 0
    for g in groups:
        if abs(have + sizes[g] - target) < abs(have - target) and len(val) < len(groups) - 1:
            val.add(g)
            have += sizes[g]
    if not val:  # every group is far larger than the target: take the smallest
        val.add(min(groups, key=lambda g: (sizes[g], g)))
    return val


def make_split(manifest: list[dict[str, str]], classes: list[str], fraction: float, seed: int) -> dict[str, str]:
    """Side (``train``/``val``) of every manifest path used for drawing, per class and for the backgrounds."""
    rng = np.random.default_rng(seed)
    side: dict[str, str] = {}
    pools = [[r for r in manifest if r["role"] == "fg" and r["label"] == c] for c in classes]
    pools.append([r for r in manifest if r["role"] == "bg"])
    for rows in pools:
        if len({r["group"] for r in rows}) < 2:
            raise SystemExit(f"cannot split {rows[0]['label'] or 'backgrounds'!r}: fewer than two groups")
        val = split_groups(rows, fraction, rng)
        for r in rows:
            side[r["path"]] = "val" if r["group"] in val else "train"
    return side


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("sources", nargs="?", default="../shared/soundscapes", help="the sound sources folder")
    p.add_argument("--output", default="out/demo_data", help="output folder (default out/demo_data)")
    p.add_argument("--train", type=int, default=600, help="training soundscapes (600)")
    p.add_argument("--val", type=int, default=150, help="validation soundscapes (150)")
    p.add_argument(
        "--test",
        type=int,
        default=0,
        help="held-out test soundscapes (0: none). The held-out groups become the test side, and the validation\n"
        "soundscapes are new mixtures of the training recordings (they pick the checkpoint only)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the split (training: seed, validation: seed + 1, test: seed + 2)"
    )
    p.add_argument("--val-fraction", type=float, default=0.25, help="share of each class's clips for validation")
    p.add_argument("--duration", type=float, default=10.0, help="soundscape length in seconds (10)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = p.parse_args(argv)

    src = Path(args.sources)
    out = Path(args.output)
    manifest = [row for _, row in read_tsv(src / "manifest.tsv", ("role", "path", "label", "group", "license"))]
    side = make_split(manifest, DEMO_CLASSES, args.val_fraction, args.seed)
    if args.test > 0:  # the held-out groups score only; validation mixes training recordings
        side = {path: "test" if s == "val" else s for path, s in side.items()}
    by_path = {(src / r["path"]).resolve(): r for r in manifest}
    out.mkdir(parents=True, exist_ok=True)
    columns = ["side", "role", "path", "class", "label", "package", "source", "license", "group", "duration"]
    chosen = sorted((r for r in manifest if r["path"] in side), key=lambda r: (side[r["path"]], r["path"]))
    write_tsv(out / "splits.tsv", columns, [[side[r["path"]]] + [r.get(c, "") for c in columns[1:]] for r in chosen])

    attribution = []
    summary: dict = {"sources": str(src), "classes": DEMO_CLASSES, "duration_s": args.duration, "sides": {}}
    sides = [("train", args.train, args.seed), ("val", args.val, args.seed + 1)]
    if args.test > 0:
        sides.append(("test", args.test, args.seed + 2))
    for name, count, seed in sides:
        pool = "train" if name == "val" and args.test > 0 else name
        files = [src / path for path, s in side.items() if s == pool]
        t0 = time.perf_counter()
        result = synthesize(
            src / "sources" / "foreground",
            src / "sources" / "background",
            out / name,
            count,
            seed,
            duration_s=args.duration,
            classes=src / "classes.tsv",
            only=DEMO_CLASSES,
            files=files,
            overwrite=args.overwrite,
        )
        uses = Counter(Path(r["source"]).resolve() for _, r in read_tsv(result.sources_tsv, ("source",)))
        for path in sorted(uses, key=lambda q: by_path[q]["path"]):
            row = by_path[path]
            attribution.append([name] + [row.get(c, "") for c in columns[1:]] + [uses[path]])
        labels = Counter(r["event_label"] for _, r in read_tsv(result.labels_tsv, ("event_label",)))
        missing = [c for c in DEMO_CLASSES if c not in labels]
        if missing:
            print(f"warning: no {', '.join(missing)} events in {name}", file=sys.stderr)
        summary["sides"][name] = {
            "soundscapes": len(result.files),
            "events": result.num_events,
            "events_per_class": dict(sorted(labels.items())),
            "seed": seed,
            "clips_available": sum(1 for f in files if by_path[f.resolve()]["role"] == "fg"),
            "backgrounds_available": sum(1 for f in files if by_path[f.resolve()]["role"] == "bg"),
            "clips_used": sum(1 for q in uses if by_path[q]["role"] == "fg"),
            "backgrounds_used": sum(1 for q in uses if by_path[q]["role"] == "bg"),
            "groups": len({by_path[f.resolve()]["group"] for f in files}),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        for problem in result.problems:
            print(f"skipped {problem}", file=sys.stderr)
    write_tsv(out / "ATTRIBUTION.tsv", columns + ["uses"], attribution)
    (out / "classes.txt").write_text("\n".join(DEMO_CLASSES) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    licenses = sorted({row[7] for row in attribution})
    (out / "README.md").write_text(
        "# ptsed demo soundscapes\n\n"
        f"Made by `python recipes/demo_data.py {' '.join(argv if argv is not None else sys.argv[1:])}` from "
        f"`{src}` (Debian-packaged game and desktop sounds, and synthetic sources).\n\n"
        f"- `train/`: {args.train} soundscapes, `val/`: {args.val} soundscapes of {args.duration:g} s, 16 kHz;\n"
        "  `labels.tsv` (DCASE strong labels), `durations.tsv`, `sources.tsv` (which clip went where).\n"
        "- Clips and backgrounds are split by their `group` (variants of one recording stay on one side); the\n"
        "  split is in `splits.tsv`.\n"
        "- `ATTRIBUTION.tsv` lists every clip used, with its Debian package, source file and licence. The licence\n"
        f"  texts are in `{src / 'licenses'}`. Licences involved: {'; '.join(licenses)}.\n"
        "  Each soundscape mixes clips under different licences; redistribute only with this attribution and\n"
        "  under the share-alike terms of the licences of the clips it contains (see `train/sources.tsv`).\n"
    )
    for name, info in summary["sides"].items():
        print(
            f"{name}: {info['soundscapes']} soundscapes, {info['events']} events, {info['clips_used']} of "
            f"{info['clips_available']} clips and {info['backgrounds_used']} backgrounds used, {info['seconds']} s"
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
