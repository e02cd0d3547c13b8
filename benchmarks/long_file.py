"""Peak memory and time of ``ptsed detect`` on long recordings: they must stay flat and linear in length.

For each length (hours) it writes a FLAC of noise at 16 kHz (in blocks, so this script stays small), runs
``ptsed detect FILE --model NAME --output DIR --format tsv`` in a fresh process with a synthetic checkpoint
in upstream's released layout (speed and memory do not depend on the weights' values), and prints the wall
time, seconds per hour of audio and the process's peak RSS. The target: peak RSS under 2 GB for a 3-hour
file, and time per hour constant.

    python benchmarks/long_file.py                      # 1 h and 3 h, frame_mn06
    python benchmarks/long_file.py --hours 0.5,1,3 --model frame_mn10 --format tsv,scores
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from inference import REPO, _fresh_process, console_script_code, write_synthetic_release  # noqa: E402


def write_noise_flac(path: Path, seconds: float, sr: int = 16_000, block_s: float = 600.0) -> None:
    """A mono 16-bit FLAC of shaped noise (loud and quiet stretches), written block by block."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    total = int(seconds * sr)
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, format="FLAC", subtype="PCM_16") as fh:
        for start in range(0, total, int(block_s * sr)):
            n = min(int(block_s * sr), total - start)
            t = (start + np.arange(n)) / sr
            env = 0.05 + 0.4 * (np.sin(2 * np.pi * 0.05 * t) > 0.3)
            fh.write((rng.standard_normal(n) * env * 0.5).clip(-1, 1).astype(np.float32))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", default="1,3", help="file lengths in hours, comma-separated (1,3)")
    ap.add_argument("--model", default="frame_mn06", help="zoo name (frame_mn06)")
    ap.add_argument("--format", default="tsv", help="--format of ptsed detect (tsv)")
    ap.add_argument("--keep", metavar="DIR", help="keep the audio files in DIR (reused when present)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ptsed_long_"))
    audio_dir = Path(args.keep) if args.keep else tmp
    audio_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PTSED_HOME"] = str(tmp / "home")
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    labels = REPO.parent / "shared" / "labels"
    if "PTSED_LABELS_DIR" not in env and labels.is_dir():
        env["PTSED_LABELS_DIR"] = str(labels)
    os.environ.update({k: env[k] for k in ("PTSED_HOME", "PTSED_LABELS_DIR") if k in env})
    try:
        name = args.model if "." in args.model else f"{args.model}.as_strong"
        ckpt = write_synthetic_release(name, tmp / "home" / "checkpoints")
        print(f"{name}: formats {args.format}")
        print(f"{'hours':>6} {'wall s':>8} {'s per hour':>11} {'peak RSS MiB':>13} {'events':>8}")
        for hours in [float(h) for h in args.hours.split(",")]:
            wav = audio_dir / f"noise_{hours:g}h.flac"
            if not wav.exists():
                write_noise_flac(wav, hours * 3600)
            out = tmp / f"out_{hours:g}h"
            argv = ["ptsed", "detect", str(wav), "--model", name, "--checkpoint", str(ckpt), "-q"]
            argv += ["--output", str(out), "--format", args.format]
            _, wall, rss, _ = _fresh_process(console_script_code(argv), env, need_output=False)
            table = out / "events.tsv"
            events = table.read_text().count("\n") - 1 if table.exists() else -1
            print(f"{hours:6g} {wall:8.1f} {wall / hours:11.1f} {rss:13.0f} {events:8d}", flush=True)
            shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
