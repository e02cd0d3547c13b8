"""``ptsed finetune --teacher``: distillation from a frozen teacher checkpoint (benchmarks/learning.py row d)."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import pytest

from ptsed.cli.main import main
from train_fixtures import LABELS, register_tiny_arch, single_thread, write_dcase_folder

_one_thread = pytest.fixture(autouse=True)(single_thread)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dcase")
    write_dcase_folder(root / "train", n=8, seed=0, sr=8000)
    write_dcase_folder(root / "valid", n=4, seed=1, sr=8000)
    return root


def _finetune(data: Path, out: Path, *extra: str) -> int:
    args = ["finetune", "--model", "tinysed", "--no-pretrained", "--train", str(data / "train")]
    args += ["--valid", str(data / "valid"), "--window", "2", "--batch-size", "4", "--epochs", "1", "--quiet"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main([*args, "--output", str(out), *extra])


def test_teacher_adds_the_distillation_loss(data: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    register_tiny_arch(monkeypatch)
    assert _finetune(data, tmp_path / "teacher") == 0
    teacher = str(tmp_path / "teacher" / "model.pt")
    assert _finetune(data, tmp_path / "student", "--teacher", teacher, "--distill-weight", "0.5") == 0
    rows = list(csv.DictReader((tmp_path / "student" / "logs" / "version_0" / "metrics.csv").open()))
    kd = [float(r["train/distillation_loss"]) for r in rows if r.get("train/distillation_loss")]
    assert kd and all(v > 0 for v in kd)
    plain = list(csv.DictReader((tmp_path / "teacher" / "logs" / "version_0" / "metrics.csv").open()))
    assert "train/distillation_loss" not in plain[0]
    capsys.readouterr()
    # a teacher with other classes is refused before training, in one error line
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join([*sorted(LABELS)[1:], "Unknown class"]) + "\n")
    assert _finetune(data, tmp_path / "bad", "--teacher", teacher, "--labels", str(labels)) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "error" in line]
    assert len(err) == 1 and "teacher" in err[0] and "--labels" in err[0] and "Unknown class" in err[0]
    assert not (tmp_path / "bad" / "model.pt").exists()
    # a distillation weight without a teacher is refused too
    assert _finetune(data, tmp_path / "bad2", "--distill-weight", "0.5") == 2
    assert "--teacher" in capsys.readouterr().err


def test_a_teacher_in_another_class_order_is_reordered_by_name(data: Path, tmp_path: Path, monkeypatch) -> None:
    """The teacher's rows follow the run's class names, so its targets match the student's outputs row by row."""
    import torch

    from ptsed.models.factory import create_model
    from ptsed.train.config import build_config
    from ptsed.train.finetune import load_teacher

    register_tiny_arch(monkeypatch)
    assert _finetune(data, tmp_path / "teacher") == 0
    teacher_file = tmp_path / "teacher" / "model.pt"
    original = create_model("tinysed", checkpoint_path=teacher_file)
    order = list(reversed(original.labels))
    flags = {"model": "tinysed", "teacher": str(teacher_file), "loss.distillation_loss_weight": 0.5}
    config = build_config(None, None, [], flags)
    teacher = load_teacher(config, order)
    assert teacher is not None and list(teacher.labels) == order
    wave = torch.randn(1, 8000 * 2)
    with torch.no_grad():
        a, b = original.eval()(wave).strong_logits, teacher.eval()(wave).strong_logits
    for i, name in enumerate(order):
        torch.testing.assert_close(b[:, i], a[:, original.labels.index(name)])
