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
    assert relabel is not m  # other class order: fresh heads


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
