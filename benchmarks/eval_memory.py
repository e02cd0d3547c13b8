"""Memory and time of ``ptsed.evaluation`` on a synthetic 447-class set, against sed_scores_eval called directly.

Each measurement runs in its own process (peak RSS from ``resource``), on the same synthetic data:
N clips of 10 s, the 447 AudioSet-strong class names, about 6 events per clip (AudioSet-strong eval has
about 8).

    python benchmarks/eval_memory.py [--clips 300] [--skip-reference]

Prints, per run: the metrics computed, wall time, peak RSS, and PSDS1 / PSDS2 values (they must agree).
Also prints the deviation of psds_eval (the reference implementation, with thresholds between every two
score levels) from ptsed on a smaller set.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def _data(n_clips: int, levels: int | None = 100):  # noqa: ANN202
    from ptsed.evaluation.synthetic import make_synthetic_set
    from ptsed.hub.labels import get_labels

    names = get_labels("audioset_strong_447")
    return make_synthetic_set(n_clips, len(names), seed=0, class_names=names, event_rate=6 / len(names), levels=levels)


class _Memory:
    """An in-memory score source for :func:`ptsed.evaluation.protocol.evaluate`."""

    kind, dtype, filterable = "memory", np.float32, True

    def __init__(self, scores: dict, ts: np.ndarray, labels: list[str]) -> None:
        self.scores, self.ts, self.labels, self.description = scores, ts, labels, "synthetic"

    def names(self) -> list[str]:
        return list(self.scores)

    def read(self, name: str, duration_s: float | None = None):  # noqa: ANN201
        return self.scores[name].astype(np.float32), self.ts, self.labels


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ptsed(n_clips: int, metrics: str) -> dict:
    from ptsed.evaluation.protocol import evaluate

    gt, dur, scores, names, ts = _data(n_clips)
    base = _peak_mb()
    t0 = time.perf_counter()
    res = evaluate(_Memory(scores, ts, names), gt, dur, metrics=metrics.split(","), warn=None)
    return {
        "run": f"ptsed {metrics}",
        "seconds": time.perf_counter() - t0,
        "peak_rss_mb": _peak_mb(),
        "rss_before_mb": base,
        "classes": res.summary["n_classes"],
        "psds1": res.summary.get("psds1"),
        "psds2": res.summary.get("psds2"),
    }


def run_reference(n_clips: int, which: str) -> dict:
    import sed_scores_eval
    from sed_scores_eval.base_modules.scores import create_score_dataframe

    gt, dur, scores, names, ts = _data(n_clips)
    classes = sorted({e[2] for ev in gt.values() for e in ev})
    idx = [names.index(c) for c in classes]
    dfs = {c: create_score_dataframe(s[:, idx].astype(np.float32), ts, classes) for c, s in scores.items()}
    base = _peak_mb()
    t0 = time.perf_counter()
    if which == "psds1":
        kw = dict(dtc_threshold=0.7, gtc_threshold=0.7, cttc_threshold=None, alpha_ct=0, alpha_st=1)
    else:
        kw = dict(dtc_threshold=0.1, gtc_threshold=0.1, cttc_threshold=0.3, alpha_ct=0.5, alpha_st=1)
    value = sed_scores_eval.intersection_based.psds(dfs, gt, dur, **kw)[0]
    return {
        "run": f"sed_scores_eval {which}",
        "seconds": time.perf_counter() - t0,
        "peak_rss_mb": _peak_mb(),
        "rss_before_mb": base,
        "classes": len(classes),
        which: float(value),
    }


def reference_deviation() -> list[dict]:
    """psds_eval with a threshold between every two score levels vs ptsed (should be ~1e-16)."""
    import psds_eval.psds as pe
    from sed_scores_eval.base_modules.scores import create_score_dataframe
    from sed_scores_eval.intersection_based.reference import approximate_psds

    from ptsed.evaluation.metrics import PSDS1, PSDS2, psds
    from ptsed.evaluation.scores import ScoreStore
    from ptsed.evaluation.synthetic import make_synthetic_set

    class Shim:  # psds_eval 0.5.3 calls int() on a (1, 1) array, an error with numpy 2
        def __getattr__(self, n):  # noqa: ANN001, ANN204
            return getattr(np, n)

        @staticmethod
        def argwhere(a):  # noqa: ANN001, ANN205
            o = np.argwhere(a)
            return o.reshape(()) if o.size == 1 else o

    pe.np = Shim()
    out = []
    for levels, n_thr in ((50, None), (None, 200)):
        gt, dur, scores, names, ts = make_synthetic_set(20, 5, seed=3, levels=levels)
        store = ScoreStore(names, dtype=np.float64)
        for c, s in scores.items():
            store.add(c, s, ts)
        store.finalize()
        thr = (
            np.round(np.arange(0.5 / levels, 1, 1 / levels), 4)
            if levels
            else np.round(np.linspace(0.0025, 0.9975, n_thr), 4)
        )
        dfs = {c: create_score_dataframe(s, ts, names) for c, s in scores.items()}
        for name, st in (("psds1", PSDS1), ("psds2", PSDS2)):
            ours = psds(store, gt, dur, st).value
            with contextlib.redirect_stdout(io.StringIO()):
                ref = approximate_psds(
                    dfs, gt, dur, thresholds=thr, dtc_threshold=st.dtc_threshold, gtc_threshold=st.gtc_threshold,
                    cttc_threshold=st.cttc_threshold, alpha_ct=st.alpha_ct, alpha_st=st.alpha_st,
                )[0]  # fmt: skip
            out.append({
                "scores": f"{levels} levels" if levels else "continuous",
                "thresholds": len(thr),
                "metric": name,
                "ptsed": ours,
                "psds_eval": float(ref),
                "difference": ours - float(ref),
            })  # fmt: skip
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=300)
    parser.add_argument("--skip-reference", action="store_true", help="do not run sed_scores_eval directly")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, what = args.child
        res = run_ptsed(args.clips, what) if kind == "ptsed" else run_reference(args.clips, what)
        print(json.dumps(res))
        return 0
    runs = [
        ("ptsed", "psds1"),
        ("ptsed", "psds1,psds2"),
        ("ptsed", "psds1,psds2,pauroc,collar_f1,segment_f1,frame_map"),
    ]
    if not args.skip_reference:
        runs += [("reference", "psds1"), ("reference", "psds2")]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for kind, what in runs:
        cmd = [sys.executable, __file__, "--clips", str(args.clips), "--child", kind, what]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode:
            print(f"{kind} {what}: failed\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        vals = ", ".join(f"{k}={r[k]:.6f}" for k in ("psds1", "psds2") if r.get(k) is not None)
        print(f"{r['run']:<70} {r['classes']} classes  {r['seconds']:7.1f} s  peak RSS {r['peak_rss_mb']:7.0f} MB "
              f"(data {r['rss_before_mb']:.0f} MB)  {vals}")  # fmt: skip
    for row in reference_deviation():
        head = f"psds_eval vs ptsed, {row['scores']}, {row['thresholds']} thresholds, {row['metric']}:"
        print(f"{head} ptsed {row['ptsed']:.6f}  psds_eval {row['psds_eval']:.6f}  difference {row['difference']:+.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
