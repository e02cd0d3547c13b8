"""Post-processing: median filter and decoder against upstream's fixtures, and hand-worked cases."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conformance import CONFORMANCE, require_shared
from ptsed.core.errors import ConfigError
from ptsed.core.frames import frame_times
from ptsed.core.types import FrameScores
from ptsed.postprocess.decode import decode_events, find_regions
from ptsed.postprocess.filters import median_filter
from ptsed.postprocess.pipeline import PostProcessor, read_class_values

FIXTURE_MODELS = ["ATST-F", "BEATs", "fpasst", "M2D", "ASIT", "frame_mn06", "frame_mn10"]


def _fixture(model: str) -> dict[str, np.ndarray]:
    with np.load(require_shared() / "inference" / f"{model}_25s.npz") as z:
        return {k: z[k] for k in z.files}


def _classes() -> list[str]:
    return json.loads((require_shared() / "classes.json").read_text())["classes"]


def _rows(model: str, th: float) -> list[list[str]]:
    with open(CONFORMANCE / "inference" / f"{model}_25s_th{th}.csv", newline="") as fh:
        return list(csv.reader(fh))[1:]


@pytest.mark.parity
@pytest.mark.parametrize("model", FIXTURE_MODELS)
def test_median_filter_matches_upstream_exactly(model: str) -> None:
    fx = _fixture(model)
    ours = median_filter(fx["probabilities"][0].T, 0.36, 0.04)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, fx["median_filtered"])


@pytest.mark.parity
@pytest.mark.parametrize("model", FIXTURE_MODELS)
def test_decoder_matches_upstream_rows(model: str) -> None:
    fx = _fixture(model)
    labels = _classes()
    timestamps = frame_times(fx["median_filtered"].shape[0] + 1, 0.04, 25.0)  # clipped at the audio length
    for th in (0.1, 0.2, 0.5):
        events = decode_events(fx["median_filtered"], timestamps, labels, th, filename="test_25s.wav")
        rows = _rows(model, th)
        assert len(events) == len(rows), th
        zero_length_at_end = 0
        for e, (label, onset, offset, filename) in zip(events, rows, strict=True):
            assert e.label == label and e.filename == filename
            assert abs(e.onset - float(onset)) <= 1e-9 and abs(e.offset - float(offset)) <= 1e-9
            zero_length_at_end += e.onset == e.offset == 25.0
        assert zero_length_at_end > 0  # upstream's padded tail gives zero-length events, kept as upstream


def test_frame_times_are_short_decimals() -> None:
    t = frame_times(1000, 0.04)
    assert [repr(float(v)) for v in t[[3, 258, 999]]] == ["0.12", "10.32", "39.96"]
    np.testing.assert_array_equal(t, np.arange(1000) * 4 / 100)  # upstream's _frame_to_time formula
    assert frame_times(5, 0.04, 0.1)[-1] == 0.1


def test_find_regions_order_and_edges() -> None:
    active = np.array([[1, 0], [1, 1], [0, 1], [1, 0], [1, 1]], dtype=bool)
    cls, on, off = find_regions(active)
    assert list(zip(cls.tolist(), on.tolist(), off.tolist(), strict=True)) == [
        (0, 0, 2),
        (0, 3, 5),
        (1, 1, 3),
        (1, 4, 5),
    ]


def _fs(scores: np.ndarray, labels: list[str] | None = None) -> FrameScores:
    scores = np.asarray(scores, np.float32)
    labels = labels or [f"c{i}" for i in range(scores.shape[1])]
    return FrameScores(scores, frame_times(scores.shape[0] + 1, 0.04), labels, source="x.wav")


def test_threshold_is_strict_and_per_class() -> None:
    s = np.array([[0.5, 0.2], [0.6, 0.3], [0.5, 0.31]], np.float32)
    pp = PostProcessor(threshold=0.5, median_filter_s=None)
    events = pp(_fs(s))[1]
    assert [(e.label, e.onset, e.offset) for e in events] == [("c0", 0.04, 0.08)]
    assert events[0].score == pytest.approx(0.6)
    per = PostProcessor(threshold={"c1": 0.25}, median_filter_s=None, default_threshold=0.9)
    assert [(e.label, e.onset, e.offset) for e in per(_fs(s))[1]] == [("c1", 0.04, 0.12)]


def test_merge_gap_and_min_duration() -> None:
    col = np.array([1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 0], np.float32)[:, None]  # regions 0-2, 4-7, 11-12
    base = PostProcessor(threshold=0.5, median_filter_s=None)
    assert [(e.onset, e.offset) for e in base(_fs(col))[1]] == [(0.0, 0.08), (0.16, 0.28), (0.44, 0.48)]
    merged = base.with_options(merge_gap_s=0.08)  # the 2-frame gap closes, the 4-frame gap stays
    assert [(e.onset, e.offset) for e in merged(_fs(col))[1]] == [(0.0, 0.28), (0.44, 0.48)]
    short = base.with_options(min_duration_s=0.1)
    assert [(e.onset, e.offset) for e in short(_fs(col))[1]] == [(0.16, 0.28)]


def test_top_k_include_exclude() -> None:
    s = np.array([[0.9, 0.8, 0.7], [0.6, 0.95, 0.1]], np.float32)
    labels = ["Speech", "Dog", "Bird"]
    pp = PostProcessor(threshold=0.5, median_filter_s=None, sort="class")
    assert [e.label for e in pp(_fs(s, labels))[1]] == ["Speech", "Dog", "Bird"]
    top1 = pp.with_options(top_k=1)
    assert [(e.label, e.onset) for e in top1(_fs(s, labels))[1]] == [("Speech", 0.0), ("Dog", 0.04)]
    inc = pp.with_options(include=["dog", "bird"])  # case-insensitive
    assert {e.label for e in inc(_fs(s, labels))[1]} == {"Dog", "Bird"}
    exc = pp.with_options(exclude=["Speech"])
    assert {e.label for e in exc(_fs(s, labels))[1]} == {"Dog", "Bird"}
    with pytest.raises(ConfigError, match="did you mean 'Dog'"):
        pp.with_options(include=["Dgo"])(_fs(s, labels))


def test_median_filter_seconds_and_per_class() -> None:
    rng = np.random.default_rng(0)
    s = rng.random((50, 2)).astype(np.float32)
    pp = PostProcessor(median_filter_s={"c0": 0.2}, threshold=0.5)  # c1 gets the default 0.36 s
    out = pp.filter(_fs(s)).scores
    np.testing.assert_array_equal(out[:, 0], median_filter(s[:, :1], 0.2, 0.04)[:, 0])
    np.testing.assert_array_equal(out[:, 1], median_filter(s[:, 1:], 0.36, 0.04)[:, 0])
    assert not np.array_equal(out[:, 0], median_filter(s[:, :1], 0.36, 0.04)[:, 0])  # 5 frames, not 9
    unfiltered = PostProcessor(median_filter_s=None).filter(_fs(s)).scores
    np.testing.assert_array_equal(unfiltered, s)


def test_read_class_values(tmp_path: Path) -> None:
    (tmp_path / "t.tsv").write_text("event_label\tthreshold\nAccelerating, revving, vroom\t0.3\nDog\t0.7\n")
    (tmp_path / "t.csv").write_text('label,threshold\n"Accelerating, revving, vroom",0.3\nDog,0.7\n')
    (tmp_path / "t.json").write_text('{"Accelerating, revving, vroom": 0.3, "Dog": 0.7}')
    for name in ("t.tsv", "t.csv", "t.json"):
        assert read_class_values(tmp_path / name) == {"Accelerating, revving, vroom": 0.3, "Dog": 0.7}
    (tmp_path / "bad.tsv").write_text("Dog\t0.5\nCat\tlots\n")
    with pytest.raises(ConfigError, match="not a number"):
        read_class_values(tmp_path / "bad.tsv")
    pp = PostProcessor(threshold=str(tmp_path / "t.tsv"), median_filter_s=None)
    with pytest.raises(ConfigError, match="unknown class"):
        pp(_fs(np.zeros((3, 2))))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"sort": "class"},
        {"median_filter_s": None, "threshold": 0.6},
        {"median_filter_s": [0.2, 0.36, 0.0, 0.6, 0.12, 0.36], "threshold": [0.3, 0.4, 0.5, 0.6, 0.7, 0.45]},
        {"top_k": 2, "median_filter_s": [0.2, 0.36, 0.0, 0.6, 0.12, 0.36]},
        {"top_k": 1, "include": ["c1", "c3", "c4"], "min_duration_s": 0.2, "merge_gap_s": 0.12},
        {"exclude": ["c0"], "merge_gap_s": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], "min_duration_s": 0.08},
    ],
)
@pytest.mark.parametrize("block_values", [1, 7, 500, 10_000])
def test_blockwise_events_equal_whole_file_decoding(options: dict, block_values: int) -> None:
    """`events` filters and decodes a few classes (or, for top-k, frames) at a time; the events must be
    exactly those of filtering and decoding the whole array."""
    rng = np.random.default_rng(3)
    t, k = 400, 6
    # smooth-ish random scores, with ties (saturated 1.0 and 0.5 plateaus) to test the top-k mask
    s = np.clip(np.cumsum(rng.normal(0, 0.15, (t, k)), axis=0) % 1.3, 0, 1).astype(np.float32)
    s[100:130, :3] = 1.0
    s[200:220, 2:5] = 0.5
    labels = [f"c{i}" for i in range(k)]
    pp = PostProcessor(**options)
    fs = FrameScores(s, frame_times(t + 1, 0.04), labels, source="x.wav")
    whole = pp.decode(pp.filter(fs))
    assert len(whole) > 10
    blockwise = pp.events(fs, block_values=block_values)
    assert [(e.onset, e.offset, e.label, e.score) for e in blockwise] == [
        (e.onset, e.offset, e.label, e.score) for e in whole
    ]
