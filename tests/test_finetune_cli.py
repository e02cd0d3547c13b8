"""``ptsed finetune`` end to end on a tiny registered arch: the exported checkpoint, presets, drop-top-layers,
attention heads, YAML settings, resumption and data-source detection."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from ptsed.cli.main import main
from ptsed.core.errors import ConfigError
from ptsed.models.factory import create_model, save_checkpoint
from ptsed.train.config import PRESETS, build_config
from ptsed.train.finetune import adapt_model
from ptsed.train.sources import find_dcase_files, source_kind
from train_fixtures import LABELS, register_tiny_arch, single_thread, write_dcase_folder

_one_thread = pytest.fixture(autouse=True)(single_thread)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dcase")
    write_dcase_folder(root / "train", n=12, seed=0, sr=8000)
    write_dcase_folder(root / "valid", n=4, seed=1, sr=8000)
    (root / "train" / "sources.tsv").write_text("filename\trole\tonset\toffset\tevent_labels\n")  # ignored
    return root


def _finetune(data: Path, out: Path, *extra: str) -> int:
    args = ["finetune", "--model", "tinysed", "--train", str(data / "train"), "--valid", str(data / "valid")]
    args += ["--window", "2", "--batch-size", "4", "--lr", "5e-3", "--warmup-steps", "2", "--output", str(out)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main([*args, "--quiet", *extra])


def _probe(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))).strong_logits


def test_finetune_exports_one_self_describing_checkpoint(data: Path, tmp_path: Path, monkeypatch):
    register_tiny_arch(monkeypatch)
    out = tmp_path / "run"
    assert _finetune(data, out, "--no-pretrained", "--epochs", "2") == 0
    model = create_model("anything", checkpoint_path=out / "model.pt")
    assert model.labels == sorted(LABELS) and model.name == "tinysed-finetuned"
    pp = model.checkpoint_extra["postprocess"]
    assert set(pp["thresholds"]) == set(LABELS) and set(pp["median_filter_s"]) == set(LABELS)
    assert all(0 <= v <= 1 for v in pp["thresholds"].values()) and pp["selected_on"] == "validation"
    assert json.loads((out / "thresholds.json").read_text()) == pp["thresholds"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 6 and "tuned_event_f1" in summary and "default_psds1" in summary
    assert (out / "checkpoints" / "last.ckpt").is_file() and list((out / "logs").glob("version_0/metrics.csv"))
    # the model file holds the trained weights: they differ from a fresh model and reload identically
    again = create_model("anything", checkpoint_path=out / "model.pt")
    assert torch.equal(_probe(model), _probe(again))
    # --resume of a finished run re-exports the same weights without training
    first = {k: v.clone() for k, v in model.state_dict().items()}
    assert _finetune(data, out, "--no-pretrained", "--epochs", "2", "--resume") == 0
    resumed = create_model("anything", checkpoint_path=out / "model.pt").state_dict()
    assert all(torch.equal(first[k], resumed[k]) for k in first)


def test_linear_probe_keeps_the_backbone_and_new_labels_reset_the_heads(data: Path, tmp_path: Path, monkeypatch):
    register_tiny_arch(monkeypatch)
    start = create_model("tinysed", pretrained=False, num_classes=2, labels=["x", "y"])
    save_checkpoint(start, tmp_path / "start.pt")
    out = tmp_path / "probe"
    assert _finetune(data, out, "--checkpoint", str(tmp_path / "start.pt"), "--preset", "linear-probe") == 0
    tuned = create_model("x", checkpoint_path=out / "model.pt")
    assert tuned.labels == sorted(LABELS)
    for k, v in start.state_dict().items():
        if k.startswith("backbone."):
            assert torch.equal(v, tuned.state_dict()[k]), k
    assert not torch.equal(start.head.strong_head.weight[:2], tuned.head.strong_head.weight[:2])


def test_drop_top_layers_and_attention_head_are_rebuilt_from_the_checkpoint(data: Path, tmp_path: Path, monkeypatch):
    register_tiny_arch(monkeypatch)
    out = tmp_path / "drop"
    code = _finetune(data, out, "--no-pretrained", "--preset", "desed", "--drop-top-layers", "2", "--epochs", "1")
    assert code == 0
    model = create_model("x", checkpoint_path=out / "model.pt").eval()
    assert model.backbone_layer == -3 and model.head_config.head_type == "attention"
    assert model.checkpoint_extra["config"]["backbone_layer"] == -3
    wave = torch.randn(1, 16000)
    with torch.no_grad():
        feats = model.features(wave)
        seq = model.backbone.forward_intermediates(feats, [0])[0]
        strong, weak = model.head(seq, 50)
        out_model = model(wave)
    assert torch.allclose(out_model.strong_logits, strong) and torch.allclose(out_model.weak_logits, weak)
    assert float(out_model.weak_logits.min()) >= 0 and float(out_model.weak_logits.max()) <= 1  # probabilities


def test_settings_precedence_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture):
    yml = tmp_path / "run.yaml"
    yml.write_text("preset: full\nepochs: 3\noptim:\n  lr: 0.002\naugment:\n  mixup_p: 0.1\n")
    cfg = build_config(None, yml, ["optim.lr=0.003", "batch_size=8"], {"epochs": 5, "optim.weight_decay": None})
    assert (cfg.epochs, cfg.batch_size, cfg.optim.lr, cfg.augment.mixup_p) == (5, 8, 0.003, 0.1)
    assert cfg.optim.lr_decay == PRESETS["full"]["optim"]["lr_decay"]
    with pytest.raises(ConfigError, match="lrr"):
        build_config(overrides=["optim.lrr=1"])
    with pytest.raises(ConfigError, match="preset"):
        build_config("nope")
    assert main(["finetune", "--output", str(tmp_path / "o"), "--set", "epochs=abc"]) == 2
    assert "epochs" in capsys.readouterr().err
    assert main(["finetune", "--output", str(tmp_path / "o")]) == 2  # no training data
    assert main(["finetune", "--train", str(tmp_path), "--output", str(tmp_path / "o"), "--resume"]) == 2


def test_adapt_model_keeps_heads_only_when_they_still_fit():
    from train_fixtures import tiny_model

    m = tiny_model(rnn_dim=4, rnn_layers=1)
    same = adapt_model(m, m.labels)
    assert same is m
    new = adapt_model(m, ["a", "b"])
    assert new.backbone is m.backbone and new.labels == ["a", "b"] and new.num_classes == 2
    for k, v in m.head.seq_model.state_dict().items():  # the BiGRU survives a change of classes
        assert torch.equal(v, new.head.seq_model.state_dict()[k])
    relabel = adapt_model(m, list(reversed(m.labels)))
    assert relabel is not m and relabel.labels == list(reversed(m.labels))
    assert torch.equal(relabel.head.strong_head.weight, m.head.strong_head.weight.flip(0))  # rows follow names


def _scores_by_name(model: torch.nn.Module, waves: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        probs = torch.sigmoid(model.eval()(waves).strong_logits)  # (B, K, T)
    return {name: probs[:, i].flatten() for i, name in enumerate(model.labels)}


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.double(), b.double()]))[0, 1])


@pytest.mark.parametrize(("preset", "frozen_stats"), [("linear-probe", True), ("full", False)])
def test_finetune_at_lr_0_with_a_permuted_class_list_keeps_every_class(
    data: Path, tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture, preset: str, frozen_stats: bool
):
    """The training data lists the classes sorted, the start model in another order: heads follow names.
    At lr 0 every class keeps its scores; exactly with frozen BatchNorm statistics (linear probe: the backbone
    stays in eval mode), highly correlated when the statistics still move (full fine-tuning)."""
    import soundfile as sf

    from ptsed.train.module import recalibrate_batchnorm
    from train_fixtures import TinyDataset

    register_tiny_arch(monkeypatch)
    start = create_model("tinysed", pretrained=False, num_classes=3, labels=LABELS, batchnorm=True)
    recalibrate_batchnorm(start, torch.utils.data.DataLoader(TinyDataset(8, seed=3), batch_size=4), 2)
    assert start.labels != sorted(LABELS)  # the training data's order differs
    save_checkpoint(start, tmp_path / "start.pt")
    out = tmp_path / "lr0"
    args = ["--checkpoint", str(tmp_path / "start.pt"), "--preset", preset, "--epochs", "1"]
    assert _finetune(data, out, *args, "--lr", "0", "--warmup-steps", "0") == 0
    assert "heads: 3 classes kept, 0 new, 0 dropped" in capsys.readouterr().err
    tuned = create_model("x", checkpoint_path=out / "model.pt")
    assert tuned.labels == sorted(LABELS)
    waves = torch.stack([torch.from_numpy(sf.read(f, dtype="float32")[0]) for f in sorted(data.glob("valid/audio/*"))])
    before, after = _scores_by_name(start, waves), _scores_by_name(tuned, waves)
    for name in LABELS:
        if frozen_stats:
            torch.testing.assert_close(after[name], before[name], rtol=0, atol=1e-5, msg=name)
        else:
            assert _pearson(after[name], before[name]) > 0.99, name


def test_data_sources_are_recognised(data: Path, tmp_path: Path):
    files = find_dcase_files(data / "train")
    assert files.strong.name == "strong.tsv" and files.durations.name == "durations.tsv" and files.weak is None
    assert files.audio_dir == data / "train" / "audio"
    assert source_kind(data / "train") == "dcase"
    (tmp_path / "hear").mkdir()
    (tmp_path / "hear" / "task_metadata.json").write_text("{}")
    assert source_kind(str(tmp_path / "hear") + "#fold01") == "hear"
    for sub in ("audio", "metadata"):
        (tmp_path / "desed" / sub).mkdir(parents=True)
    assert source_kind(tmp_path / "desed") == "desed"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no labels"):
        find_dcase_files(tmp_path / "empty")


def _err_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.startswith("ptsed finetune: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_a_folder_holding_a_run_is_refused_unless_resume_or_overwrite(
    data: Path, tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture
):
    register_tiny_arch(monkeypatch)
    out = tmp_path / "run"
    assert _finetune(data, out, "--no-pretrained", "--epochs", "1") == 0
    (out / "notes.txt").write_text("mine")
    exported = (out / "model.pt").read_bytes()
    capsys.readouterr()
    assert _finetune(data, out, "--no-pretrained", "--epochs", "1") == 2  # never retrains, never prompts
    line = _err_line(capsys)
    assert "finished run" in line and str(out / "model.pt") in line and "--resume" in line and "--overwrite" in line
    assert (out / "model.pt").read_bytes() == exported and len(list((out / "logs").iterdir())) == 1
    assert _finetune(data, out, "--no-pretrained", "--epochs", "1", "--resume", "--overwrite") == 2
    assert "--overwrite" in _err_line(capsys)
    assert _finetune(data, out, "--no-pretrained", "--epochs", "1", "--overwrite") == 0
    assert [p.name for p in (out / "logs").iterdir()] == ["version_0"]  # the old run's files went first
    assert (out / "notes.txt").read_text() == "mine"  # files of other origin stay
    (out / "model.pt").unlink()  # killed before the export
    assert _finetune(data, out, "--no-pretrained", "--epochs", "1") == 2
    assert "unfinished run" in _err_line(capsys)


def test_resume_refuses_other_settings_unless_forced(
    data: Path, tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture
):
    register_tiny_arch(monkeypatch)
    out = tmp_path / "run"
    assert _finetune(data, out, "--no-pretrained", "--epochs", "1") == 0
    stored = (out / "config.yaml").read_bytes()
    capsys.readouterr()
    assert _finetune(data, out, "--no-pretrained", "--epochs", "1", "--resume", "--batch-size", "2") == 2
    line = _err_line(capsys)
    assert "batch_size: 4 -> 2" in line and "--force-settings" in line and "optim.lr" not in line
    assert (out / "config.yaml").read_bytes() == stored  # a refused resume leaves the settings file alone
    assert main(["finetune", "--output", str(out), "--resume", "--quiet"]) == 0  # alone: the stored settings
    assert (out / "config.yaml").read_bytes() == stored
    assert main(["finetune", "--output", str(out), "--resume", "--quiet", "--threads", "1"]) == 0  # harmless
    assert main(["finetune", "--output", str(out), "--resume", "--quiet", "--set", "optim.lr=1"]) == 2
    assert "optim.lr: 0.005 -> 1.0" in _err_line(capsys)
    assert _finetune(data, out, "--no-pretrained", "--epochs", "1", "--force-settings") == 2
    assert "--resume only" in _err_line(capsys)
    args = ("--no-pretrained", "--epochs", "1", "--resume", "--batch-size", "2", "--force-settings")
    assert _finetune(data, out, *args) == 0
    assert "batch_size: 2" in (out / "config.yaml").read_text()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_damaged_checkpoints_are_named_and_never_exported(
    data: Path, tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture
):
    register_tiny_arch(monkeypatch)
    out = tmp_path / "run"
    assert _finetune(data, out, "--no-pretrained", "--epochs", "1") == 0
    ckpts, exported = out / "checkpoints", (out / "model.pt").read_bytes()
    best = ckpts / "best.ckpt"
    best_bytes = best.read_bytes()
    _truncate(best)  # a full disk while best.ckpt was written
    capsys.readouterr()
    assert _finetune(data, out, "--no-pretrained", "--epochs", "1", "--resume") == 2
    line = _err_line(capsys)
    assert str(best) in line and "damaged" in line and "not exported" in line and "--select last" in line
    assert (out / "model.pt").read_bytes() == exported
    assert _finetune(data, out, "--no-pretrained", "--epochs", "1", "--resume", "--select", "last") == 0
    best.write_bytes(best_bytes)
    _truncate(ckpts / "last.ckpt")
    capsys.readouterr()
    assert _finetune(data, out, "--no-pretrained", "--epochs", "1", "--resume") == 0  # falls back to best.ckpt
    err = capsys.readouterr().err
    assert f"{ckpts / 'last.ckpt'} is damaged" in err and f"resuming from {best}" in err
    _truncate(ckpts / "last.ckpt")
    _truncate(best)
    assert _finetune(data, out, "--no-pretrained", "--epochs", "1", "--resume") == 2
    line = _err_line(capsys)
    assert "last.ckpt is damaged" in line and "no earlier checkpoint" in line


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("batch_size=0", "batch_size"),
        ("optim.lr=-1e-3", "optim.lr"),
        ("optim.lr=nan", "optim.lr"),
        ("accumulate=0", "accumulate"),
        ("precision=17-mixed", "precision"),
        ("optim.warmup_steps=-1", "optim.warmup_steps"),
    ],
)
def test_out_of_range_settings_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture, setting: str, key: str
):
    assert main(["finetune", "--train", str(tmp_path), "--output", str(tmp_path / "o"), "--set", setting]) == 2
    assert key in _err_line(capsys)
    assert not (tmp_path / "o").exists()


def test_lr_0_and_warmup_0_are_valid_settings():
    cfg = build_config("full", flags={"optim.lr": 0.0, "optim.warmup_steps": 0})
    assert (cfg.optim.lr, cfg.optim.warmup_steps) == (0.0, 0)


def test_a_full_disk_is_one_line_naming_the_file_and_the_free_space(
    data: Path, tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture
):
    import errno

    from ptsed.train import runfolder

    register_tiny_arch(monkeypatch)
    real = runfolder._write_file

    def full(path: Path, payload: bytes) -> None:
        if "last.ckpt" in path.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, payload)

    monkeypatch.setattr(runfolder, "_write_file", full)
    out = tmp_path / "run"
    assert _finetune(data, out, "--no-pretrained", "--epochs", "1") == 2
    line = _err_line(capsys)
    assert "disk is full" in line and str(out / "checkpoints" / "last.ckpt") in line and " free in " in line
    assert not list((out / "checkpoints").glob("*tmp*")) and not (out / "checkpoints" / "last.ckpt").exists()


def test_a_full_disk_while_exporting_names_model_pt(data: Path, tmp_path: Path, monkeypatch, capsys):
    from ptsed.models import factory

    register_tiny_arch(monkeypatch)

    real = factory.torch.save

    def full(obj, path, *args, **kwargs) -> None:  # torch's zip writer reports a full disk as a RuntimeError
        name = Path(path).name if isinstance(path, (str, Path)) else ""  # checkpoints go through a buffer
        if not (name.startswith(".model.pt.") and ".tmp" in name):
            return real(obj, path, *args, **kwargs)
        Path(path).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file "
                           "data/3: file write failed")  # fmt: skip

    monkeypatch.setattr(factory.torch, "save", full)
    out = tmp_path / "run"
    assert _finetune(data, out, "--no-pretrained", "--epochs", "1") == 2
    line = _err_line(capsys)
    assert f"cannot write {out / 'model.pt'}" in line and " free in " in line and not list(out.glob("*tmp*"))


def test_an_output_that_is_a_file_or_unwritable_is_one_line(data: Path, tmp_path: Path, monkeypatch, capsys):
    import errno
    import os

    register_tiny_arch(monkeypatch)
    (tmp_path / "file").write_text("x")
    assert _finetune(data, tmp_path / "file", "--no-pretrained") == 2
    assert "is a file" in _err_line(capsys)
    from ptsed.train import runfolder

    def refused(path: Path, payload: bytes) -> None:  # an unwritable folder (tests may run as root)
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(runfolder, "_write_file", refused)
    assert _finetune(data, tmp_path / "ro", "--no-pretrained") == 2
    line = _err_line(capsys)
    assert "permission denied" in line and f"cannot write {tmp_path / 'ro' / 'config.yaml'}:" in line


_CLI = """
import sys
from train_fixtures import register_tiny_arch

class _Patch:
    def setitem(self, mapping, key, value):
        mapping[key] = value

register_tiny_arch(_Patch())
from ptsed.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_stdout_has_the_results_and_stderr_the_progress_without_third_party_noise(data: Path, tmp_path: Path):
    import subprocess
    import sys

    from child_env import child_env

    env = child_env(Path(__file__).parent)  # this ptsed and the test helpers, from any folder
    args = ["finetune", "--model", "tinysed", "--no-pretrained", "--train", str(data / "train"), "--valid"]
    args += [str(data / "valid"), "--window", "2", "--batch-size", "4", "--epochs", "1", "--output", "run"]
    done = subprocess.run(
        [sys.executable, "-c", _CLI, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0].startswith("wrote run/model.pt") and all(x.startswith("  ") and ": " in x for x in out[1:]), out
    assert "Epoch 0" in done.stderr and "heads: 0 classes kept, 3 new" in done.stderr  # progress on stderr
    for noise in ("Tip", "litlogger", "GPU available", "deprecated", "Deprecat", "weights_only", "Warning"):
        assert noise not in done.stderr, noise
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
