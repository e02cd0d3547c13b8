"""The evaluation protocol: class intersection, dropped clips, merging, median filter, matching, durations."""

from __future__ import annotations

import numpy as np
import pytest

from ptsed.core.errors import ConfigError
from ptsed.evaluation.metrics import PSDS1, psds
from ptsed.evaluation.protocol import AUDIOSET_STRONG, evaluate
from ptsed.evaluation.scores import ScoreStore
from ptsed.evaluation.sources import Detections, ScoreFiles
from ptsed.evaluation.synthetic import make_synthetic_set, write_synthetic_set

pytestmark = pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")


class Memory:
    """An in-memory score source (what ScoreFiles gives, without files)."""

    dtype, filterable, description = np.float64, True, "memory"

    def __init__(self, scores: dict, ts: np.ndarray, labels: list[str]) -> None:
        self.scores, self.ts, self.labels = scores, ts, list(labels)

    def names(self) -> list[str]:
        return list(self.scores)

    def read(self, name: str, duration_s: float | None = None):  # noqa: ANN201
        return self.scores[name], self.ts, self.labels


@pytest.fixture(scope="module")
def data():  # noqa: ANN201
    return make_synthetic_set(16, 4, seed=2, levels=None)


def _psds1(scores: dict, ts, names, gt, dur, median_s=None) -> float:  # noqa: ANN001
    store = ScoreStore(names, dtype=np.float64, median_filter_s=median_s)
    for c, s in scores.items():
        store.add(c, s, ts)
    store.finalize()
    classes = [n for n in names if any(e[2] == n for ev in gt.values() for e in ev)]
    return psds(store, gt, dur, PSDS1, classes=classes).value


def test_plain_evaluation_equals_metrics_on_the_same_data(data) -> None:  # noqa: ANN001
    gt, dur, scores, names, ts = data
    res = evaluate(Memory(scores, ts, names), gt, dur, metrics=["psds1"], warn=None)
    assert res.summary["psds1"] == pytest.approx(_psds1(scores, ts, names, gt, dur), abs=1e-12)
    assert res.summary["n_clips"] == 16 and res.summary["n_classes"] == 4
    assert res.summary["settings"]["median_filter_s"] is None
    assert [r["class"] for r in res.per_class] == names
    assert res.summary["psds1_macro"] == pytest.approx(np.mean([r["psds1"] for r in res.per_class]))


def test_classes_unknown_to_the_system_are_dropped_and_listed(data) -> None:  # noqa: ANN001
    gt, dur, scores, names, ts = data
    extra = {c: [*ev, (0.5, 1.5, "Unknown class")] for c, ev in gt.items()}
    warnings = []
    res = evaluate(Memory(scores, ts, names), extra, dur, metrics=["psds1"], warn=warnings.append)
    base = evaluate(Memory(scores, ts, names), gt, dur, metrics=["psds1"], warn=None)
    assert res.summary["classes_dropped"] == ["Unknown class"]
    assert any("Unknown class" in w for w in warnings)
    assert res.summary["psds1"] == base.summary["psds1"]
    # classes of the system without ground truth do not count either
    more = {c: np.c_[s, s[:, :1]] for c, s in scores.items()}
    res2 = evaluate(Memory(more, ts, [*names, "never annotated"]), gt, dur, metrics=["psds1"], warn=None)
    assert res2.summary["classes_without_ground_truth"] == ["never annotated"]
    assert res2.summary["psds1"] == base.summary["psds1"]


def test_protocol_drops_clips_left_without_events(data) -> None:  # noqa: ANN001
    gt, dur, scores, names, ts = data
    # three clips hold only events of a class the system does not know
    gt2 = {c: (ev if i >= 3 else [(1.0, 2.0, "Other")]) for i, (c, ev) in enumerate(gt.items())}
    src = Memory(scores, ts, names)
    plain = evaluate(src, gt2, dur, metrics=["psds1"], warn=None)
    proto = evaluate(src, gt2, dur, metrics=["psds1"], protocol="audioset-strong", median_filter_s=None, warn=None)
    assert plain.summary["n_clips"] == 16 and plain.summary["clips_dropped_without_events"] == 0
    assert proto.summary["n_clips"] == 13 and proto.summary["clips_dropped_without_events"] == 3
    kept = list(gt)[3:]
    expected = _psds1({c: scores[c] for c in kept}, ts, names, {c: gt2[c] for c in kept}, {c: dur[c] for c in kept})
    assert proto.summary["psds1"] == pytest.approx(expected, abs=1e-12)
    # the clips without events only add false positives (and audio time) when they stay
    assert plain.summary["psds1"] != proto.summary["psds1"]


def test_overlapping_ground_truth_is_merged(data) -> None:  # noqa: ANN001
    import sed_scores_eval
    from sed_scores_eval.base_modules.scores import create_score_dataframe

    gt, dur, scores, names, ts = data
    clip = next(c for c, ev in gt.items() if ev)
    on, off, label = gt[clip][0]
    split = dict(gt)
    split[clip] = [(on, (on + off) / 2, label), ((on + off) / 2, off, label), (on, on + 0.01, label), *gt[clip][1:]]
    res = evaluate(Memory(scores, ts, names), split, dur, metrics=["psds1"], warn=None)
    base = evaluate(Memory(scores, ts, names), gt, dur, metrics=["psds1"], warn=None)
    assert res.summary["events_merged"] == 2
    assert res.summary["psds1"] == base.summary["psds1"]
    # sed_scores_eval itself refuses ground truth with touching events of one class
    dfs = {c: create_score_dataframe(s, ts, names) for c, s in scores.items()}
    with pytest.raises(AssertionError, match="Connected"):
        sed_scores_eval.intersection_based.psds(dfs, split, dur, dtc_threshold=0.7, gtc_threshold=0.7, alpha_st=1)


def test_median_filter_applies_to_saved_scores(data, tmp_path) -> None:  # noqa: ANN001
    gt, dur, scores, names, ts = data
    from ptsed.postprocess.filters import median_filter

    paths = write_synthetic_set(tmp_path / "syn", n_clips=12, n_classes=3, seed=4)
    src = ScoreFiles(paths["scores"])
    from ptsed.io.annotations import read_dcase_events, read_durations

    gt2, _ = read_dcase_events(paths["ground_truth"])
    dur2 = read_durations(paths["durations"])
    raw = evaluate(src, gt2, dur2, metrics=["psds1"], warn=None)
    filt = evaluate(src, gt2, dur2, metrics=["psds1"], median_filter_s=0.36, warn=None)
    proto = evaluate(src, gt2, dur2, metrics=["psds1"], protocol="audioset-strong", warn=None)
    assert filt.summary["settings"]["median_filter_s"] == 0.36 == proto.summary["settings"]["median_filter_s"]
    assert raw.summary["psds1"] != filt.summary["psds1"]
    assert proto.summary["psds1"] == filt.summary["psds1"]  # every clip has events here: only the filter differs
    pre = {}
    for clip in gt2:
        values, stamps, labels = src.read(clip)
        pre[clip] = median_filter(values, 9 * 0.04, 0.04)
    manual = evaluate(Memory(pre, stamps, labels), gt2, dur2, metrics=["psds1"], warn=None)
    assert manual.summary["psds1"] == pytest.approx(filt.summary["psds1"], abs=1e-12)
    off = evaluate(src, gt2, dur2, metrics=["psds1"], protocol="audioset-strong", median_filter_s=None, warn=None)
    assert off.summary["psds1"] == raw.summary["psds1"]


def test_detections_equal_scores_at_the_threshold(tmp_path) -> None:
    paths = write_synthetic_set(tmp_path / "syn", n_clips=10, n_classes=3, seed=5)
    from ptsed.io.annotations import read_dcase_events, read_durations

    gt, _ = read_dcase_events(paths["ground_truth"])
    dur = {c: 10.0 for c in read_durations(paths["durations"])}
    m = ["collar_f1", "segment_f1", "psds1"]
    s = evaluate(ScoreFiles(paths["scores"]), gt, dur, metrics=m, warn=None).summary
    d = evaluate(Detections(paths["detections"]), gt, dur, metrics=m, median_filter_s=0.36, warn=None).summary
    assert d["settings"]["median_filter_s"] is None  # never applied to detections
    assert d["collar_f1"] == s["collar_f1"] and d["segment_f1"] == s["segment_f1"]
    assert 0 <= d["psds1_macro"] <= s["psds1_macro"]  # one operating point cannot beat the whole curve


def test_missing_predictions_durations_and_failures(data) -> None:  # noqa: ANN001
    gt, dur, scores, names, ts = data
    some = dict(list(scores.items())[:10])
    warnings: list[str] = []
    res = evaluate(Memory(some, ts, names), gt, {c: dur[c] for c in list(dur)[:8]}, metrics=["psds1"],
                   warn=warnings.append)  # fmt: skip
    assert len(res.summary["clips_missing_predictions"]) == 6 and res.summary["n_clips"] == 10
    assert res.summary["clips_without_duration"] == 2
    assert any("no predictions" in w for w in warnings) and any("no duration" in w for w in warnings)

    class Broken(Memory):
        def read(self, name, duration_s=None):  # noqa: ANN001, ANN201
            if name == "clip001":
                raise ConfigError("clip001.tsv: unreadable")
            return super().read(name, duration_s)

    res = evaluate(Broken(scores, ts, names), gt, dur, metrics=["psds1"], warn=None)
    assert res.summary["clips_failed"] == {"clip001": "clip001.tsv: unreadable"} and res.summary["n_clips"] == 15
    with pytest.raises(ConfigError, match="no clip of the ground truth"):
        evaluate(Memory({"zzz": scores["clip000"]}, ts, names), gt, dur, warn=None)
    with pytest.raises(ConfigError, match="share no class"):
        evaluate(Memory(scores, ts, ["x", "y", "z", "w"]), gt, dur, warn=None)
    with pytest.raises(ConfigError, match="unknown metric"):
        evaluate(Memory(scores, ts, names), gt, dur, metrics=["psds9"], warn=None)


def test_audioset_segment_ids_match_clip_names(data) -> None:  # noqa: ANN001
    gt, dur, scores, names, ts = data
    renamed_gt = {f"Y{c}": ev for c, ev in gt.items()}
    renamed_dur = {f"Y{c}": d for c, d in dur.items()}
    src = Memory({f"{c}_30000": s for c, s in scores.items()}, ts, names)  # files named by segment id
    res = evaluate(src, renamed_gt, renamed_dur, metrics=["psds1"], warn=None)
    base = evaluate(Memory(scores, ts, names), gt, dur, metrics=["psds1"], warn=None)
    assert res.summary["n_clips"] == 16 and res.summary["psds1"] == base.summary["psds1"]


def test_the_audioset_strong_protocol_is_upstreams() -> None:
    assert AUDIOSET_STRONG.median_filter_s == 0.36 and AUDIOSET_STRONG.drop_clips_without_events
    assert AUDIOSET_STRONG.clip_s == 10.0 and AUDIOSET_STRONG.vocabulary == "audioset_strong_447"
    assert (PSDS1.dtc_threshold, PSDS1.gtc_threshold, PSDS1.cttc_threshold, PSDS1.alpha_ct, PSDS1.alpha_st) == (
        0.7, 0.7, None, 0.0, 1.0
    )  # fmt: skip


# -- issue 17: detections that miss a class, header-only and unknown labels; scores outside [0, 1] ------------
def _tsv(path, rows: list[str], header: str = "filename\tonset\toffset\tevent_label"):  # noqa: ANN001, ANN202
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


GT_ROWS = ["a.wav\t0.5\t2.0\tdog", "a.wav\t3.0\t4.0\tcat", "b.wav\t1.0\t2.0\tcat"]


def test_a_class_never_detected_counts_with_recall_zero(tmp_path) -> None:  # noqa: ANN001
    gt = {"a": [(0.5, 2.0, "dog"), (3.0, 4.0, "cat")], "b": [(1.0, 2.0, "cat")]}
    det = Detections(_tsv(tmp_path / "det.tsv", ["a.wav\t0.5\t2.0\tdog"]))
    res = evaluate(det, gt, {"a": 10.0, "b": 10.0}, metrics=["collar_f1", "psds1"], warn=None)
    assert res.summary["clips_failed"] == {} and res.summary["n_clips"] == 2
    rows = {r["class"]: r for r in res.per_class}
    assert set(rows) == {"cat", "dog"}  # the missed class is scored, not left out
    assert rows["cat"]["collar_f1@0.5"] == 0 and rows["dog"]["collar_f1@0.5"] == 1
    assert res.summary["collar_f1"]["0.5"]["recall_micro"] == pytest.approx(1 / 3)
    # the same under the audioset-strong protocol (the vocabulary decides the classes)
    res = evaluate(Detections(tmp_path / "det.tsv"), {"a": [(0.5, 2.0, "Dog"), (3, 4, "Cat")]}, {"a": 10.0},
                   protocol="audioset-strong", metrics=["collar_f1"], warn=None)  # fmt: skip
    assert res.summary["n_classes"] == 2 and res.summary["collar_f1"]["0.5"]["recall_micro"] == 0


def test_header_only_detections_score_zero(tmp_path) -> None:  # noqa: ANN001
    gt = {"a": [(0.5, 2.0, "dog")], "b": [(1.0, 2.0, "cat")]}
    det = Detections(_tsv(tmp_path / "det.tsv", []))
    res = evaluate(det, gt, {"a": 10.0, "b": 10.0}, metrics=["collar_f1", "psds1"], warn=None)
    assert res.summary["n_clips"] == 2 and res.summary["n_classes"] == 2
    assert res.summary["psds1_macro"] == 0 and res.summary["collar_f1"]["0.5"]["micro"] == 0
    res = evaluate(det, gt, {"a": 10.0}, metrics=["psds1"], warn=None)  # b: no duration, nothing detected
    assert "no detections and no duration" in res.summary["clips_failed"]["b"]


def test_detections_of_a_label_not_in_the_ground_truth_are_ignored_with_one_warning(tmp_path) -> None:  # noqa: ANN001
    gt = {"a": [(0.5, 2.0, "dog")], "b": [(1.0, 2.0, "cat")]}
    rows = ["a.wav\t0.5\t2.0\tdog", "b.wav\t1.0\t2.0\tcat", "b.wav\t3.0\t4.0\tbird", "a.wav\t5\t6\tbird"]
    warnings: list[str] = []
    res = evaluate(Detections(_tsv(tmp_path / "det.tsv", rows)), gt, {"a": 10.0, "b": 10.0},
                   metrics=["collar_f1"], warn=warnings.append)  # fmt: skip
    assert warnings == ["detections of 1 label(s) not in the ground truth are ignored: bird"]
    assert res.summary["collar_f1"]["0.5"]["micro"] == 1.0 and [r["class"] for r in res.per_class] == ["cat", "dog"]


@pytest.mark.parametrize("bad", [2.5, -0.1, np.nan])
def test_scores_outside_zero_one_fail_the_clip_clearly(data, bad) -> None:  # noqa: ANN001
    gt, dur, scores, names, ts = data
    broken = {c: s.copy() for c, s in scores.items()}
    broken["clip003"][5, 1] = bad
    res = evaluate(Memory(broken, ts, names), gt, dur, metrics=["psds1"], warn=None)
    msg = res.summary["clips_failed"]["clip003"]
    assert "clip003" in msg and "[0, 1]" in msg and res.summary["n_clips"] == 15
    logits = {c: s * 8 - 4 for c, s in scores.items()}
    with pytest.raises(ConfigError, match="no clip could be scored"):
        evaluate(Memory(logits, ts, names), gt, dur, metrics=["psds1"], warn=None)
