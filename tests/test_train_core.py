"""Training core: losses, optimiser groups, schedule, validation scoring and post-processing choice."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ptsed.core.errors import ConfigError
from ptsed.core.types import FrameScores
from ptsed.train.losses import LossConfig, masked_bce, sed_loss
from ptsed.train.optim import OptimConfig, build_optimizer, build_scheduler, lr_factor, param_groups
from ptsed.train.validation import Reference, WindowStitcher, evaluate, reference_from_dataset, select_postprocess
from train_fixtures import TinyDataset, single_thread, tiny_model

_one_thread = pytest.fixture(autouse=True)(single_thread)


# -- losses -------------------------------------------------------------------------------------------------
def test_masked_bce_equals_bce_with_logits_and_ignores_unlabelled_clips():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(4, 3, 10, generator=g), torch.rand(4, 3, 10, generator=g).round()
    assert torch.allclose(masked_bce(pred, target), torch.nn.BCEWithLogitsLoss()(pred, target))
    mask = torch.tensor([True, False, True, False])
    loss = masked_bce(pred, target, mask)
    pred2 = pred.clone()
    pred2[~mask] = 100.0  # changing unlabelled clips changes nothing
    assert torch.allclose(masked_bce(pred2, target, mask), loss)
    assert torch.allclose(loss, torch.nn.BCEWithLogitsLoss()(pred[mask], target[mask]))
    none = masked_bce(pred.requires_grad_(), target, torch.zeros(4, dtype=torch.bool))
    assert none.item() == 0.0 and none.requires_grad


def test_probability_bce_matches_logit_bce():
    pred, target = torch.randn(2, 3, 7), torch.rand(2, 3, 7)
    a = masked_bce(pred, target)
    b = masked_bce(torch.sigmoid(pred), target, from_logits=False)
    assert torch.allclose(a, b, atol=1e-5)


def test_sed_loss_mixes_label_and_distillation_losses():
    g = torch.Generator().manual_seed(1)
    pred, y, teacher = torch.randn(3, 2, 5, generator=g), torch.rand(3, 2, 5, generator=g).round(), torch.rand(3, 2, 5)
    wp, wy = torch.randn(3, 2, generator=g), torch.rand(3, 2, generator=g).round()
    cfg = LossConfig(distillation_loss_weight=0.3, weak_loss_weight=0.5)
    parts = sed_loss(pred, y, cfg, weak_pred=wp, weak_target=wy, teacher_strong=teacher)
    label = masked_bce(pred, y) + 0.5 * masked_bce(wp, wy)
    kd = masked_bce(pred, teacher)
    assert torch.allclose(parts["loss"], 0.7 * label + 0.3 * kd)
    assert torch.allclose(sed_loss(pred, y, LossConfig())["loss"], masked_bce(pred, y))
    with pytest.raises(ValueError, match="teacher"):
        sed_loss(pred, y, LossConfig(distillation_loss_weight=0.5))
    with pytest.raises(ConfigError):
        LossConfig(distillation_loss_weight=1.5)


# -- optimiser and schedule ---------------------------------------------------------------------------------
def _groups_by_name(model, cfg):
    out = {}
    for g in param_groups(model, cfg):
        out[g["name"]] = g
    return out


def test_layerwise_decay_from_the_top_and_no_decay_on_flat_parameters():
    model = tiny_model()  # backbone: stem + 3 blocks = 4 depth groups
    cfg = OptimConfig(lr=1e-3, backbone_lr=1e-4, lr_decay=0.5, weight_decay=0.01)
    groups = _groups_by_name(model, cfg)
    assert groups["head/decay"]["lr"] == 1e-3
    for gi in range(4):
        assert groups[f"backbone.{gi}/decay"]["lr"] == pytest.approx(1e-4 * 0.5 ** (4 - gi))
    for name, g in groups.items():
        dims = {p.ndim for p in g["params"]}
        if name.endswith("no_decay"):
            assert dims <= {0, 1} and g["weight_decay"] == 0.0
        else:
            assert min(dims) >= 2 and g["weight_decay"] == 0.01
    listed = [id(p) for g in groups.values() for p in g["params"]]
    trainable = [id(p) for n, p in model.named_parameters() if not n.startswith("frontend.")]
    assert sorted(listed) == sorted(trainable) and len(set(listed)) == len(listed)
    opt = build_optimizer(model, OptimConfig(optimizer="adam"))
    assert isinstance(opt, torch.optim.Adam) and not isinstance(opt, torch.optim.AdamW)


def test_frozen_backbone_trains_the_head_only():
    model = tiny_model()
    groups = param_groups(model, OptimConfig(freeze_backbone=True))
    names = {g["name"].split("/")[0] for g in groups}
    assert names == {"head"}


def test_param_groups_must_cover_the_backbone():
    model = tiny_model()
    model.backbone.param_groups = lambda: [["stem.weight"]]
    with pytest.raises(ConfigError, match="misses"):
        param_groups(model, OptimConfig())


def test_warmup_cosine_schedule():
    assert lr_factor(0, 100, 10) == 0.0
    assert lr_factor(5, 100, 10) == 0.5
    assert lr_factor(10, 100, 10) == 1.0
    assert lr_factor(55, 100, 10) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(100, 100, 10, min_lr_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor(55, 100, 10, schedule="linear") == pytest.approx(0.5)
    assert lr_factor(90, 100, 10, schedule="constant") == 1.0
    model = tiny_model()
    opt = build_optimizer(model, OptimConfig(lr=1e-3, warmup_steps=4))
    sched = build_scheduler(opt, OptimConfig(lr=1e-3, warmup_steps=4), total_steps=20)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:5] == pytest.approx([0, 2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert lrs[12] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 8 / 16)))


# -- validation ---------------------------------------------------------------------------------------------
def test_stitcher_averages_overlapping_windows_and_crops_padding():
    st = WindowStitcher(["a"], hop_s=0.04, stitch="mean")
    w1 = np.full((1, 1, 250), 0.2, np.float32)
    w2 = np.full((1, 1, 250), 0.6, np.float32)
    st.add(w2, ["f.wav"], [5.0], [7.0])  # 7 s of real audio: frames 125..299; windows may come in any order
    st.add(w1, ["f.wav"], [0.0], [10.0])
    fs = st.result({"f.wav": 12.0})["f.wav"]
    assert fs.scores.shape == (300, 1)
    assert np.allclose(fs.scores[:125, 0], 0.2) and np.allclose(fs.scores[125:250, 0], 0.4)
    assert np.allclose(fs.scores[250:, 0], 0.6)
    assert fs.timestamps[-1] == 12.0 and fs.timestamps[1] == pytest.approx(0.04)
    # detect's default: each frame from the window whose centre is nearest (centres at 5 s and 10 s)
    st = WindowStitcher(["a"], hop_s=0.04)
    st.add(np.concatenate([w1, w2]), ["f.wav"] * 2, [0.0, 5.0], [10.0, 7.0])
    fs = st.result({"f.wav": 12.0})["f.wav"]
    assert np.allclose(fs.scores[:187, 0], 0.2) and np.allclose(fs.scores[187:, 0], 0.6)


def test_validation_scores_equal_detect_scores(tmp_path):
    """Validation inside training (the dataset's windows, the Lightning module's validation loop, its
    stitcher) gives exactly the frame scores and timestamps that ``Predictor`` (``ptsed detect``) gives on
    the same audio at detect's defaults: the model's window, a hop of half a window, centre stitching."""
    import lightning as L
    import soundfile as sf

    from ptsed.data.dcase import DCASEDataset
    from ptsed.inference.predictor import Predictor
    from ptsed.train.module import SEDTrainModule
    from ptsed.train.validation import validation_windows
    from tiny_models import tiny_model as frame_model

    model = frame_model(context=25)  # outputs near window edges depend on the window: stitching matters
    rng = np.random.default_rng(0)
    lengths = {"long.wav": 23.3, "short.wav": 6.1, "exact.wav": 20.0}
    for name, seconds in lengths.items():
        sf.write(tmp_path / name, (0.3 * rng.standard_normal(int(16000 * seconds))).astype(np.float32), 16000)
    rows = "".join(f"{name}\t1.0\t2.5\t{model.labels[0]}\n" for name in lengths)
    (tmp_path / "strong.tsv").write_text("filename\tonset\toffset\tevent_label\n" + rows)
    windows = validation_windows(model)
    assert windows == {"window_s": 10.0, "hop_s": 5.0, "stitch": "centre"}
    ds = DCASEDataset(
        tmp_path, tmp_path / "strong.tsv", labels=model.labels, window_s=windows["window_s"],
        window_hop_s=windows["hop_s"],
    )  # fmt: skip
    module = SEDTrainModule(model, reference=reference_from_dataset(ds), val_stitch=windows["stitch"])
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    # one window per forward pass on both sides: batches of other sizes differ in float rounding (BLAS)
    trainer.validate(module, torch.utils.data.DataLoader(ds, batch_size=1), verbose=False)
    val = module.last_val_scores
    predictor = Predictor(model, device="cpu", batch_size=1)
    for name in lengths:
        det = predictor.frame_scores(tmp_path / name)
        assert val[name].scores.shape == det.scores.shape and val[name].labels == det.labels
        np.testing.assert_array_equal(val[name].timestamps, det.timestamps)
        np.testing.assert_array_equal(val[name].scores, det.scores)
    # the averaging stitcher that validation used before gives other scores
    mean = Predictor(model, device="cpu", stitch="mean").frame_scores(tmp_path / "long.wav")
    assert np.abs(mean.scores - val["long.wav"].scores).max() > 1e-3


def _perfect_scores(ref: Reference, labels, noise: float = 0.0, seed: int = 0) -> dict[str, FrameScores]:
    from ptsed.core.frames import events_to_frame_targets

    rng = np.random.default_rng(seed)
    out = {}
    for name, evs in ref.events.items():
        t = round(ref.durations[name] / 0.04)
        s = events_to_frame_targets(evs, labels, t).T * 0.3 + 0.1 + noise * rng.random((t, len(labels)))
        ts = np.arange(t + 1) * 0.04
        out[name] = FrameScores(s.astype(np.float32), ts, list(labels), source=name)
    return out


def test_metrics_and_postprocess_choice_on_scores_of_known_quality():
    ds = TinyDataset(6, seed=3)
    ref = reference_from_dataset(ds)
    assert set(ref.events) == {r.name for r in ds.records}
    scores = _perfect_scores(ref, ds.labels)  # positives at 0.4, negatives at 0.1: all below 0.5
    low = evaluate(scores, ref, threshold=0.5)
    assert low["event_f1"] == 0.0
    assert evaluate(scores, ref, threshold=0.3)["event_f1"] == pytest.approx(1.0)
    assert evaluate(scores, ref)["psds1"] > 0.9
    pp = select_postprocess(scores, ref, ds.labels, median_grid_s=(0.0, 0.2))
    assert set(pp) >= {"thresholds", "median_filter_s", "selected_on", "val_event_f1"}
    assert set(pp["thresholds"]) == set(ds.labels) and set(pp["median_filter_s"].values()) <= {0.0, 0.2}
    assert all(0.1 <= v < 0.4 for v in pp["thresholds"].values())
    tuned = evaluate(scores, ref, median_filter_s=pp["median_filter_s"], threshold=pp["thresholds"])
    assert tuned["event_f1"] == pytest.approx(1.0) and pp["val_event_f1"] == pytest.approx(1.0)


def test_reference_skips_files_without_strong_labels():
    ds = TinyDataset(6, no_strong_every=2)
    ref = reference_from_dataset(ds)
    assert len(ref) == 3


def test_sed_model_backbone_layer_feeds_the_head_from_a_lower_block():
    from ptsed.models.sed_model import SEDModel

    m = tiny_model().eval()
    low = SEDModel(m.frontend, m.backbone, m.head_config, labels=m.labels, backbone_layer=-2, window_s=2.0)
    feats = m.features(torch.randn(1, 16000))
    assert torch.equal(low.backbone_sequence(feats), m.backbone.forward_intermediates(feats, [1])[0])
    with pytest.raises(ValueError, match="out of range"):
        SEDModel(m.frontend, m.backbone, m.head_config, backbone_layer=-5, window_s=2.0)


def test_batchnorm_recalibration_uses_the_exact_batch_average():
    from ptsed.train.module import recalibrate_batchnorm

    model = tiny_model(batchnorm=True).eval()
    ds = TinyDataset(8)
    batches = [torch.utils.data.default_collate([ds[i] for i in range(j, j + 4)]) for j in (0, 4)]
    assert recalibrate_batchnorm(model, batches, num_batches=2) == 1
    norm = model.backbone.norm
    assert norm.momentum == 0.01 and not model.training
    with torch.no_grad():
        stems = [model.backbone.stem(model.features(b["waveform"])[:, 0]) for b in batches]
    expect = torch.stack([s.mean(dim=(0, 2)) for s in stems]).mean(0)
    assert torch.allclose(norm.running_mean, expect, atol=1e-5)
    assert recalibrate_batchnorm(tiny_model(), batches) == 0  # no BatchNorm: nothing to do


def test_postprocess_choice_keeps_defaults_for_a_class_no_threshold_helps():
    """A class whose best event-F1 is 0 keeps the default threshold: the lowest threshold would otherwise be
    stored and flood ``ptsed detect`` (which applies the stored values) with false positives."""
    ds = TinyDataset(6, seed=3)
    ref = reference_from_dataset(ds)
    scores = _perfect_scores(ref, ds.labels)
    for fs in scores.values():
        fs.scores[:, 0] = 0.5 - fs.scores[:, 0]  # inverted: high outside the events of class 0
    pp = select_postprocess(scores, ref, ds.labels, median_grid_s=(0.0, 0.2), default_threshold=0.5)
    first, *others = ds.labels
    assert pp["thresholds"][first] == 0.5 and pp["median_filter_s"][first] == 0.36  # detect's defaults
    assert first not in pp["fitted"] and set(others) <= set(pp["fitted"])
    assert all(0.1 <= pp["thresholds"][c] < 0.4 for c in others)
    assert pp["val_event_f1"] == pytest.approx(2 / 3)  # the mean over classes counts the failed one as 0
