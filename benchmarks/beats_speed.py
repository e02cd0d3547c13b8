"""Batched BEATs inference speed against the matrix-multiply rate of the same device.

The backbone's multiply-accumulates are counted with ``FlopCounterMode`` (patch and position
convolutions, linear layers, attention); its achieved rate is compared with that of a plain
``(B*496, 768) x (768, 3072)`` matrix product (the FFN's first GEMM) in the same dtype.

    python benchmarks/beats_speed.py --batch 8 --threads 2
    python benchmarks/beats_speed.py --device cuda --dtype bfloat16 --batch 64
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from ptsed.backbones.beats import build


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timeit(fn, device: torch.device, repeats: int) -> float:
    fn()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    frontend, backbone = build()
    backbone = backbone.eval().to(device)
    wave = 0.1 * torch.randn(args.batch, 160_000, device=device)
    with torch.no_grad():
        feats = frontend.to(device)(wave)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def run() -> None:
        with torch.no_grad(), autocast:
            backbone(feats)

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        backbone(feats)
    flops = counter.get_total_flops()
    a = torch.randn(args.batch * 496, 768, device=device, dtype=dtype)
    b = torch.randn(768, 3072, device=device, dtype=dtype)
    t_mm = _timeit(lambda: a @ b, device, args.repeats * 3)
    mm_rate = 2 * a.shape[0] * 768 * 3072 / t_mm
    t_fe = _timeit(lambda: frontend(wave), device, args.repeats)
    t_bb = _timeit(run, device, args.repeats)
    rate = flops / t_bb
    print(f"device {device} dtype {args.dtype} batch {args.batch} threads {torch.get_num_threads()}")
    print(f"front-end: {t_fe * 1e3:.1f} ms per batch ({args.batch * 10 / t_fe:.0f} s of audio per s)")
    print(f"backbone: {t_bb * 1e3:.1f} ms per batch, {flops / 2e9 / args.batch:.1f} GMACs per clip")
    print(f"achieved {rate / 1e9:.1f} GFLOP/s; matmul {mm_rate / 1e9:.1f} GFLOP/s; ratio {rate / mm_rate:.2f}")


if __name__ == "__main__":
    main()
