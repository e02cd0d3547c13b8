"""Inference speed and memory of ptsed against upstream's procedure and the device's matmul rate.

For every selected model (synthetic weights in upstream's released layout; real checkpoints cannot be
downloaded here, and speed does not depend on the values) it prints:

- seconds of compute per 10 s of audio and the real-time factor (RTF = compute time / audio time), for
  10 s and 10 min inputs, at batch 1 and batched: ptsed's default (10 s windows, 5 s hop, so twice the
  windows of upstream) and ptsed without overlap (``--hop 10``, the same windows as upstream);
- the baseline in the same run: upstream ``inference.py``'s procedure (non-overlapping 10 s chunks, one
  at a time, the model built and its weights loaded the plain way: random init + ``torch.load`` +
  ``load_state_dict`` copy);
- model FLOPs per 10 s window as ``torch.utils.flop_counter`` counts them (matmuls and convolutions),
  the achieved GFLOP/s and its fraction of a large fp32 (or ``--precision``) matmul on the same device,
  measured before and after each block of rows (the larger counts: a shared machine's rate drifts);
- time from process start to the first result of ``ptsed detect`` on a 60 s file with the checkpoint
  already in the cache (a fresh ``python`` process; the cache is a temporary ``$PTSED_HOME``), and the
  peak RSS of that process (also for a 10 min file: memory must not grow with the file's length).

    python benchmarks/inference.py --models frame_mn06,atst_frame --sizes 10,60
    python benchmarks/inference.py --device cuda --precision bf16 --batch-size 64
    python benchmarks/inference.py --models beats --no-startup --json beats.json
    python benchmarks/inference.py --backends torch,onnx --sizes 10,600    # ONNX Runtime against torch

With ``--backends torch,onnx`` every model also runs through ONNX Runtime (``Predictor(backend="onnx")``: the
same windows, the graph exported on first use, which is not timed) at batch 1 and batched (and int8 with
``--int8``: ONNX Runtime's dynamic quantisation); the column ``x torch`` is the speed against torch fp32 at
the same batch size, each row says the largest deviation of a frame probability from torch fp32, and the
fresh-process run adds ``--backend onnx``.

Timings on a shared machine vary with its load; compare rows of one run, not across runs, and use
``--repeats`` (the fastest of N runs counts) to damp the noise.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _sync(device) -> None:  # noqa: ANN001
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_gflops(device, dtype, n: int, repeats: int = 5) -> float:  # noqa: ANN001
    """Best rate of an (n, n) x (n, n) matrix product, in GFLOP/s (2 n^3 flops)."""
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def window_flops(model, device) -> float:  # noqa: ANN001
    """FLOPs of one 10 s window (batch 1) as FlopCounterMode counts them (matmuls, convolutions)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, int(model.window_s * model.sample_rate), device=device)
    # no_grad, not inference_mode: FlopCounterMode cannot read weight-norm parametrizations (BEATs) under it
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return float(counter.get_total_flops())


def write_synthetic_release(name: str, folder: Path) -> Path:
    """A checkpoint of random weights in upstream's released layout, named as the release file."""
    import torch

    import ptsed
    from ptsed.hub.checkpoint import ptsed_to_released
    from ptsed.models.zoo import get_pretrained_spec

    spec = get_pretrained_spec(name)
    model = ptsed.create_model(name, pretrained=False)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("frontend.")}
    path = folder / spec.filename
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ptsed_to_released(spec.arch, state), path)
    return path


def baseline_load(name: str, checkpoint: Path):  # noqa: ANN201
    """Upstream's way: build the model (random init), torch.load the file whole, copy the weights in."""
    import torch

    from ptsed.hub.checkpoint import released_to_ptsed
    from ptsed.models.sed_model import SEDModel
    from ptsed.models.zoo import get_pretrained_spec

    spec = get_pretrained_spec(name)
    frontend, backbone = spec.arch.build_parts()
    model = SEDModel(frontend, backbone, spec.head, name=spec.name, vocabulary=spec.vocabulary, arch=spec.arch.name)
    state = released_to_ptsed(spec.arch, torch.load(checkpoint, map_location="cpu", weights_only=True))
    model.load_state_dict(state, strict=False)
    return model.eval()


def baseline_run(model, x, device, keep: bool = False):  # noqa: ANN001, ANN201
    """upstream inference.py: 10 s chunks one at a time, last one zero-padded; returns seconds, or with
    ``keep`` the (1, K, T) probabilities."""
    import torch

    seg = int(model.window_s * model.sample_rate)
    t0 = time.perf_counter()
    outs = []
    with torch.no_grad():
        for i in range(0, x.shape[0], seg):
            chunk = torch.from_numpy(x[i : i + seg])[None].to(device)
            if chunk.shape[1] < seg:
                chunk = torch.nn.functional.pad(chunk, (0, seg - chunk.shape[1]))
            outs.append(model(chunk).strong_logits)
        probs = torch.sigmoid(torch.cat(outs, dim=2)).cpu()
    _sync(device)
    return probs if keep else time.perf_counter() - t0


def ptsed_run(predictor, x) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    predictor.frame_scores(x, predictor.sample_rate)
    _sync(predictor.device)
    return time.perf_counter() - t0


def signal(seconds: float, sr: int = 16_000):  # noqa: ANN201
    import numpy as np

    rng = np.random.default_rng(0)
    return (rng.standard_normal(int(seconds * sr)) * 0.1).astype(np.float32)


PEAK_RSS_CODE = """
def _peak_rss_kib():
    # VmHWM: this process's own peak (ru_maxrss of a child carries its parent's peak over fork and exec)
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
"""
"""Code for a fresh process: ``_peak_rss_kib()``, its peak resident set size in KiB."""

UPSTREAM_PROCEDURE = (
    PEAK_RSS_CODE
    + """
import sys
sys.path.insert(0, {bench!r})
import numpy as np
import torch
try:
    import librosa  # upstream inference.py reads audio with librosa
except ImportError:
    librosa = None
import scipy.ndimage
from inference import baseline_load, baseline_run

if librosa is not None:
    x, _ = librosa.load({wav!r}, sr=16000, mono=True)
else:
    import soundfile as sf
    x, _ = sf.read({wav!r}, dtype="float32")
model = baseline_load({name!r}, {ckpt!r})
probs = baseline_run(model, x, torch.device("cpu"), keep=True)[0].T.numpy()
filtered = scipy.ndimage.median_filter(probs, size=(9, 1))
frames, classes = np.nonzero(filtered > 0)
print("first", frames[:1], classes[:1], "librosa" if librosa is not None else "soundfile", flush=True)
print("MAXRSS", _peak_rss_kib(), file=sys.stderr)
"""
)


def upstream_startup(name: str, ckpt: Path, wav: Path, env: dict[str, str]) -> tuple[float, float, float, str]:
    """A fresh process following upstream ``inference.py``: import torch (and librosa when installed),
    read the file, build the model with random init, ``torch.load`` the checkpoint whole and copy it in,
    run 10 s chunks one at a time, median-filter and threshold. Returns (seconds to the result, seconds to
    exit, peak RSS in MiB, the audio reader used)."""
    code = UPSTREAM_PROCEDURE.format(bench=str(Path(__file__).parent), wav=str(wav), name=name, ckpt=str(ckpt))
    t_first, t_exit, rss, first = _fresh_process(code, env)
    return t_first, t_exit, rss, first.split()[-1]


def startup(
    name: str, wav: Path, env: dict[str, str], device: str, extra: tuple[str, ...] = ()
) -> tuple[float, float, float]:
    """A fresh process running the ``ptsed`` console script, ``ptsed detect wav --model name [extra]``:
    (seconds to the first printed result, seconds to exit, peak RSS in MiB)."""
    argv = ["ptsed", "detect", str(wav), "--model", name, "--device", device, "-q", "--threshold", "0", *extra]
    return _fresh_process(console_script_code(argv), env)[:3]


def console_script_code(argv: list[str]) -> str:
    """``python -c`` code that runs ``ptsed.cli.main.cli`` (what the ``ptsed`` command runs) with ``argv``
    and prints its peak RSS on the way out (also when the command ends with ``os._exit``)."""
    return PEAK_RSS_CODE + (
        "import os, sys\n"
        "_exit = os._exit\n"
        "def _report_and_exit(code):\n"
        "    print('MAXRSS', _peak_rss_kib(), file=sys.stderr, flush=True)\n"
        "    _exit(code)\n"
        "os._exit = _report_and_exit\n"
        f"sys.argv = {argv!r}\n"
        "from ptsed.cli.main import cli\n"
        "try:\n"
        "    cli()\n"
        "except SystemExit as stop:\n"
        "    sys.stdout.flush()\n"
        "    _report_and_exit(stop.code or 0)\n"
    )


def _fresh_process(code: str, env: dict[str, str], need_output: bool = True) -> tuple[float, float, float, str]:
    """Run ``python -c code``: (seconds to its first stdout line, seconds to exit, peak RSS in MiB, the line);
    a non-zero exit, or no output when ``need_output``, raises."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    t_first = time.perf_counter() - t0
    out, err = proc.communicate()
    t_exit = time.perf_counter() - t0
    if proc.returncode != 0 or (need_output and not first):
        raise RuntimeError(f"the fresh process failed ({proc.returncode}): {err[-2000:]}")
    rss = next((int(line.split()[1]) for line in err.splitlines() if line.startswith("MAXRSS")), 0)
    return t_first, t_exit, rss / 1024, first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="comma-separated zoo names (default: every implemented architecture)")
    ap.add_argument("--sizes", default="10,600", help="input lengths in seconds (default 10,600)")
    ap.add_argument(
        "--batch-size", type=int, help="batched runs use this many windows (default: ptsed's for the device)"
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per row; the fastest counts (1)")
    ap.add_argument("--no-baseline", action="store_true", help="skip upstream's procedure")
    ap.add_argument("--int8", action="store_true", help="also time the int8 CPU mode and its deviation")
    ap.add_argument("--no-startup", action="store_true", help="skip the fresh-process runs")
    ap.add_argument("--rss-sizes", default="60,600", help="file lengths (s) of the fresh-process runs (60,600)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    ap.add_argument("--backends", default="torch", help="comma-separated: torch (always run) and onnx [torch]")
    args = ap.parse_args()

    t_script = time.perf_counter()
    backends = [b for b in args.backends.split(",") if b and b != "torch"]
    if any(b != "onnx" for b in backends):
        ap.error(f"--backends takes torch and onnx, not {args.backends!r}")
    home = Path(os.environ["PTSED_HOME"])  # a temporary cache, set up in __main__
    shared_labels = REPO.parent / "shared" / "labels"
    if "PTSED_LABELS_DIR" not in os.environ and shared_labels.is_dir():
        os.environ["PTSED_LABELS_DIR"] = str(shared_labels)

    import numpy as np
    import soundfile as sf
    import torch

    from ptsed.inference.predictor import AUTO_BATCH, PRECISIONS, Predictor, resolve_device
    from ptsed.inference.windows import window_starts
    from ptsed.models.zoo import ARCHS

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    names = args.models.split(",") if args.models else [a.name for a in ARCHS.values() if a.implemented]
    sizes = [float(s) for s in args.sizes.split(",")]
    dtype = PRECISIONS[args.precision] or torch.float32
    n = 2048 if device.type == "cpu" else 8192
    mm32 = matmul_gflops(device, torch.float32, n)
    mm = mm32 if dtype == torch.float32 else matmul_gflops(device, dtype, n)
    batch = args.batch_size or AUTO_BATCH.get(device.type, 16)
    report: dict = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else os.uname().machine,
        "threads": torch.get_num_threads(),
        "precision": args.precision,
        "batch_size": batch,
        "matmul_gflops_fp32": mm32,
        "matmul_gflops": mm,
        "models": {},
    }
    print(f"device {report['device']} ({report['device_name']}), {report['threads']} threads, {args.precision}")
    print(f"reference: {n}x{n} matmul {mm32:.1f} GFLOP/s fp32" + ("" if mm == mm32 else f", {mm:.1f} {args.precision}"))

    for name in names:
        spec_name = name if "." in name else f"{name}.as_strong"
        ckpt = write_synthetic_release(spec_name, home / "checkpoints")
        res: dict = {"checkpoint_mb": ckpt.stat().st_size / 2**20}
        t0 = time.perf_counter()
        base_model = baseline_load(spec_name, ckpt).to(device)
        res["baseline_load_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        from ptsed.models.factory import create_model

        model = create_model(spec_name, checkpoint_path=ckpt, device=device)
        res["ptsed_load_s"] = time.perf_counter() - t0
        flops = window_flops(model, device)
        res["gflop_per_window"] = flops / 1e9
        print(
            f"\n== {name}: {flops / 1e9:.1f} GFLOP per 10 s window; load {res['ptsed_load_s']:.2f} s "
            f"(upstream way {res['baseline_load_s']:.2f} s)"
        )
        print(
            f"{'input':>7} {'run':<28} {'windows':>7} {'s/10s':>8} {'RTF':>8} {'x real':>7} {'GFLOP/s':>8} {'%mm':>5}"
        )
        runs = {
            "ptsed batch 1": dict(batch_size=1),
            f"ptsed batch {batch}": dict(batch_size=batch),
            f"ptsed batch {batch}, hop 10 s": dict(batch_size=batch, hop_s=10.0),
        }
        if args.int8:
            runs[f"ptsed batch {batch}, int8"] = dict(batch_size=batch, int8=True)
        for backend in backends:  # fp32 on ONNX Runtime (exported on first use: during the untimed warm-up)
            runs[f"{backend} batch 1"] = dict(batch_size=1, backend=backend, precision="fp32")
            runs[f"{backend} batch {batch}"] = dict(batch_size=batch, backend=backend, precision="fp32")
            if args.int8:
                runs[f"{backend} batch {batch}, int8"] = dict(batch_size=batch, backend=backend, int8=True)
        torch_fp32 = {1: "ptsed batch 1", batch: f"ptsed batch {batch}"}
        predictors = {
            label: Predictor(model, device=device, **{"precision": args.precision, **kw}) for label, kw in runs.items()
        }
        for seconds in sizes:
            x = signal(seconds)
            warm = x if seconds <= 60 else signal(60.0)  # same shapes: one-time kernel set-up is not timed
            rows = []
            ref_before = matmul_gflops(device, dtype, n)  # the machine's rate drifts: measured around each block
            if not args.no_baseline:
                baseline_run(base_model, warm, device)
                wall = min(baseline_run(base_model, x, device) for _ in range(args.repeats))
                rows.append(("upstream procedure (batch 1)", wall, int(np.ceil(seconds / 10))))
            for label, pred in predictors.items():
                ptsed_run(pred, warm)
                hop = pred.hop_frames * pred.frame_samples
                wins = len(window_starts(x.size, pred.window_samples, hop, pred.frame_samples))
                rows.append((label, min(ptsed_run(pred, x) for _ in range(args.repeats)), wins))
            ref_after = matmul_gflops(device, dtype, n)
            ref = max(ref_before, ref_after)
            res.setdefault("matmul_gflops", {})[f"{seconds:g}s"] = [ref_before, ref_after]
            walls = {label: wall for label, wall, _ in rows}
            for label, wall, wins in rows:
                gflops = wins * flops / wall / 1e9
                row = {
                    "windows": wins,
                    "seconds": wall,
                    "s_per_10s": wall / seconds * 10,
                    "rtf": wall / seconds,
                    "gflops": gflops,
                    "fraction_of_matmul": gflops / ref,
                }
                res.setdefault("runs", {}).setdefault(f"{seconds:g}s", {})[label] = row
                against = "" if args.precision != "fp32" else torch_fp32.get(runs.get(label, {}).get("batch_size"))
                ratio = walls[against] / wall if against in walls and label in runs else float("nan")
                if label.split()[0] in backends:
                    row["speedup_vs_torch_fp32"] = ratio
                    exact = predictors[against].frame_scores(x, 16_000).scores if against else None
                    if exact is not None:
                        row["max_prob_deviation"] = float(np.abs(predictors[label].frame_scores(x, 16_000).scores
                                                                 - exact).max())  # fmt: skip
                print(
                    f"{seconds:6g}s {label:<28} {wins:7d} {row['s_per_10s']:8.3f} {row['rtf']:8.4f} "
                    f"{1 / row['rtf']:7.1f} {gflops:8.1f} {100 * row['fraction_of_matmul']:5.1f}"
                    + (f" {ratio:6.2f}x torch" if label.split()[0] in backends else "")
                    + (f", max |dp| {row['max_prob_deviation']:.2g}" if "max_prob_deviation" in row else "")
                )
            print(f"{'':8}(%mm against {ref:.1f} GFLOP/s: matmul before {ref_before:.1f}, after {ref_after:.1f})")
            if args.int8:
                exact = predictors[f"ptsed batch {batch}"].frame_scores(x, 16_000).scores
                quick = predictors[f"ptsed batch {batch}, int8"].frame_scores(x, 16_000).scores
                dev = np.abs(quick - exact)
                dev_row = {"max": float(dev.max()), "mean": float(dev.mean())}
                res.setdefault("int8_deviation", {})[f"{seconds:g}s"] = dev_row
                print(f"{'':8}int8: frame probabilities change by at most {dev.max():.4f} (mean {dev.mean():.5f})")
        del base_model, model, predictors
        if not args.no_startup:
            env = dict(os.environ)
            env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
            for seconds in [float(s) for s in args.rss_sizes.split(",")]:
                wav = home / f"input_{seconds:g}s.wav"
                if not wav.exists():
                    sf.write(wav, signal(seconds), 16_000)
                if "startup" not in res:  # first use of the checkpoint: the cache records it (a 1 s file)
                    first_use = home / "first_use.wav"
                    sf.write(first_use, signal(1.0), 16_000)
                    startup(spec_name, first_use, env, args.device)
                    res["startup"] = {}
                modes = {"default": (), "upstream-chunking": ("--upstream-chunking",)}
                if seconds != min(float(s) for s in args.rss_sizes.split(",")):
                    modes = {"default": ()}
                for backend in backends:  # the first use (the 1 s file above, or this) exports the graph
                    modes[f"default, --backend {backend}"] = ("--backend", backend)
                    if len(res["startup"]) == 0 and seconds == min(float(s) for s in args.rss_sizes.split(",")):
                        startup(spec_name, home / "first_use.wav", env, args.device, ("--backend", backend))
                row: dict = {}
                for mode, extra in modes.items():
                    t_first, t_exit, rss = startup(spec_name, wav, env, args.device, extra)
                    row[mode] = {"first_result_s": t_first, "exit_s": t_exit, "peak_rss_mib": rss}
                    print(
                        f"fresh process, {seconds:g} s file, ptsed {mode}: first result after {t_first:.2f} s, "
                        f"exit {t_exit:.2f} s, peak RSS {rss:.0f} MiB"
                    )
                if len(modes) > 1 and not args.no_baseline and device.type == "cpu":
                    # once untimed, as for ptsed: librosa's first use compiles and caches numba code
                    upstream_startup(spec_name, ckpt, home / "first_use.wav", env)
                    t_first, t_exit, rss, reader = upstream_startup(spec_name, ckpt, wav, env)
                    row["upstream procedure"] = {
                        "first_result_s": t_first,
                        "exit_s": t_exit,
                        "peak_rss_mib": rss,
                        "audio_reader": reader,
                    }
                    ours = row["upstream-chunking"]["exit_s"]
                    row["speedup_upstream_chunking"] = t_exit / ours
                    row["speedup_default"] = t_exit / row["default"]["exit_s"]
                    print(
                        f"fresh process, {seconds:g} s file, upstream procedure ({reader}): result after "
                        f"{t_first:.2f} s, exit {t_exit:.2f} s, peak RSS {rss:.0f} MiB; ptsed is "
                        f"{row['speedup_upstream_chunking']:.2f}x faster with --upstream-chunking, "
                        f"{row['speedup_default']:.2f}x with its default windows"
                    )
                res["startup"][f"{seconds:g}s"] = row
        report["models"][name] = res
    report["benchmark_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report["benchmark_wall_s"] = time.perf_counter() - t_script
    print(f"\nthis process: peak RSS {report['benchmark_peak_rss_mib']:.0f} MiB, {report['benchmark_wall_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    import atexit
    import shutil

    _home = Path(tempfile.mkdtemp(prefix="ptsed_bench_"))
    os.environ["PTSED_HOME"] = str(_home)
    atexit.register(shutil.rmtree, _home, ignore_errors=True)  # synthetic checkpoints and test files
    main()
