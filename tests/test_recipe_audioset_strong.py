"""AudioSet-strong recipe: settings and presets, the balanced sampler, the data items, and the whole pipeline
(teacher -> ensemble logits -> student -> evaluation) on a tiny AudioSet-format dataset with tiny models."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from conformance import LABELS
from ptsed.cli.main import main
from ptsed.cli.train import _dotted_to_set
from ptsed.core.errors import ConfigError
from ptsed.recipes.audioset_strong import load_config
from ptsed.train.sampler import BalancedEpochSampler, SampledLoader, temporal_count_weights
from recipe_data import EVAL_IDS, TINY_ARCH, TINY_BUILDER, TINY_RNN, make_audioset, recipe_yaml, tiny_weak_checkpoint


# -- settings ------------------------------------------------------------------------------------------------
def test_presets_are_the_papers_recipes() -> None:
    teacher = load_config("teacher")
    assert (teacher.form, teacher.rnn_dim, teacher.start, teacher.data.sampler) == (
        "teacher",
        2048,
        "as_weak",
        "balanced",
    )
    assert teacher.augment.wavmix_p == 1.0 and teacher.loss.distillation_loss_weight == 0.0
    student = load_config("student")
    assert (student.form, student.epochs, student.loss.distillation_loss_weight) == ("student", 120, 0.9)
    assert student.optim.lr == 1e-4
    assert (student.augment.wavmix_p, student.augment.freq_warp_p) == (0.5, 0.0)
    assert (student.augment.filter_augment_p, student.augment.mixstyle_p) == (0.0, 0.0)
    # everything else is upstream's ex_audioset_strong.py default
    for c in (teacher, student):
        assert (c.batch_size, c.data.epoch_len, c.val_every, c.optim.optimizer) == (256, 100_000, 5, "adam")
        assert (c.optim.weight_decay, c.optim.warmup_steps, c.augment.mixup_p) == (0.0, 20_000, 0.3)
    assert teacher.epochs == 30 and teacher.optim.lr == 7e-5


def test_settings_precedence_and_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"preset": "student", "optim": {"lr": 2e-4}, "data": {"num_workers": 3}}))
    c = load_config("teacher", cfg, ["optim.lr=3e-4", "data.train_audio=a.h5,b.h5"], {"model": "ATST-F", "epochs": 7})
    assert c.form == "student" and c.optim.lr == 3e-4 and c.data.num_workers == 3  # file's preset, then overrides
    assert c.data.train_audio == ["a.h5", "b.h5"] and c.model == "atst_frame" and c.epochs == 7
    assert load_config(flags={"model": "beats.ssl"}).start == "ssl"
    with pytest.raises(ConfigError, match="optim.lrr=1: unknown setting 'lrr'"):
        load_config(overrides=["optim.lrr=1"])
    with pytest.raises(ConfigError, match="form"):
        load_config(overrides=["form=big"])
    with pytest.raises(ConfigError, match="distillation_loss_weight"):
        load_config(overrides=["loss.distillation_loss_weight=2"])
    assert _dotted_to_set(["--optim.lr=1e-4", "--data.num_workers", "4", "--epochs", "2"]) == [
        "--set", "optim.lr=1e-4", "--set", "data.num_workers=4", "--epochs", "2"
    ]  # fmt: skip


def test_cli_prints_resolved_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "audioset-strong", "--preset", "student", "--model", "beats", "--optim.lr=3e-4",
                 "--data.num_workers", "5", "--print-config"]) == 0  # fmt: skip
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"] == "beats" and printed["optim"]["lr"] == 3e-4 and printed["data"]["num_workers"] == 5
    assert printed["loss"]["distillation_loss_weight"] == 0.9


# -- sampler ---------------------------------------------------------------------------------------------------
def test_temporal_count_weights_by_hand() -> None:
    counts = np.array([[2, 0], [0, 1], [1, 1], [0, 0]])
    w = temporal_count_weights(counts, offset=30)
    np.testing.assert_allclose(w, [2000 / 33, 1000 / 32, 1000 / 33 + 1000 / 32, 0.0])
    from scipy import sparse

    np.testing.assert_allclose(temporal_count_weights(sparse.csr_matrix(counts), offset=30), w)


def test_balanced_sampler_draws_by_weight_without_replacement_and_splits_ranks() -> None:
    w = np.array([0.0, 1.0, 1.0, 8.0, 2.0, 0.0, 4.0])
    s = BalancedEpochSampler(w, 5, seed=3)
    first = s.global_order(0)
    assert len(first) == 5 and len(set(first)) == 5 and not {0, 5} & set(first)
    assert first == BalancedEpochSampler(w, 5, seed=3).global_order(0)  # fixed by (seed, epoch)
    assert any(s.global_order(e) != first for e in range(1, 5))
    long = BalancedEpochSampler(w, 12, seed=3).global_order(0)
    assert len(long) == 12 and not {0, 5} & set(long) and len(set(long[:5])) == 5  # draws of 5 drawable clips
    # ranks: equal shares that together are the global order (padded with its start)
    ranks = [BalancedEpochSampler(w, 5, seed=3, num_replicas=2, rank=r) for r in range(2)]
    assert [len(r) for r in ranks] == [3, 3]
    assert [i for _, i in ranks[0]] == [first[0], first[2], first[4]]
    assert [i for _, i in ranks[1]] == [first[1], first[3], first[0]]
    # with replacement, frequencies follow the weights
    rep = BalancedEpochSampler(w, 16000, seed=1, replacement=True).global_order(0)
    freq = np.bincount(rep, minlength=len(w)) / len(rep)
    np.testing.assert_allclose(freq, w / w.sum(), atol=0.015)
    uniform = BalancedEpochSampler(None, 7, size=7, seed=0).global_order(2)
    assert sorted(uniform) == list(range(7))
    with pytest.raises(ConfigError):
        BalancedEpochSampler(np.zeros(3), 2)


def test_sampled_loader_resumes_mid_epoch() -> None:
    data = [{"x": torch.tensor(float(i))} for i in range(10)]
    w = np.arange(10, dtype=float) + 1

    def loader() -> SampledLoader:
        return SampledLoader(data, BalancedEpochSampler(w, 8, seed=4), 2, seed=4)

    full = [b["x"].tolist() for b in loader()]
    first = loader()
    it = iter(first)
    head = [next(it)["x"].tolist() for _ in range(2)]
    state = first.state_dict()
    resumed = loader()
    resumed.load_state_dict(state)
    assert head + [b["x"].tolist() for b in resumed] == full


# -- data items ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    with pytest.MonkeyPatch.context() as mp:  # module scope: before the per-test environment is set
        mp.setenv("PTSED_LABELS_DIR", str(LABELS))
        return make_audioset(tmp_path_factory.mktemp("audioset"))


def test_items_targets_counts_and_teacher_probabilities(dataset: dict[str, Path], tmp_path: Path) -> None:
    from ptsed.data.audioset import read_strong_labels
    from ptsed.hub.labels import get_labels
    from ptsed.recipes.audioset_data import ForkSafeAudio, StrongClips, class_frame_counts
    from ptsed.recipes.ensemble import LogitsFile

    classes = get_labels("audioset_strong_447")
    events = read_strong_labels(dataset["eval_labels"])[0]
    audio = ForkSafeAudio(dataset["eval_audio"])
    assert audio.is_hdf5 and len(audio) == 4
    logits = np.random.default_rng(0).normal(size=(3, 447, 250)).astype(np.float16)
    with h5py.File(tmp_path / "z.h5", "w") as f:  # Zenodo-like: names as upstream looks them up
        f["filenames"] = np.array([f"Y{i}".rstrip(".mp3").encode() for i in EVAL_IDS[:3]])
        f["strong_logits"] = logits
    pseudo = LogitsFile(tmp_path / "z.h5")
    ds = StrongClips(events, audio, classes, 16000, pseudo=pseudo)
    assert ds.clip_ids == [f"Y{i}" for i in EVAL_IDS[:3]] and ds.missing_pseudo == [f"Y{EVAL_IDS[3]}"]
    counts = class_frame_counts(ds).toarray()
    for i in range(len(ds)):
        item = ds[i]
        assert item["waveform"].shape == (160000,) and item["strong"].shape == (447, 250)
        np.testing.assert_array_equal(item["strong"].numpy().sum(1), counts[i])
        row = EVAL_IDS.index(item["filename"][1:])
        expected = torch.sigmoid(torch.from_numpy(logits[row].astype(np.float32)))
        torch.testing.assert_close(item["pseudo_strong"], expected)
    assert counts.sum() > 0
    # the upstream-key fallback is only for files ptsed did not write: "Yhhh0008p" was stored as "Yhhh0008"
    assert pseudo.row(f"Y{EVAL_IDS[1]}") == 1 and f"Y{EVAL_IDS[1]}".rstrip(".mp3") != f"Y{EVAL_IDS[1]}"


# -- the whole pipeline ----------------------------------------------------------------------------------------
def _metrics_csv(run: Path) -> list[dict[str, str]]:
    """The rows of the run's CSV log (``logs/metrics.csv`` or ``logs/version_*/metrics.csv``)."""
    paths = sorted((run / "logs").glob("**/metrics.csv"))
    assert paths, f"no metrics.csv under {run / 'logs'}"
    with open(paths[-1], newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_teacher_ensemble_student_pipeline(dataset: dict[str, Path], tmp_path: Path) -> None:
    from ptsed.models.factory import create_model, save_checkpoint

    start = tiny_weak_checkpoint(tmp_path / "weak.pt")
    config = recipe_yaml(tmp_path / "run.yaml", dataset, start)

    # 1. teacher: weak checkpoint + BiGRU, balanced sampler, evaluated with upstream's protocol
    teacher_dir = tmp_path / "teacher"
    assert (
        main(["train", "audioset-strong", "--preset", "teacher", "--config", str(config), "-o", str(teacher_dir)]) == 0
    )
    saved = yaml.safe_load((teacher_dir / "config.yaml").read_text())
    assert saved["form"] == "teacher" and saved["data"]["sampler"] == "balanced" and saved["augment"]["wavmix_p"] == 1.0
    assert (teacher_dir / "sample_weights.npz").is_file()
    teacher = create_model("x", checkpoint_path=teacher_dir / "model.pt")
    assert teacher.head_config.rnn_dim == TINY_RNN and teacher.num_classes == 447
    summary = json.loads((teacher_dir / "eval" / "summary.json").read_text())
    assert summary["protocol"] == "audioset-strong" and summary["n_clips"] == len(EVAL_IDS)
    assert summary["settings"]["median_filter_s"] == 0.36
    assert 0 < summary["n_classes"] <= 3  # the class outside the 447 is not evaluated
    logged = [r for r in _metrics_csv(teacher_dir) if r.get("val/psds1_macro")]
    assert logged and float(logged[-1]["val/n_clips"]) == len(EVAL_IDS)

    # 2. ensemble logits of two teachers over the training clips
    torch.manual_seed(7)
    other = create_model(f"{TINY_ARCH}.as_weak", checkpoint_path=start, head="teacher", num_classes=447,
                         rnn_dim=TINY_RNN, **TINY_BUILDER)  # fmt: skip
    save_checkpoint(other, tmp_path / "teacher2.pt")
    logits_file = tmp_path / "ensemble.h5"
    argv = ["ensemble-logits", "--model", TINY_ARCH, "--checkpoint", str(teacher_dir / "model.pt"), "--model",
            TINY_ARCH, "--checkpoint", str(tmp_path / "teacher2.pt"), "--audio", str(dataset["train_audio"]),
            "--output", str(logits_file), "--quiet", "--num-workers", "0"]  # fmt: skip
    assert main(argv) == 0
    with h5py.File(logits_file) as f:
        names = [n.decode("UTF-8") for n in f["filenames"]]
        assert f["strong_logits"].shape == (6, 447, 250) and f["strong_logits"].dtype == np.float16
        first = f["strong_logits"][0].astype(np.float32)
    from ptsed.io.audio import load_audio

    wave = torch.from_numpy(load_audio(dataset["train_audio"] / f"{names[0]}.wav", 16000)[0]).unsqueeze(0)
    with torch.no_grad():
        mean = (teacher(wave).strong_logits + other(wave).strong_logits)[0].numpy() / 2
    np.testing.assert_allclose(first, mean, atol=2e-3, rtol=2e-3)

    # 3. student distilled from the ensemble logits, evaluated, exported in both layouts
    student_dir = tmp_path / "student"
    argv = ["train", "audioset-strong", "--preset", "student", "--config", str(config), "--pseudo-labels",
            str(logits_file), "-o", str(student_dir)]  # fmt: skip
    assert main(argv) == 0
    rows = _metrics_csv(student_dir)
    kd = [float(r["train/distillation_loss"]) for r in rows if r.get("train/distillation_loss")]
    assert kd and all(np.isfinite(kd)) and min(kd) > 0
    student = create_model("x", checkpoint_path=student_dir / "model.pt")
    assert student.head_config.rnn_dim is None and student.num_classes == 447
    released = create_model(TINY_ARCH, checkpoint_path=student_dir / "model_released.pt", **TINY_BUILDER)
    with torch.no_grad():
        torch.testing.assert_close(released(wave).strong_logits, student(wave).strong_logits, atol=0, rtol=0)
    result = json.loads((student_dir / "summary.json").read_text())
    assert result["steps"] == 2 and result["val/n_clips"] == len(EVAL_IDS)


def test_student_without_teacher_logits_is_refused(dataset: dict[str, Path], tmp_path: Path) -> None:
    config = recipe_yaml(tmp_path / "run.yaml", dataset, tmp_path / "none.pt")
    with pytest.raises(ConfigError, match="pseudo_labels"):
        from ptsed.recipes.audioset_strong import train

        train(load_config("student", config), tmp_path / "out")
