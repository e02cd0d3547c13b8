"""Data-parallel training: 2 CPU processes (gloo, Lightning DDP) keep bit-identical weights after every step, and
the evaluation gathers the predictions of both ranks, giving the numbers of a single-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ptsed.cli.main import main
from ptsed.core.errors import PtsedError
from ptsed.train import ddp
from recipe_data import EVAL_IDS, make_audioset, recipe_yaml, tiny_weak_checkpoint


def test_gathering_is_the_identity_in_one_process() -> None:
    got: list[int] = []
    assert ddp.gather_to_rank0([1, 2, 3], got.append, chunk=2) == 3 and got == [1, 2, 3]
    assert ddp.broadcast_object({"a": 1}) == {"a": 1}
    assert ddp.all_sum([1.5, 2]) == [1.5, 2.0]
    assert ddp.rank_and_world() == (0, 1)


def test_weight_sync_check_raises_when_ranks_differ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    digest = ddp.weights_digest(model)
    with torch.no_grad():
        model.bias[0] += 1e-7  # one float32 ulp-sized change is a different digest
    assert ddp.weights_digest(model) != digest

    class Trainer:
        global_step = 1
        is_global_zero = True

    monkeypatch.setattr(ddp, "is_distributed", lambda: True)
    monkeypatch.setattr(ddp, "rank_and_world", lambda: (0, 2))
    others = {"value": None}

    def fake_gather(out: list, obj: str) -> None:
        out[0], out[1] = obj, others["value"] or obj

    monkeypatch.setattr(torch.distributed, "all_gather_object", fake_gather)
    check = ddp.WeightSyncCheck(1, tmp_path / "sync.jsonl")
    check.on_train_batch_end(Trainer(), model, None, None, 0)  # both ranks agree
    others["value"] = digest
    Trainer.global_step = 2
    with pytest.raises(PtsedError, match=r"ranks \[1\] hold other weights than rank 0 after step 2"):
        check.on_train_batch_end(Trainer(), model, None, None, 1)
    lines = [json.loads(x) for x in (tmp_path / "sync.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2] and lines[1]["digests"][1] == digest


def test_two_process_ddp_training_and_gathered_evaluation(tmp_path: Path) -> None:
    data = make_audioset(tmp_path / "data")
    start = tiny_weak_checkpoint(tmp_path / "weak.pt")
    config = recipe_yaml(tmp_path / "run.yaml", data, start, eval_batch_size=1)
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "ptsed", "train", "audioset-strong", "--preset", "teacher", "--config", str(config),
           "--devices", "2", "--set", "trainer.sync_check_every=1", "--data.epoch_len=8", "-o", str(run)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # every optimiser step: both ranks hold bit-identical weights, and the weights move
    checks = [json.loads(x) for x in (run / "logs" / "weight_sync.jsonl").read_text().splitlines()]
    assert [c["step"] for c in checks] == [1, 2, 3, 4]  # 8 clips / (2 ranks x 1 clip) per epoch
    assert all(len(c["digests"]) == 2 and c["digests"][0] == c["digests"][1] for c in checks)
    assert len({c["digests"][0] for c in checks}) == 4

    # the evaluation scored the clips of both ranks together
    ddp_metrics = json.loads((run / "summary.json").read_text())
    assert ddp_metrics["steps"] == 4 and ddp_metrics["val/n_clips"] == len(EVAL_IDS)

    # the same weights evaluated in one process give the same numbers
    single = tmp_path / "single"
    argv = ["train", "audioset-strong", "--preset", "teacher", "--config", str(config), "--checkpoint",
            str(run / "model.pt"), "--evaluate", "-o", str(single)]  # fmt: skip
    assert main(argv) == 0
    single_metrics = json.loads((single / "summary.json").read_text())
    for key in ("val/psds1", "val/psds1_macro", "val/pauroc", "val/loss", "val/n_clips"):
        assert single_metrics[key] == pytest.approx(ddp_metrics[key], abs=1e-6), key
    assert json.loads((single / "eval" / "summary.json").read_text())["n_clips"] == len(EVAL_IDS)
