"""The detection stages in one direction: score source -> PostProcessor -> writers (ptsed.detect)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

import ptsed
from ptsed.core.errors import ConfigError
from ptsed.core.types import FrameScores
from ptsed.inference.predictor import Predictor
from ptsed.inference.source import ScoreSource
from ptsed.inference.types import FileResult
from ptsed.io.results import read_events
from ptsed.postprocess.pipeline import PostProcessor
from ptsed.postprocess.profile import Profile
from tiny_models import TINY_LABELS, tiny_model


def _wav(path: Path, seconds: float = 12.0, channels: int = 1, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    n = int(seconds * 16_000)
    env = 0.05 + 0.5 * (np.sin(np.arange(n) / 16_000 * 2 * np.pi * 0.3) > 0.2)
    x = rng.standard_normal((n, channels)) * env[:, None]
    sf.write(path, x.astype(np.float32), 16_000)
    return path


def _spans(events: list) -> list[tuple]:
    return [(e.filename, e.onset, e.offset, e.label, e.channel) for e in events]


def test_a_predictor_is_a_score_source_that_yields_no_events(tmp_path: Path) -> None:
    predictor = Predictor(tiny_model(context=3), device="cpu", postprocess={"threshold": 0.0})
    assert isinstance(predictor, ScoreSource)
    (result,) = predictor.score_many([_wav(tmp_path / "a.wav")])
    assert result.ok and result.scores[0].scores.shape == (300, len(TINY_LABELS))
    assert result.events == [] and result.postprocessor is None
    # the convenience path applies the PostProcessor it was given
    assert predictor.predict(tmp_path / "a.wav").events


def test_for_model_precedence_options_profile_checkpoint_defaults() -> None:
    model = SimpleNamespace(
        checkpoint_extra={"postprocess": {"thresholds": {"Dog": 0.7}, "median_filter_s": {"Dog": 0.2}}}
    )
    stored = PostProcessor.for_model(model)
    assert stored.threshold == {"Dog": 0.7} and stored.median_filter_s == {"Dog": 0.2}
    assert stored.from_checkpoint == ("median_filter_s", "threshold") and stored.sort == "onset"
    profile = Profile(thresholds={"Dog": 0.4})
    mixed = PostProcessor.for_model(model, {"median_filter_s": 0.36}, profile=profile, upstream=True)
    assert mixed.threshold == {"Dog": 0.4} and mixed.median_filter_s == 0.36 and mixed.from_checkpoint == ()
    assert mixed.sort == "class"  # upstream mode: upstream's event order
    assert PostProcessor.for_model([model, model]).threshold == 0.5  # an ensemble stores nothing
    assert PostProcessor.for_model(model, {"threshold": 0.1}).threshold == 0.1


def test_detect_returns_the_events_of_the_predictor(tmp_path: Path) -> None:
    wav = _wav(tmp_path / "a.wav")
    options = {"threshold": 0.45, "median_filter_s": 0.2}
    expect = Predictor(tiny_model(context=3), device="cpu", postprocess=options).predict(wav).events
    seen: list[FileResult] = []
    summary = ptsed.detect(
        wav, models=tiny_model(context=3), device="cpu", postprocess=options, output=tmp_path / "out",
        on_result=seen.append,
    )  # fmt: skip
    assert summary.exit_code == 0 and expect
    assert _spans(summary.results[0].events) == _spans(expect) == _spans(seen[0].events)
    assert _spans(read_events(tmp_path / "out" / "events.tsv")) == _spans(expect)
    with pytest.raises(ConfigError, match="models= or scores="):
        ptsed.detect(wav, models=tiny_model(), scores=summary.source)
    with pytest.raises(ConfigError, match="give models="):
        ptsed.detect(wav, scores=summary.source, batch_size=2)


class _ConstantSource:
    """A score source of its own: one score ramp per input (the seam a stream or ONNX session uses)."""

    labels = ["up", "down"]
    sample_rate = 16_000
    channels = "mix"
    upstream_chunking = False
    models: list = []

    def settings(self) -> dict:
        return {"source": "ramp"}

    def score_many(self, inputs, *, progress=None):  # noqa: ANN001, ANN201
        for src in inputs:
            up = np.linspace(0, 1, 50, dtype=np.float32)
            fs = FrameScores(np.stack([up, 1 - up], 1), np.arange(51) * 0.04, self.labels, source=src.name)
            yield FileResult(str(src.path), src.name, duration_s=2.0, scores=[fs])


def test_any_score_source_plugs_into_detect(tmp_path: Path) -> None:
    wav = _wav(tmp_path / "a.wav", seconds=2.0)
    summary = ptsed.detect(wav, scores=_ConstantSource(), postprocess={"median_filter_s": None}, output=tmp_path / "o")
    events = read_events(tmp_path / "o" / "events.tsv")
    assert [(e.label, e.onset, e.offset) for e in events] == [("down", 0.0, 1.0), ("up", 1.0, 2.0)]
    assert [e.label for e in summary.results[0].events] == ["down", "up"]


def test_replayed_channels_give_the_events_of_the_original_run(tmp_path: Path) -> None:
    """Saved scores are just another score source: the same events, in the same order, as the model run."""
    wav = _wav(tmp_path / "st.wav", seconds=14.0, channels=2)
    first = ptsed.detect(
        wav, models=tiny_model(context=3), device="cpu", channels="each", postprocess={"threshold": 0.4},
        output=tmp_path / "run", writers="npz,tsv",
    )  # fmt: skip
    again = ptsed.detect(tmp_path / "run" / "frames", postprocess={"threshold": 0.4}, output=tmp_path / "re")
    assert {e.channel for e in first.results[0].events} == {0, 1}
    assert _spans(again.results[0].events) == _spans(first.results[0].events)


def test_evaluation_reads_model_scores_without_post_processing(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """Evaluation needs frame scores only: its model source never runs a PostProcessor."""
    from ptsed.evaluation.sources import ModelScores

    audio = tmp_path / "audio"
    audio.mkdir()
    for name in ("Ya", "Yb"):
        _wav(audio / f"{name}.wav", seconds=3.0)

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("post-processing ran")

    monkeypatch.setattr(PostProcessor, "stream_events", refuse)
    monkeypatch.setattr(PostProcessor, "events", refuse)
    source = ModelScores(tiny_model(), audio, device="cpu")
    values, stamps, labels = source.read("Ya")
    assert values.shape == (75, len(TINY_LABELS)) and labels == TINY_LABELS and stamps[-1] == 3.0
    read = {name: clip for name, clip, err in source.iter_read(["Ya", "Yb"])}
    np.testing.assert_array_equal(read["Ya"][0], values)
