"""cSEBB decoding on hand-made score curves with known boxes, and ``detect --decoder csebb``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ptsed.cli.main import main
from ptsed.core.errors import ConfigError
from ptsed.core.types import FrameScores
from ptsed.postprocess.sebb import CSEBB, change_points, segment, step_filter
from ptsed.postprocess.transforms import ClassMap, with_transform

HOP = 0.04
WAV = Path(__file__).resolve().parents[1] / "examples" / "soundscape.wav"


def _curve(boxes: list[tuple[int, int, float]], n: int = 100) -> np.ndarray:
    y = np.zeros(n)
    for a, b, v in boxes:
        y[a:b] = v
    return y


def _fs(*curves: np.ndarray, labels: list[str] | None = None) -> FrameScores:
    x = np.stack(curves, axis=1).astype(np.float32)
    ts = np.arange(x.shape[0] + 1) / 25  # 40 ms frames, as frame_times gives them
    return FrameScores(x, ts, labels or [f"c{i}" for i in range(x.shape[1])], source="a", meta={"hop_s": HOP})


def test_step_filter_is_the_difference_of_half_window_means() -> None:
    y = _curve([(10, 30, 1.0)], 40)
    d = step_filter(y, 4)
    assert d.shape == (41,) and d[0] == d[40] == 0
    assert d[10] == pytest.approx(1.0) and d[30] == pytest.approx(-1.0)
    assert d[8] == pytest.approx(0.5) and d[20] == pytest.approx(0.0)
    np.testing.assert_array_equal(change_points(d), [10, 30])


def test_a_short_event_inside_the_window_keeps_its_own_edges() -> None:
    y = _curve([(50, 53, 0.7)])  # 3 frames, the half window is 6: flat maxima of the filter
    np.testing.assert_array_equal(change_points(step_filter(y, 6)), [50, 53])


def test_boxes_of_clean_rectangles_are_exact() -> None:
    y = _curve([(20, 40, 0.9), (60, 63, 0.7), (70, 90, 0.4)])
    boxes = CSEBB().class_boxes(y, np.arange(101) / 25, HOP)
    assert [(round(a, 2), round(b, 2), round(c, 3)) for a, b, c in boxes] == [
        (0.0, 0.8, 0.0), (0.8, 1.6, 0.9), (1.6, 2.4, 0.0), (2.4, 2.52, 0.7),
        (2.52, 2.8, 0.0), (2.8, 3.6, 0.4), (3.6, 4.0, 0.0),
    ]  # fmt: skip


def test_the_merge_threshold_absorbs_noise_and_the_confidence_is_mean_or_max() -> None:
    clean = _curve([(20, 40, 0.8), (70, 90, 0.5)])
    noisy = np.clip(clean + 0.04 * np.random.default_rng(0).standard_normal(100), 0, 1)
    fs = _fs(noisy)
    events = CSEBB(threshold=0.3).events(fs)
    assert [(e.onset, e.offset) for e in events] == [(0.8, 1.6), (2.8, 3.6)]
    assert events[0].score == pytest.approx(noisy[20:40].mean())
    assert CSEBB(threshold=0.3, confidence="max").events(fs)[0].score == pytest.approx(noisy[20:40].max())
    cuts = change_points(step_filter(noisy, 6))
    assert len(segment(noisy, cuts, 0.0)) > len(segment(noisy, cuts, 0.15)) == 5


def test_per_class_thresholds_and_touching_boxes_are_joined() -> None:
    stairs = _curve([(10, 30, 0.5), (30, 50, 0.9)])  # two boxes that touch, both above 0.4
    other = _curve([(60, 80, 0.6)])
    fs = _fs(stairs, other, labels=["stairs", "other"])
    events = CSEBB(threshold={"stairs": 0.4, "other": 0.7}).events(fs)
    assert [(e.label, e.onset, e.offset, round(e.score, 3)) for e in events] == [("stairs", 0.4, 2.0, 0.9)]
    high = CSEBB(threshold=0.7).events(fs)
    assert [(e.label, e.onset, e.offset) for e in high] == [("stairs", 1.2, 2.0)]


def test_score_table_is_piecewise_constant_over_the_boxes() -> None:
    a, b = _curve([(20, 40, 0.9)]), _curve([(30, 60, 0.6)])
    table = CSEBB().score_table(_fs(a, b))
    np.testing.assert_allclose(table.timestamps, [0, 0.8, 1.2, 1.6, 2.4, 4.0])
    np.testing.assert_allclose(table.scores[:, 0], [0, 0.9, 0.9, 0, 0], atol=1e-6)
    np.testing.assert_allclose(table.scores[:, 1], [0, 0, 0.6, 0.6, 0], atol=1e-6)


def test_transform_and_settings() -> None:
    fs = _fs(_curve([(10, 20, 0.8)]), _curve([(50, 60, 0.9)]), labels=["Speech", "Music"])
    pp = with_transform(CSEBB(threshold=0.5), ClassMap([("Speech", "voice"), ("Music", "voice")]))
    assert isinstance(pp, CSEBB)
    assert [(e.label, e.onset, e.offset) for e in pp.events(fs)] == [("voice", 0.4, 0.8), ("voice", 2.0, 2.4)]
    assert pp.settings()["decoder"] == "csebb" and "transform" in pp.settings()
    with pytest.raises(ConfigError, match="confidence"):
        CSEBB(confidence="median")


def test_detect_csebb_writes_events_and_box_scores(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "out"
    args = ["detect", str(WAV), "--model", "demo", "-o", str(out), "-q"]
    assert main([*args, "--decoder", "csebb", "--step-filter", "0.4", "-f", "tsv,scores,scores_sebb"]) == 0
    rows = [r.split("\t") for r in (out / "events.tsv").read_text().splitlines()[1:]]
    assert rows and all(float(r[2]) > float(r[1]) for r in rows)
    table = (out / "scores_sebb" / "soundscape.tsv").read_text().splitlines()
    raw = (out / "scores" / "soundscape.tsv").read_text().splitlines()
    assert table[0] == raw[0] and 2 < len(table) < len(raw)  # the same columns, one row per box boundary
    assert table[-1].split("\t")[1] == raw[-1].split("\t")[1]  # up to the end of the file
    settings = json.loads((out / "ptsed_settings.json").read_text())
    assert "csebb" in json.dumps(settings)
    assert main(["detect", str(WAV), "--model", "demo", "-f", "scores_sebb", "-o", str(tmp_path / "o2")]) == 2
    assert "--format scores_sebb needs --decoder csebb" in capsys.readouterr().err


def _weak_dev_set(tmp_path: Path) -> tuple[Path, Path]:
    """Score files where the events score 0.4 (below the default threshold 0.5), with their ground truth."""
    scores = tmp_path / "scores"
    scores.mkdir()
    rng = np.random.default_rng(1)
    gt = ["filename\tonset\toffset\tevent_label"]
    for clip in range(3):
        y = np.clip(_curve([(20 + clip * 5, 60 + clip * 5, 0.4)], 250) + 0.02 * rng.standard_normal(250), 0, 1)
        fs = _fs(y, _curve([], 250), labels=["bell", "other"])
        fs.to_dataframe().to_csv(scores / f"c{clip}.tsv", sep="\t", index=False)
        gt.append(f"c{clip}.wav\t{(20 + clip * 5) / 25}\t{(60 + clip * 5) / 25}\tbell")
    (tmp_path / "gt.tsv").write_text("\n".join(gt) + "\n")
    return scores, tmp_path / "gt.tsv"


def test_tune_fits_box_thresholds_and_detect_applies_the_profile(tmp_path: Path) -> None:
    pytest.importorskip("sed_scores_eval")
    from ptsed.postprocess.profile import load_profile

    scores, gt = _weak_dev_set(tmp_path)
    out = tmp_path / "p.json"
    cmd = ["tune", "--scores", str(scores), "--ground-truth", str(gt), "--output", str(out), "--decoder", "csebb"]
    assert main([*cmd, "--step-grid", "0.24,0.48"]) == 0
    profile = load_profile(out)
    assert profile.decoder == "csebb" and profile.fitted == ["bell"]
    assert 0.05 <= profile.thresholds["bell"] < 0.4 and profile.extra["step_filter_s"]["bell"] in (0.24, 0.48)
    assert profile.objective["value"] == pytest.approx(1.0) and profile.objective["default_value"] == 0.0
    from types import SimpleNamespace

    from ptsed.cli.decoder import apply_decoder
    from ptsed.postprocess.pipeline import PostProcessor

    predictor = SimpleNamespace(postprocess=PostProcessor(**profile.apply({})))
    args = SimpleNamespace(decoder=None, step_filter=None, merge_threshold=None, sebb_confidence=None)
    apply_decoder(args, predictor, ["tsv"], profile)  # a csebb profile selects the decoder and its settings
    assert isinstance(predictor.postprocess, CSEBB)
    assert predictor.postprocess.step_filter_s == profile.extra["step_filter_s"]
    y = _fs(_curve([(20, 60, 0.4)], 250), _curve([], 250), labels=["bell", "other"])
    assert [(e.label, e.onset, e.offset) for e in predictor.postprocess.events(y)] == [("bell", 0.8, 2.4)]
    assert main([*cmd[:-2], "--step-grid", "0.24", "--sebb-confidence", "max"]) == 2  # csebb options alone


def test_frame_options_the_boxes_ignore_are_named(capsys) -> None:  # noqa: ANN001
    assert main(["detect", str(WAV), "--model", "demo", "--decoder", "csebb", "--min-duration", "0.5", "-q"]) == 0
    assert "warning: --min-duration do(es) not apply to cSEBB boxes" in capsys.readouterr().err
