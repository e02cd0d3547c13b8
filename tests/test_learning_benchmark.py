"""benchmarks/learning.py: the three-way split by recording group, the task classes and (slow) a --quick run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import SOUNDSCAPES

ROOT = Path(__file__).resolve().parent.parent


def _load():  # noqa: ANN202 - the benchmark script as a module
    spec = importlib.util.spec_from_file_location("learning_benchmark", ROOT / "benchmarks" / "learning.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_three_way_split_keeps_each_recording_group_on_one_side() -> None:
    lb = _load()
    rows = [{"path": f"c/{g}_{i}.flac", "group": f"g{g}"} for g in range(9) for i in range(g % 3 + 1)]
    side = lb.three_way_split(rows, seed=0, key="c")
    assert set(side.values()) == {"train", "val", "test"} and len(side) == len(rows)
    by_group: dict[str, set[str]] = {}
    for r in rows:
        by_group.setdefault(r["group"], set()).add(side[r["path"]])
    assert all(len(s) == 1 for s in by_group.values())
    assert lb.three_way_split(rows, seed=0, key="c") == side  # deterministic
    with pytest.raises(SystemExit, match="fewer than three groups"):
        lb.three_way_split(rows[:3], seed=0, key="c")  # groups g0, g1 only


@pytest.mark.skipif(not (SOUNDSCAPES / "manifest.tsv").is_file(), reason="../shared/soundscapes is absent")
def test_transfer_classes_are_the_splittable_other_classes() -> None:
    lb = _load()
    manifest = [row for _, row in lb.read_tsv(SOUNDSCAPES / "manifest.tsv", ("role", "path", "label", "group"))]
    groups = lb.groups_per_class(manifest)
    transfer = [c for c in lb.TRANSFER_CANDIDATES if groups.get(c, 0) >= 3]
    assert not set(transfer) & set(lb.DEMO_CLASSES)
    assert {"Engine", "Explosion", "Pig", "Sheep"} <= set(transfer)
    assert all(groups[c] >= 3 for c in transfer) and all(
        groups.get(c, 0) < 3 for c in set(lb.TRANSFER_CANDIDATES) - set(transfer)
    )


@pytest.mark.slow
@pytest.mark.skipif(not (SOUNDSCAPES / "manifest.tsv").is_file(), reason="../shared/soundscapes is absent")
def test_quick_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "learning.py"), "--quick", "--rows", "a,d"]
    cmd += ["--workdir", str(tmp_path / "w"), "--json", str(tmp_path / "r.json"), "--sources", str(SOUNDSCAPES)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("| row | setting |")
    results = json.loads((tmp_path / "r.json").read_text())["results"]
    assert [r["row"] for r in results] == ["a", "d", "d", "d"]
    assert all(0 <= r["psds1_macro"] <= 1 and r["train_wall_s"] > 0 for r in results)
