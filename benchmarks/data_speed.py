"""Speed of the data tools, each against a plain baseline measured in the same run.

- ``ptsed synth``: soundscapes per second, against writing the same number of silent PCM-16 WAVs (pure I/O);
- ``DCASEDataset``: items per second (window read, resampling check, frame targets), against ``soundfile.read``
  of the same files;
- a 10 s window of a long FLAC recording: seek-and-decode (what the datasets do) against decoding the whole file.

    python benchmarks/data_speed.py                       # sources: ../shared/soundscapes
    python benchmarks/data_speed.py --count 200 --sources /path/to/soundscapes
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from ptsed.data.dcase import DCASEDataset
from ptsed.data.synth import synthesize
from ptsed.data.windows import AudioRecord, WindowedDataset


def timed(fn) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sources", default="../shared/soundscapes")
    p.add_argument("--count", type=int, default=100)
    args = p.parse_args()
    src = Path(args.sources)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        out = tmp / "synth"
        t_synth = timed(
            lambda: synthesize(
                src / "sources/foreground",
                src / "sources/background",
                out,
                args.count,
                0,
                classes=src / "classes.tsv",
                progress=False,
            )  # fmt: skip
        )
        silent = np.zeros(160000, np.int16)
        t_io = timed(lambda: [sf.write(tmp / f"s{i}.wav", silent, 16000) for i in range(args.count)])
        print(f"synth: {args.count / t_synth:.1f} soundscapes/s ({10 * args.count / t_synth:.0f}x real time); "
              f"{t_synth / t_io:.1f}x the time of writing {args.count} silent WAVs")  # fmt: skip

        ds = DCASEDataset(out / "audio", out / "labels.tsv", durations_tsv=out / "durations.tsv")
        t_items = timed(lambda: [ds[i] for i in range(len(ds))])
        t_read = timed(lambda: [sf.read(r.path, dtype="float32") for r in ds.records])
        print(f"DCASEDataset: {len(ds) / t_items:.0f} items/s; {t_items / t_read:.2f}x the time of soundfile.read")

        long = tmp / "long.flac"
        sf.write(long, (np.random.default_rng(0).uniform(-0.3, 0.3, 600 * 16000)).astype(np.float32), 16000)
        rec = AudioRecord(long, "long.flac", 600.0)
        win = WindowedDataset([rec], [], window_s=10.0)
        picks = np.linspace(0, len(win) - 1, 5).astype(int)
        t_win = timed(lambda: [win[int(i)] for i in picks]) / len(picks)
        t_full = timed(lambda: sf.read(long, dtype="float32"))
        print(f"10 s window of a 600 s FLAC: {1000 * t_win:.1f} ms, {t_full / t_win:.0f}x faster than a full decode")


if __name__ == "__main__":
    main()
