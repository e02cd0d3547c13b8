"""Live detection (:class:`ptsed.StreamDetector`): streamed results equal offline ones, bounded memory,
streamed resampling and mixing, faults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import ptsed
from ptsed.core.errors import AudioError, ConfigError
from ptsed.core.types import Event
from ptsed.inference.predictor import Predictor
from ptsed.inference.stream import StreamDetector, StreamResampler
from ptsed.io.audio import load_audio, resample
from tiny_models import tiny_model


def _signal(seconds: float, sr: int, channels: int, seed: int = 0) -> np.ndarray:
    """(n, channels) float32: tones and noise bursts whose loudness changes, so scores move over time."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    env = 0.05 + 0.4 * (np.sin(2 * np.pi * 0.23 * t) > 0.3) + 0.3 * (np.sin(2 * np.pi * 0.61 * t + 1) > 0.6)
    cols = []
    for c in range(channels):
        tone = np.sin(2 * np.pi * (300 + 200 * c) * t) * 0.3
        cols.append((tone + rng.standard_normal(t.size) * 0.3) * env)
    return np.stack(cols, 1).astype(np.float32)


def _blocks(n: int, rng: np.random.Generator, window: int) -> list[tuple[int, int]]:
    """Random block borders over ``n`` samples: runs of 1-sample blocks, small and large blocks, and
    blocks longer than a window."""
    out, i = [], 0
    while i < n:
        kind = rng.integers(0, 5)
        if kind == 0:  # a run of single samples
            for _ in range(int(rng.integers(1, 40))):
                if i < n:
                    out.append((i, i + 1))
                    i += 1
            continue
        size = [int(rng.integers(2, 500)), int(rng.integers(500, 20_000)), window + int(rng.integers(1, window))][
            min(kind - 1, 2)
        ]
        out.append((i, min(n, i + size)))
        i += size
    return out


def _stream(det: StreamDetector, x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Event]]:
    """Push ``x`` in random blocks; returns (scores, timestamps, filtered scores, events) of the whole stream."""
    rng = np.random.default_rng(seed)
    results = [det.push(x[a:b]) for a, b in _blocks(len(x), rng, 12 * det.sample_rate)]
    results.append(det.flush())
    scores = np.concatenate([r.scores.scores for r in results])
    times = np.concatenate([r.scores.timestamps[:-1] for r in results] + [results[-1].scores.timestamps[-1:]])
    filtered = np.concatenate([r.filtered.scores for r in results])
    events = [e for r in results for e in r.events]
    return scores, times, filtered, events


def _key(e: Event) -> tuple:
    return (e.onset, e.offset, e.label)


def _check_equal(tmp_path: Path, model: object, postprocess: dict, hop_s: float, stitch: str, seed: int) -> int:
    """Offline ``Predictor.predict`` on a 22.05 kHz stereo file vs the same samples streamed; returns the
    number of events (so callers can check the comparison was not empty)."""
    sr, seconds = 22_050, 14.3
    x = _signal(seconds, sr, 2, seed)
    path = tmp_path / "stereo.wav"
    sf.write(path, x, sr, subtype="FLOAT")
    pred = Predictor(model, hop_s=hop_s, stitch=stitch, batch_size=3, device="cpu", postprocess=postprocess)
    offline = pred.predict(path)
    det = StreamDetector(pred, sample_rate=sr, channels=2)
    scores, times, filtered, events = _stream(det, x, seed)
    ref = offline.scores[0]
    assert scores.shape == ref.scores.shape
    np.testing.assert_allclose(scores, ref.scores, atol=2e-5)
    np.testing.assert_array_equal(times, ref.timestamps)
    np.testing.assert_allclose(filtered, offline.filtered[0].scores, atol=2e-5)
    got, want = sorted(events, key=_key), sorted(offline.events, key=_key)
    assert [_key(e) for e in got] == [_key(e) for e in want]
    np.testing.assert_allclose([e.score for e in got], [e.score for e in want], atol=2e-5)
    return len(want)


@pytest.fixture(scope="module")
def mn06() -> ptsed.SEDModel:
    """frame_mn06 with the conformance suite's synthetic weights (released layout)."""
    import tempfile

    from conformance import write_released_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = write_released_checkpoint(Path(tmp) / "frame_mn06_strong_1.pt", "frame_mn06")
        return ptsed.create_model("frame_mn06", checkpoint_path=ckpt)


def _threshold_near_median(model: object, hop_s: float) -> float:
    """A threshold at which a model with synthetic weights gives many events on the test signal."""
    pred = Predictor(model, hop_s=hop_s, device="cpu", batch_size=3)
    fs = pred.frame_scores(_signal(11.0, 16_000, 1, 5)[:, 0], 16_000)
    return float(np.median(fs.scores))


def test_frame_mn06_stream_equals_offline(tmp_path: Path, mn06: ptsed.SEDModel) -> None:
    th = _threshold_near_median(mn06, 2.0)
    pp = {"threshold": th, "median_filter_s": 0.44, "merge_gap_s": 0.2, "min_duration_s": 0.12}
    assert _check_equal(tmp_path, mn06, pp, hop_s=2.0, stitch="centre", seed=1) > 5


def test_frame_mn06_stream_equals_offline_top_k_and_mean_stitch(tmp_path: Path, mn06: ptsed.SEDModel) -> None:
    pp = {"threshold": 0.0, "top_k": 2, "median_filter_s": 0.4, "merge_gap_s": 0.5}
    assert _check_equal(tmp_path, mn06, pp, hop_s=3.0, stitch="mean", seed=2) > 5


def test_transformer_stream_equals_offline(tmp_path: Path) -> None:
    """ATST-Frame (one block, random weights): per-window normalisation and attention over the window."""
    torch.manual_seed(0)
    model = ptsed.create_model("atst_frame", pretrained=False, depth=1)
    th = _threshold_near_median(model, 4.0)
    pp = {"threshold": th, "median_filter_s": 0.28, "merge_gap_s": 0.3}
    assert _check_equal(tmp_path, model, pp, hop_s=4.0, stitch="centre", seed=3) > 5


def test_ensemble_stream_equals_offline(tmp_path: Path) -> None:
    models = [tiny_model(context=3), tiny_model(context=5, name="tiny5")]
    torch.manual_seed(1)
    for p in models[1].parameters():
        p.data.add_(torch.randn_like(p) * 0.1)
    assert _check_equal(tmp_path, models, {"threshold": 0.5, "median_filter_s": 0.2}, 1.0, "centre", 4) > 0


def test_streamed_resampling_and_mixing_equal_the_whole_file_path(tmp_path: Path) -> None:
    """44.1 kHz stereo in random blocks (1 sample up to 3 s): the same samples as decoding the file whole
    (``load_audio``: channel mean, soxr's stream), and as one-shot ``resample`` up to float noise."""
    sr = 44_100
    x = _signal(7.3, sr, 2, 7)
    path = tmp_path / "a.wav"
    sf.write(path, x, sr, subtype="FLOAT")
    whole, _ = load_audio(path, 16_000)
    rs = StreamResampler(sr, 16_000, 2)
    rng = np.random.default_rng(0)
    pieces = [rs.push(x[a:b]) for a, b in _blocks(len(x), rng, 3 * sr)]
    pieces.append(rs.finish())
    streamed = np.concatenate(pieces)
    assert streamed.shape == whole.shape == (-(-len(x) * 16_000 // sr),)
    np.testing.assert_allclose(streamed, whole, atol=1e-6)
    np.testing.assert_allclose(streamed, resample(x.mean(axis=1, dtype=np.float32), sr, 16_000), atol=1e-4)
    # no click at block borders: the streamed signal is as smooth as the whole one
    assert np.abs(np.diff(streamed)).max() <= np.abs(np.diff(whole)).max() + 1e-5


def test_memory_stays_bounded_on_a_long_stream() -> None:
    """Two minutes in 0.7 s blocks: buffers stay near one window whatever the stream's length."""
    det = StreamDetector(tiny_model(context=3), 16_000, hop_s=2.0, postprocess={"merge_gap_s": 0.5}, device="cpu")
    x = _signal(30.0, 16_000, 1, 8)[:, 0]
    sizes = []
    frames = 0
    for _ in range(4):
        for i in range(0, len(x), 11_200):
            r = det.push(x[i : i + 11_200])
            frames += r.scores.scores.shape[0]
            cutter = det._cutter._buf.shape[-1] if det._cutter._buf is not None else 0
            sizes.append((cutter, len(det._stitcher._taken), det._post._raw.shape[0], det._post._hist.shape[0]))
    sizes_arr = np.array(sizes)
    assert sizes_arr[:, 0].max() <= 250 * 640 + 11_200 + 2 * 16_000  # window + block + hop
    assert sizes_arr[:, 1].max() == 0
    assert sizes_arr[:, 2].max() <= 300 and sizes_arr[:, 3].max() <= det._post.keep_frames
    assert frames >= 120 * 25 - 7 * 25  # frames kept flowing (latency: about (window + hop) / 2)
    assert det.final_s > 113


def test_latency_is_about_half_a_window_plus_half_a_hop() -> None:
    det = StreamDetector(tiny_model(), 16_000, hop_s=0.48, device="cpu")
    x = _signal(20.0, 16_000, 1, 9)[:, 0]
    lags = []
    for i in range(0, len(x), 1600):
        det.push(x[i : i + 1600])
        if det.duration_s >= 11:
            lags.append(det.duration_s - det.final_s)
    assert max(lags) <= (10 + 0.48) / 2 + 0.48 + 0.1


def test_postprocessing_stored_in_a_checkpoint_is_the_default() -> None:
    """What ``ptsed finetune`` stores (``checkpoint_extra["postprocess"]``) is used, as by ``detect``."""
    model = tiny_model()
    stored = {"thresholds": {lab: 1.0 for lab in model.labels}, "median_filter_s": {lab: 0.2 for lab in model.labels}}
    model.checkpoint_extra["postprocess"] = stored
    det = StreamDetector(model, 16_000, device="cpu")
    assert det.postprocess.threshold == stored["thresholds"]
    x = _signal(12.0, 16_000, 1, 3)[:, 0]
    events = det.push(x).events + det.flush().events
    assert events == []
    det = StreamDetector(model, 16_000, device="cpu", postprocess={"threshold": 0.0})
    assert det.push(x).events + det.flush().events  # an explicit setting wins


def test_faults_of_pushed_blocks() -> None:
    det = StreamDetector(tiny_model(), 48_000, channels=2, device="cpu")
    with pytest.raises(AudioError, match=r"shape \(10,\).*\(n, 2\)"):
        det.push(np.zeros(10, np.float32))
    bad = np.zeros((100, 2), np.float32)
    bad[50, 1] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        det.push(bad)
    det.push(np.zeros((4800, 2), np.int16))  # integers are taken as they are (the caller scales them)
    r = det.flush()
    assert r.scores.scores.shape[0] == 3 and r.scores.timestamps[-1] == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="flushed"):
        det.push(np.zeros((10, 2), np.float32))


def test_an_empty_stream_flushes_to_nothing() -> None:
    det = StreamDetector(tiny_model(), 16_000, device="cpu")
    r = det.flush()
    assert r.scores.scores.shape == (0, len(det.labels)) and r.events == []


def test_stream_detector_is_public() -> None:
    assert ptsed.StreamDetector is StreamDetector


def test_a_score_transform_gives_the_offline_events_of_its_classes(tmp_path: Path) -> None:
    """``transform=`` (roll-up, then a class map merging parents): the filtered scores and events equal those
    of ``Predictor`` with the same transform in front of its post-processing; raw scores stay the model's."""
    from ptsed.postprocess.pipeline import PostProcessor
    from ptsed.postprocess.transforms import ClassMap, Rollup, with_transform

    model = tiny_model(context=3)
    transform = Rollup() | ClassMap([("Human voice", "voice"), ("Animal", "animal"), ("Music", "music")])
    pp = PostProcessor(threshold=_threshold_near_median(model, 2.0), median_filter_s=0.3, merge_gap_s=0.2)
    sr, x = 16_000, _signal(13.1, 16_000, 1, 8)
    path = tmp_path / "a.wav"
    sf.write(path, x, sr, subtype="FLOAT")
    offline = Predictor(model, hop_s=2.0, device="cpu", postprocess=with_transform(pp, transform)).predict(path)
    det = StreamDetector(Predictor(model, hop_s=2.0, device="cpu", postprocess=pp), sr, transform=transform)
    assert det.labels == ["voice", "animal", "music"] and det.model_labels == list(model.labels)
    scores, _, filtered, events = _stream(det, x, 8)
    np.testing.assert_allclose(scores, offline.scores[0].scores, atol=2e-5)
    np.testing.assert_allclose(filtered, offline.filtered[0].scores, atol=2e-5)
    assert offline.filtered[0].labels == det.labels
    want = sorted(offline.events, key=_key)
    assert len(want) > 2 and [_key(e) for e in sorted(events, key=_key)] == [_key(e) for e in want]
    # the same transform carried by the post-processor (as ptsed listen passes it)
    det2 = StreamDetector(Predictor(model, hop_s=2.0, device="cpu", postprocess=with_transform(pp, transform)), sr)
    assert det2.labels == det.labels and det2.transform is transform


def test_transform_and_decoder_faults_before_any_audio() -> None:
    from ptsed.postprocess.pipeline import PostProcessor
    from ptsed.postprocess.sebb import CSEBB
    from ptsed.postprocess.transforms import ClassMap

    with pytest.raises(ConfigError, match="no class 'Dgo'.*Dog"):
        StreamDetector(tiny_model(), 16_000, transform=ClassMap([("Dgo", "dog")]), device="cpu")
    with pytest.raises(ConfigError, match="'Bird'"):  # --include names the transformed classes
        pp = PostProcessor(include=["Bird"])
        StreamDetector(tiny_model(), 16_000, postprocess=pp, transform=ClassMap([("Dog", "dog")]), device="cpu")
    with pytest.raises(ConfigError, match="median filter"):
        StreamDetector(tiny_model(), 16_000, postprocess=CSEBB(), device="cpu")


def test_a_transform_keeps_the_stored_values_of_the_classes_it_reports() -> None:
    """Per-class thresholds a checkpoint stores name the model's classes: those of classes the map keeps
    apply, the others are dropped (as ``detect --class-map``), not an error."""
    from ptsed.postprocess.transforms import ClassMap

    model = tiny_model()
    model.checkpoint_extra["postprocess"] = {"thresholds": {lab: 0.9 for lab in model.labels}}
    det = StreamDetector(model, 16_000, device="cpu", transform=ClassMap([("Dog", "Dog"), ("Bird", "bird")]))
    assert det.labels == ["Dog", "bird"] and det.postprocess.threshold == {"Dog": 0.9}
