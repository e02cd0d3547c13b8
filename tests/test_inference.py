"""The inference engine: windows, stitching, Predictor (tiny models, short audio)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ptsed.core.errors import AudioError, ConfigError
from ptsed.inference.predictor import Predictor, resolve_model_name
from ptsed.inference.windows import Stitcher, WindowCutter, window_starts
from tiny_models import TINY_LABELS, tiny_model

SPF = 640  # samples per 40 ms frame at 16 kHz
W = 250 * SPF


def _signal(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(round(seconds * 16_000))
    env = 0.05 + 0.5 * (np.sin(np.arange(n) / 16_000 * 2 * np.pi * 0.3) > 0.2)
    return (rng.standard_normal(n) * env).astype(np.float32)


def _tonal(seconds: float, seed: int) -> np.ndarray:
    """Band-limited (< 4 kHz) test signal: survives resampling to 48 kHz and back."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * 16_000))) / 16_000
    x = sum(rng.random() * np.sin(2 * np.pi * (f * t + rng.random())) for f in rng.uniform(200, 4000, 6))
    return (x * (0.2 + 0.2 * np.sin(2 * np.pi * 0.7 * t))).astype(np.float32)


def _whole_pass(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """Probabilities (T, K) from one pass over the whole (frame-padded) signal."""
    t = math.ceil(x.size / SPF)
    xp = np.pad(x, (0, t * SPF - x.size))
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(xp)[None]).strong_logits)[0].T.numpy()


@pytest.mark.parametrize("upstream", [False, True])
def test_window_cutter_matches_plan(upstream: bool) -> None:
    rng = np.random.default_rng(1)
    for _ in range(40):
        total = int(rng.integers(1, 40 * 16_000))
        hop = W if upstream else int(rng.choice([25, 125, 250])) * SPF
        x = rng.standard_normal(total).astype(np.float32)
        cutter = WindowCutter(W, hop, SPF, upstream=upstream)
        got, pos = [], 0
        while pos < total:
            n = int(rng.integers(1, 300_000))
            got += list(cutter.feed(x[pos : pos + n]))
            pos += n
        got += list(cutter.finish(total))
        assert [s for s, _ in got] == window_starts(total, W, hop, SPF, upstream=upstream)
        for start, win in got:
            assert win.shape == (W,)
            n_real = max(0, min(W, total - start))
            np.testing.assert_array_equal(win[:n_real], x[start : start + n_real])
            assert not win[n_real:].any()
        last = got[-1][0]
        if not upstream:  # at most one frame of padding once the audio is longer than a window
            assert total <= W or last + W - total < SPF


def test_stitcher_centre_takes_nearest_window_and_mean_averages() -> None:
    f = 10
    starts = [0, 5, 10, 12]
    outs = [np.full((f, 1), i, np.float32) for i in range(len(starts))]
    centre = Stitcher(f, "centre")
    mean = Stitcher(f, "mean")
    for s, o in zip(starts, outs, strict=True):
        centre.add(s, o)
        mean.add(s, o)
    total = 22
    c = centre.finish(total)[:, 0]
    m = mean.finish(total)[:, 0]
    for t in range(total):
        covering = [i for i, s in enumerate(starts) if s <= t < s + f]
        nearest = min(covering, key=lambda i: (abs(t + 0.5 - (starts[i] + f / 2)), -i))
        assert c[t] == nearest, t
        assert m[t] == pytest.approx(np.mean(covering)), t
    with pytest.raises(ValueError, match="not covered"):
        bad = Stitcher(f, "centre")
        bad.add(0, outs[0])
        bad.add(f + 3, outs[1])


@pytest.mark.parametrize("mode", ["centre", "mean"])
def test_stitcher_output_does_not_depend_on_the_expected_length(mode: str) -> None:
    """The declared length only sizes the output array: too small, exact, too large or unknown, the
    stitched frames are the same, and no larger array stays behind the result."""
    rng = np.random.default_rng(1)
    f, total = 250, 4321
    starts = list(range(0, total - f, 125)) + [total - f]
    outs = [rng.random((f, 3)).astype(np.float32) for _ in starts]
    results = []
    for expected in (None, 10, total, 3 * total):
        st = Stitcher(f, mode, expected)
        for s0, o in zip(starts, outs, strict=True):
            st.add(s0, o)
        out = st.finish(total)
        assert out.shape == (total, 3) and out.dtype == np.float32 and out.flags.c_contiguous
        assert out.base is None or out.base.shape[0] <= 1.1 * total
        results.append(out)
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


@pytest.mark.parametrize("stitch", ["centre", "mean"])
@pytest.mark.parametrize("seconds", [0.1, 10.0, 23.37])
def test_windowed_equals_whole_pass_for_a_frame_local_model(stitch: str, seconds: float) -> None:
    model = tiny_model(context=1)
    x = _signal(seconds)
    predictor = Predictor(model, batch_size=3, device="cpu", stitch=stitch, hop_s=3.0)
    fs = predictor.frame_scores(x, 16_000)
    frames = math.ceil(x.size / SPF)
    assert fs.scores.shape == (frames, len(TINY_LABELS))
    assert fs.timestamps[0] == 0 and fs.timestamps[-1] == pytest.approx(x.size / 16_000)
    assert np.all(np.diff(fs.timestamps) > 0)
    np.testing.assert_allclose(fs.scores, _whole_pass(model, x), atol=2e-6)


def test_upstream_chunking_reproduces_chunk_loop() -> None:
    model = tiny_model(context=5)
    x = _signal(25.0)
    predictor = Predictor(model, batch_size=2, device="cpu", upstream_chunking=True)
    fs = predictor.frame_scores(x, 16_000)
    # upstream: 10 s chunks, last zero-padded, logits concatenated, then sigmoid
    chunks = []
    for i in range(0, x.size, W):
        c = np.pad(x[i : i + W], (0, max(0, i + W - x.size)))
        with torch.no_grad():
            chunks.append(model(torch.from_numpy(c)[None]).strong_logits)
    ref = torch.sigmoid(torch.cat(chunks, dim=2))[0].T.numpy()
    assert fs.scores.shape == ref.shape == (750, len(TINY_LABELS))
    np.testing.assert_allclose(fs.scores, ref, atol=2e-6)
    assert fs.timestamps[-1] == 25.0 and fs.timestamps[626] == 25.0  # padded frames are zero-length
    assert fs.meta["valid_frames"] == 625


def test_overlap_differs_from_chunking_for_a_context_model() -> None:
    model = tiny_model(context=9)
    x = _signal(30.0)
    a = Predictor(model, device="cpu").frame_scores(x, 16_000)
    b = Predictor(model, device="cpu", upstream_chunking=True).frame_scores(x, 16_000)
    # same frames away from chunk edges, different near them (context crosses the edge)
    np.testing.assert_allclose(a.scores[100:150], b.scores[100:150], atol=2e-6)
    assert np.abs(a.scores[248:252] - b.scores[248:252]).max() > 1e-4


def test_ensemble_averages_probabilities() -> None:
    m1, m2 = tiny_model(context=1), tiny_model(context=3)
    with torch.no_grad():
        m2.head.strong_head.bias.add_(1.0)
    x = _signal(12.0)
    s1 = Predictor(m1, device="cpu").frame_scores(x, 16_000).scores
    s2 = Predictor(m2, device="cpu").frame_scores(x, 16_000).scores
    both = Predictor([m1, m2], device="cpu").frame_scores(x, 16_000).scores
    np.testing.assert_allclose(both, (s1 + s2) / 2, atol=1e-6)
    with pytest.raises(ConfigError, match="different classes"):
        Predictor([m1, tiny_model(labels=["a", "b"])], device="cpu")


def test_channels_each_and_resampling(tmp_path: Path) -> None:
    model = tiny_model()
    a, b = _tonal(4.0, seed=1), _tonal(4.0, seed=2)
    path = tmp_path / "stereo48k.wav"
    from ptsed.io.audio import resample

    sf.write(path, np.stack([resample(a, 16_000, 48_000), resample(b, 16_000, 48_000)], axis=1), 48_000, "FLOAT")
    each = Predictor(model, device="cpu", channels="each").predict(path)
    assert [fs.channel for fs in each.scores] == [0, 1]
    assert each.sample_rate == 48_000 and each.channels == 2
    # the resampler's filter rings at the abrupt start and end: compare the inner frames
    np.testing.assert_allclose(each.scores[0].scores[1:-1], _whole_pass(model, a)[1:-1], atol=1e-3)
    np.testing.assert_allclose(each.scores[1].scores[1:-1], _whole_pass(model, b)[1:-1], atol=1e-3)
    assert {e.channel for e in each.events} <= {0, 1}
    mix = Predictor(model, device="cpu").frame_scores(path)
    assert mix.channel is None and mix.scores.shape == each.scores[0].scores.shape


def test_embeddings_from_head_input_and_layer() -> None:
    model = tiny_model()
    x = _signal(13.0)
    predictor = Predictor(model, device="cpu", batch_size=4)
    emb = predictor.embed(x, 16_000)
    frames = math.ceil(x.size / SPF)
    assert emb.values.shape == (frames, model.backbone.embed_dim)
    with torch.no_grad():
        xp = torch.from_numpy(np.pad(x, (0, frames * SPF - x.size)))[None]
        ref = model.embed(xp)[0].numpy()
        ref0 = model.embed(xp, layer=0)[0].numpy()
    np.testing.assert_allclose(emb.values, ref, atol=1e-5)
    np.testing.assert_allclose(predictor.embed(x, 16_000, layer=0).values, ref0, atol=1e-5)


def test_predict_many_batches_across_files_and_skips_bad_ones(tmp_path: Path) -> None:
    model = tiny_model()
    calls = []
    forward = model.forward_features

    def counting(features: torch.Tensor, num_frames: int | None = None):  # noqa: ANN202
        calls.append(features.shape[0])
        return forward(features, num_frames)

    model.forward_features = counting  # type: ignore[method-assign]
    paths = []
    for i, seconds in enumerate([3.0, 0.5, 7.0]):
        p = tmp_path / f"f{i}.wav"
        sf.write(p, _signal(seconds, seed=i), 16_000)
        paths.append(p)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"garbage" * 10)
    predictor = Predictor(model, device="cpu", batch_size=8)
    results = list(predictor.predict_many([paths[0], bad, paths[1], paths[2]]))
    assert [r.name for r in results] == ["f0.wav", "bad.wav", "f1.wav", "f2.wav"]
    assert [r.ok for r in results] == [True, False, True, True]
    assert "bad.wav" in results[1].error and "not an audio file" in results[1].error
    assert calls == [3]  # three single-window files in one batch
    for r, seconds in zip([results[0], results[2], results[3]], [3.0, 0.5, 7.0], strict=True):
        assert r.duration_s == pytest.approx(seconds)
        assert r.scores[0].scores.shape[0] == math.ceil(seconds / 0.04)
    with pytest.raises(AudioError, match="bad.wav"):
        predictor.predict(bad)


def test_nan_input_is_rejected() -> None:
    x = _signal(2.0)
    x[10] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        Predictor(tiny_model(), device="cpu").predict(x, 16_000)


def test_bf16_autocast_runs_close_to_fp32() -> None:
    model = tiny_model(context=3)
    x = _signal(11.0)
    a = Predictor(model, device="cpu").frame_scores(x, 16_000).scores
    b = Predictor(model, device="cpu", precision="bf16").frame_scores(x, 16_000).scores
    assert np.abs(a - b).max() < 0.05


def test_options_are_checked() -> None:
    model = tiny_model()
    with pytest.raises(ConfigError, match="hop"):
        Predictor(model, device="cpu", hop_s=12.0)
    with pytest.raises(ConfigError, match="precision"):
        Predictor(model, device="cpu", precision="int8")
    p = Predictor(model, device="cpu", overlap_s=2.0)
    assert p.hop_s == pytest.approx(8.0)
    assert resolve_model_name("BEATs") == "beats" and resolve_model_name("ATST-F.as_weak") == "atst_frame.as_weak"
    assert resolve_model_name("frame_mn06") == "frame_mn06"


def test_filtered_scores_are_computed_on_demand_and_match_the_events() -> None:
    """Results carry no filtered copy until one is read; it and the events equal the whole-array chain."""
    pp = {"threshold": 0.45, "median_filter_s": 0.2, "top_k": 2}
    result = Predictor(tiny_model(context=3), device="cpu", postprocess=pp).predict(_signal(23.0), 16_000)
    assert result._filtered is None
    filtered = result.postprocessor.filter(result.scores[0])
    assert result.events, "the test signal should give events"
    assert result.events == result.postprocessor.decode(filtered, filename=result.name)
    np.testing.assert_array_equal(result.filtered[0].scores, filtered.scores)
    assert result._filtered is not None


def test_int8_mode_quantises_the_linear_layers_on_cpu_only() -> None:
    """``int8=True`` swaps the linear layers for dynamically quantised ones: probabilities change a little,
    the caller's model is left as it was, and the setting is part of the run's settings."""
    model = tiny_model(context=3)
    x = _signal(12.0)
    exact = Predictor(model, device="cpu").frame_scores(x, 16_000).scores
    p = Predictor(model, device="cpu", int8=True)
    quick = p.frame_scores(x, 16_000).scores
    kinds = {type(m).__module__ for m in p.models[0].modules()}
    assert any(k.startswith("torch.ao.nn.quantized.dynamic") for k in kinds)
    assert not any(type(m).__module__.startswith("torch.ao") for m in model.modules())  # a copy was quantised
    assert quick.shape == exact.shape and not np.array_equal(quick, exact)
    assert np.abs(quick - exact).mean() < 0.02  # 16-wide layers quantise coarsely; ATST-F moves far less
    assert p.settings()["int8"] is True and Predictor(model, device="cpu").settings()["int8"] is False
    with pytest.raises(ConfigError, match="CPU only"):
        Predictor(model, device="meta", int8=True)
