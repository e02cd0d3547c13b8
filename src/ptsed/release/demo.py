"""Building the files of the shipped ``demo`` model (:mod:`ptsed.models.demo`) from a trained checkpoint.

``python -m ptsed.release.demo export MODEL DATA OUT`` writes the fp16 checkpoint, ``ATTRIBUTION.tsv`` and
``README.md`` (``recipes/demo_train.sh`` runs it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ptsed.models.demo import DEMO_FILENAME, DEMO_NAME, write_demo_card


def export_demo(
    model_path: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    train_seconds: float | None = None,
    eval_summary: str | Path | None = None,
    eval_tuned_summary: str | Path | None = None,
    eval_untrained_summary: str | Path | None = None,
    eval_test_summary: str | Path | None = None,
    command: str = "bash recipes/demo_train.sh",
) -> Path:
    """Write the demo files from a fine-tuned checkpoint and the demo data folder.

    The backbone and head weights are stored in fp16 (half the size); the largest change of a frame probability
    this causes on a few validation soundscapes is printed.

    Args:
        model_path: ``model.pt`` written by ``ptsed finetune``.
        data_dir: the output of ``recipes/demo_data.py`` (``ATTRIBUTION.tsv``, ``summary.json``, ``val/``).
        out_dir: where the checkpoint, ``ATTRIBUTION.tsv`` and ``README.md`` go.
        train_seconds: wall time of data generation and training.
        eval_summary, eval_tuned_summary, eval_untrained_summary: ``summary.json`` of ``ptsed evaluate`` (model
            scores with a fixed threshold; detections with the tuned post-processing; the model before training).
        eval_test_summary: ``summary.json`` of ``ptsed evaluate --model`` at its defaults on the held-out test
            soundscapes (recording groups that neither training nor validation used).
        command: the command that made it (for the README).

    Returns:
        The written checkpoint.
    """
    import json

    import torch

    from ptsed.data.tables import read_tsv
    from ptsed.io.audio import load_audio
    from ptsed.models.factory import create_model, save_checkpoint

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = create_model("demo", checkpoint_path=model_path)
    extra = dict(model.checkpoint_extra)
    data_summary = json.loads((data_dir / "summary.json").read_text(encoding="utf-8"))
    evaluation = {}
    summaries = (
        ("fixed_threshold", eval_summary),
        ("tuned_postprocess", eval_tuned_summary),
        ("untrained", eval_untrained_summary),
        ("test", eval_test_summary),
    )
    for key, path in summaries:
        if path is not None and Path(path).is_file():
            evaluation[key] = _scores(json.loads(Path(path).read_text(encoding="utf-8")))

    model.name = DEMO_NAME
    model.backbone.half()  # fp16 weights; front-end buffers (mel filters, windows) stay exact
    model.head.half()
    path = save_checkpoint(
        model,
        out_dir / DEMO_FILENAME,
        training=extra.get("training"),
        demo={
            # kept, not applied: tuned on the split the README reports, and classes that learned little get
            # near-zero thresholds (false positives); `ptsed detect` uses 0.5 and 0.36 s instead
            "tuned_postprocess": extra.get("postprocess"),
            "description": f"Demo model: {model.arch} trained from random initialisation on synthetic 10 s soundscapes "
            f"of {model.num_classes} classes made from Debian-packaged sounds. Not an AudioSet model.",
            "classes": model.labels,
            "data": {k: data_summary.get(k) for k in ("sources", "duration_s", "sides")},
            "evaluation": evaluation,
            "train_seconds": train_seconds,
            "attribution": "ATTRIBUTION.tsv",
            "command": command,
        },
    )
    # what fp16 storage changes: the shipped file against the fp32 model, on a few validation soundscapes
    val_audio = sorted((data_dir / "val" / "audio").glob("*.wav"))[:8]
    waves = torch.stack([torch.from_numpy(load_audio(p, model.sample_rate)[0]) for p in val_audio])
    with torch.no_grad():
        ref = torch.sigmoid(create_model("demo", checkpoint_path=model_path)(waves).strong_logits)
        shipped = torch.sigmoid(create_model("demo", checkpoint_path=path)(waves).strong_logits)
    diff = float((shipped - ref).abs().max())
    print(f"fp16 weights change frame probabilities by at most {diff:.2e} on {len(val_audio)} validation clips")
    write_demo_card(path, model.arch, list(model.labels or []))
    # the clips the weights derive from: training and validation sides (a held-out test side only scores)
    lines = (data_dir / "ATTRIBUTION.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    side = lines[0].rstrip("\n").split("\t").index("side")
    kept = [line for line in lines[1:] if line.split("\t")[side] != "test"]
    (out_dir / "ATTRIBUTION.tsv").write_text("".join(lines[:1] + kept), encoding="utf-8")
    rows = [r for _, r in read_tsv(out_dir / "ATTRIBUTION.tsv", ("package", "license", "side"))]
    _write_readme(
        out_dir / "README.md", model.labels, rows, evaluation, train_seconds, path, command, model.arch, data_summary
    )
    size = path.stat().st_size / 1e6
    print(f"wrote {path} ({size:.1f} MB), {out_dir / 'ATTRIBUTION.tsv'}, {out_dir / 'README.md'}")
    return path


def _scores(summary: dict) -> dict:
    """PSDS1 and event-F1 figures of a ``ptsed evaluate`` summary, flattened (``collar_f1@0.5.macro``)."""
    out: dict[str, float] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k.startswith(("precision", "recall")):
                    continue
                walk(f"{prefix}@{k}" if prefix == "collar_f1" else f"{prefix}.{k}", v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and "precision" not in prefix:
            out[prefix] = float(value)

    for key in ("psds1", "psds1_macro", "collar_f1"):
        if key in summary:
            walk(key, summary[key])
    return out


def _pretty(metric: str, kind: str) -> str:
    """``collar_f1@0.5.macro`` -> ``event-F1 (macro)``; ``psds1_macro`` -> ``PSDS1 (mean over classes)``."""
    if metric.startswith("collar_f1"):
        return f"event-F1 ({metric.rsplit('.', 1)[-1]})"
    return {"psds1": "PSDS1", "psds1_macro": "PSDS1 (mean over classes)"}.get(metric, metric)


def _write_readme(
    path: Path,
    labels: list[str],
    rows: list[dict],
    evaluation: dict,
    train_seconds: float | None,
    checkpoint: Path,
    command: str,
    arch: str = "frame_mn06",
    data_summary: dict | None = None,
) -> None:
    from collections import Counter

    packages = Counter((r["package"], r["license"]) for r in rows)
    lines = [
        "# ptsed demo model",
        "",
        f"`{checkpoint.name}`: {arch} trained from random initialisation on synthetic 10 s soundscapes of "
        f"{len(labels)} classes, built from Debian-packaged game and desktop sounds (`../shared/soundscapes`) by "
        "`recipes/demo_data.py`. **It is a demo, not an AudioSet model**: it knows only these classes, and only "
        "sounds like those in its training data. It shows that ptsed's pipeline runs offline and that its "
        "training path learns.",
        "",
        "Classes (AudioSet-strong names): " + "; ".join(labels) + ".",
        "",
    ]
    sides = (data_summary or {}).get("sides") or {}
    val, test = sides.get("val") or {}, sides.get("test") or {}
    titles = {
        "fixed_threshold": "frame scores, median filter 0.28 s, threshold 0.5",
        "tuned_postprocess": "detections with per-class thresholds and median filters tuned on this split "
        "(optimistic; stored as `demo.tuned_postprocess`, not applied by `ptsed detect`)",
        "untrained": "the same model before training (random initialisation), as the first line",
    }

    def show(keys: tuple[str, ...]) -> None:
        for key in keys:
            if key in evaluation:
                shown = ", ".join(f"{_pretty(k, key)} {v:.3f}" for k, v in evaluation[key].items())
                lines.append(f"- {titles.get(key, key)}: {shown}")

    if "test" in evaluation:
        titles["test"] = "`ptsed evaluate --model demo` at its defaults (0.36 s median filter, as `ptsed detect`)"
        lines += [
            f"Scores on the {test.get('soundscapes', '')} held-out test soundscapes ({test.get('events', '')} "
            "events), built from recording groups that neither training nor validation used:",
            "",
        ]
        show(("test",))
        lines += [
            "",
            f"Scores on the {val.get('soundscapes', '')} validation soundscapes (new mixtures of the training "
            "recordings; they choose the post-processing, and the model has heard their recordings, so these figures "
            "are optimistic):",
            "",
        ]
    else:
        lines += [
            f"Scores on the {val.get('soundscapes', '')} validation soundscapes (recordings of other groups than "
            "in training):",
            "",
        ]
    show(("fixed_threshold", "tuned_postprocess", "untrained"))
    if train_seconds:
        lines.append(f"- data generation and training: {train_seconds / 60:.1f} min on CPU")
    lines += [
        "",
        f"Made by `{command}`; retrain and install with `INSTALL=1 bash recipes/demo_train.sh`.",
        "",
        "## Attribution of the training data",
        "",
        "The weights are derived from the sound clips listed in `ATTRIBUTION.tsv` (side `train`: training "
        "soundscapes; side `val`: validation soundscapes, used to pick the checkpoint and the post-processing), "
        "with their Debian package, source file and licence. Licence texts: `../shared/soundscapes/licenses/` "
        "(the Debian copyright files of the packages). Packages used:",
        "",
        "| package | licence | clips used |",
        "|---|---|---|",
    ]
    for (package, licence), n in sorted(packages.items()):
        lines.append(f"| {package} | {licence} | {n} |")
    lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ptsed.release.demo", description="Build the demo model files.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="write the demo checkpoint, ATTRIBUTION.tsv and README.md")
    p.add_argument("model", help="model.pt written by ptsed finetune")
    p.add_argument("data", help="the demo data folder (recipes/demo_data.py output)")
    p.add_argument("output", help="output folder")
    p.add_argument("--train-seconds", type=float)
    p.add_argument("--eval", help="summary.json of ptsed evaluate (model scores)")
    p.add_argument("--eval-tuned", help="summary.json of ptsed evaluate (detections, tuned post-processing)")
    p.add_argument("--eval-untrained", help="summary.json of ptsed evaluate (the model before training)")
    p.add_argument("--eval-test", help="summary.json of ptsed evaluate --model at its defaults (held-out test)")
    args = parser.parse_args(argv)
    export_demo(
        args.model,
        args.data,
        args.output,
        train_seconds=args.train_seconds,
        eval_summary=args.eval,
        eval_tuned_summary=args.eval_tuned,
        eval_untrained_summary=args.eval_untrained,
        eval_test_summary=args.eval_test,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
