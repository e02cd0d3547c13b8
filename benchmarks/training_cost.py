"""Cost of AudioSet-strong training per model form: training samples per second and peak memory.

Each (architecture, form) is measured in a fresh process: the full-size model of ``ptsed train
audioset-strong`` (random weights, no download) with the ``teacher`` or ``student`` preset's augmentations and
losses, on synthetic 10 s clips with (447, 250) targets (students also get teacher probabilities), for
``--steps`` optimiser steps after ``--warmup`` steps. Reported:

- ``train_clips_per_s``: clips per second through the whole training step (front-end, augmentations, forward,
  loss, backward, Adam step);
- ``eval_clips_per_s``: clips per second through the forward pass in evaluation mode;
- ``peak_mem_mib``: on CUDA ``torch.cuda.max_memory_allocated`` during training; on CPU the peak resident
  set size of the process (``ru_maxrss``, includes Python and the libraries);
- ``epoch_h``: hours for one epoch of 100,000 clips at that speed, on one device.

Usage::

    python benchmarks/training_cost.py                       # all implemented archs, both forms
    python benchmarks/training_cost.py --archs atst_frame beats --forms teacher --batch-size 64 --device cuda
    python benchmarks/training_cost.py --json cost.json      # also write the figures
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


class _Synthetic:
    """Clips of noise with sparse frame targets (and teacher probabilities for students), fixed per index."""

    def __init__(self, n: int, kd: bool) -> None:
        self.n, self.kd = n, kd

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        import torch

        g = torch.Generator().manual_seed(i)
        item = {
            "waveform": 0.1 * torch.randn(160000, generator=g),
            "strong": (torch.rand(447, 250, generator=g) > 0.98).float(),
            "mask_strong": True,
            "filename": f"clip{i}",
            "offset_s": 0.0,
            "duration_s": 10.0,
        }
        if self.kd:
            item["pseudo_strong"] = torch.rand(447, 250, generator=g)
        return item


def _measure(arch: str, form: str, batch: int, steps: int, warmup: int, device: str, precision: str) -> dict:
    import resource
    import warnings

    import lightning as L
    import torch

    from ptsed.recipes.audioset_strong import AudioSetStrongModule, build_model, load_config

    warnings.filterwarnings("ignore")
    config = load_config(form, flags={"model": arch, "start": "none"})
    model = build_model(config, pretrained=False)
    module = AudioSetStrongModule(model, config.optim, config.loss, config.augment, seed=0, total_steps=10_000)
    data = _Synthetic(batch * (warmup + steps), config.loss.distillation_loss_weight > 0)
    loader = torch.utils.data.DataLoader(data, batch_size=batch, num_workers=0)
    cuda = device.startswith("cuda")
    times: list[float] = []

    class Timer(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # noqa: ANN001, ANN202
            if cuda:
                torch.cuda.synchronize()
            self.t = time.perf_counter()
            if cuda and batch_idx == warmup:
                torch.cuda.reset_peak_memory_stats()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # noqa: ANN001, ANN202
            if cuda:
                torch.cuda.synchronize()
            if batch_idx >= warmup:
                times.append(time.perf_counter() - self.t)

    lightning_precision = {"fp32": "32-true", "fp16": "16-mixed", "bf16": "bf16-mixed"}[precision]
    trainer = L.Trainer(
        accelerator="gpu" if cuda else "cpu",
        devices=1,
        precision=lightning_precision,
        max_steps=warmup + steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[Timer()],
    )
    trainer.fit(module, loader)
    peak = (
        torch.cuda.max_memory_allocated() / 2**20 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    dev = torch.device(device)
    model = module.model.to(dev).eval()
    wave = torch.stack([data[i]["waveform"] for i in range(batch)]).to(dev)
    dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    eval_times = []
    with torch.inference_mode():
        for i in range(warmup + steps):
            if cuda:
                torch.cuda.synchronize()
            t = time.perf_counter()
            feats = model.features(wave)
            with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                model.forward_features(feats, 250)
            if cuda:
                torch.cuda.synchronize()
            if i >= warmup:
                eval_times.append(time.perf_counter() - t)
    train_rate = batch / (sum(times) / len(times))
    return {
        "arch": arch,
        "form": form,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "batch": batch,
        "device": torch.cuda.get_device_name(dev) if cuda else f"CPU ({torch.get_num_threads()} threads)",
        "precision": precision,
        "train_clips_per_s": round(train_rate, 3),
        "eval_clips_per_s": round(batch / (sum(eval_times) / len(eval_times)), 3),
        "peak_mem_mib": round(peak, 0),
        "epoch_h": round(100_000 / train_rate / 3600, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", nargs="*", help="architectures (default: all implemented)")
    p.add_argument("--forms", nargs="*", default=["student", "teacher"], choices=["student", "teacher"])
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--steps", type=int, default=3, help="measured steps")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured steps first")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--json", help="write the figures to this file")
    p.add_argument("--child", nargs=2, metavar=("ARCH", "FORM"), help=argparse.SUPPRESS)
    args = p.parse_args()

    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    precision = args.precision if args.precision != "auto" else ("fp16" if device.startswith("cuda") else "fp32")
    if args.child:
        if args.threads:
            torch.set_num_threads(args.threads)
        row = _measure(*args.child, args.batch_size, args.steps, args.warmup, device, precision)
        print("RESULT " + json.dumps(row))
        return 0

    from ptsed.models.zoo import ARCHS

    archs = args.archs or [a for a, s in ARCHS.items() if s.implemented]
    rows = []
    cols = ("params", "train clips/s", "eval clips/s", "peak MiB", "epoch h")
    print(f"{'model':12} {'form':8} " + " ".join(f"{c:>{w}}" for c, w in zip(cols, (7, 14, 13, 9, 8), strict=True)))
    for arch in archs:
        for form in args.forms:
            cmd = [sys.executable, __file__, "--child", arch, form, "--batch-size", str(args.batch_size),
                   "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", device,
                   "--precision", precision, "--threads", str(args.threads)]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(f"{arch:12} {form:8} failed: {proc.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(line[len("RESULT ") :])
            rows.append(r)
            print(
                f"{arch:12} {form:8} {r['params_m']:>6}M {r['train_clips_per_s']:>14} {r['eval_clips_per_s']:>13} "
                f"{r['peak_mem_mib']:>9.0f} {r['epoch_h']:>8}",
                flush=True,
            )
    if rows:
        print(f"device: {rows[0]['device']}, precision {rows[0]['precision']}, batch {rows[0]['batch']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
