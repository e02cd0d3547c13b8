"""Metrics: hand-worked cases, equality with sed_scores_eval, and PSDS against the reference psds_eval."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from ptsed.evaluation.metrics import (
    PSDS1,
    PSDS2,
    PSDSSettings,
    average_precision,
    collar_f1,
    frame_map,
    psds,
    segment_metrics,
)
from ptsed.evaluation.scores import ScoreStore, events_to_scores, read_scores_tsv, uniform_hop
from ptsed.evaluation.synthetic import make_synthetic_set

pytestmark = pytest.mark.filterwarnings("ignore:pkg_resources is deprecated", "ignore::FutureWarning:psds_eval")


def _store(scores: dict, ts: np.ndarray, names: list[str], **kw) -> ScoreStore:
    store = ScoreStore(names, dtype=np.float64, **kw)
    for clip, s in scores.items():
        store.add(clip, s, ts)
    return store.finalize()


def _dataframes(scores: dict, ts: np.ndarray, names: list[str]) -> dict:
    from sed_scores_eval.base_modules.scores import create_score_dataframe

    return {c: create_score_dataframe(s, ts, names) for c, s in scores.items()}


# -- hand-worked ------------------------------------------------------------------------------------------
def _hand_case():  # noqa: ANN202
    """One 10-frame clip of 1 s frames, two classes, 72 s of audio (one false positive = 50 per hour).

    Class A (ground truth 2-4 s): its score 0.9 covers 2-3 s only (relevant, but covers only half of the
    event, below gtc 0.7), 0.5 at 6-7 s is a false positive, and at 0.3 the detection reaches 2-4 s:
    TPR 1 first at eFPR 50 -> single-class PSDS 0.5. Class B (5-8 s, score 0.8 on it) is found with no
    false positive -> 1.0. Their mean is 0.75; PSDS with alpha_st = 1 subtracts the spread (0.5 up to
    eFPR 50) and gives 0.5.
    """
    ts = np.arange(11, dtype=np.float64)
    a = np.array([0, 0, 0.9, 0.3, 0, 0, 0.5, 0, 0, 0])
    b = np.array([0, 0, 0, 0, 0, 0.8, 0.8, 0.8, 0, 0])
    scores = {"x": np.stack([a, b], axis=1)}
    gt = {"x": [(2.0, 4.0, "A"), (5.0, 8.0, "B")]}
    return scores, gt, {"x": 72.0}, ts


def test_psds_hand_worked() -> None:
    scores, gt, dur, ts = _hand_case()
    res = psds(_store(scores, ts, ["A", "B"]), gt, dur, PSDS1)
    assert res.per_class == pytest.approx({"A": 0.5, "B": 1.0}, abs=1e-12)
    assert res.macro == pytest.approx(0.75, abs=1e-12)
    assert res.value == pytest.approx(0.5, abs=1e-12)
    etpr, efpr = res.roc
    assert efpr[-1] == 100 and etpr[-1] == pytest.approx(1.0)
    # without the spread penalty, PSDS is the mean of the per-class curves: (0.5 * 50 + 1 * 50) / 100
    flat = psds(_store(scores, ts, ["A", "B"]), gt, dur, PSDSSettings(0.7, 0.7, alpha_st=0.0))
    assert flat.value == pytest.approx(0.75, abs=1e-12)


def test_average_precision_hand_worked() -> None:
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # ties share one threshold: at 0.9 precision 1/2 (recall 1/2), at 0.1 precision 2/3 (recall 1)
    assert average_precision([0.9, 0.9, 0.1], [1, 0, 1]) == pytest.approx(0.25 + 0.5 * 2 / 3)
    assert np.isnan(average_precision([0.1, 0.2], [0, 0]))
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    s, y = np.round(rng.uniform(size=500), 2), rng.uniform(size=500) < 0.3
    assert average_precision(s, y) == pytest.approx(sklearn.average_precision_score(y, s), abs=1e-12)


def test_collar_f1_hand_worked() -> None:
    ts = np.arange(0, 10.05, 0.1)
    gt = {"x": [(2.0, 4.0, "A")], "y": [(2.0, 4.0, "A")]}
    a_x = ((ts[:-1] >= 2.1) & (ts[:-1] < 4.1)).astype(float)  # onset 0.1 s late: within the 0.2 s collar
    a_y = ((ts[:-1] >= 2.5) & (ts[:-1] < 4.0)).astype(float)  # onset 0.5 s late: outside
    store = _store({"x": a_x[:, None], "y": a_y[:, None]}, ts, ["A"])
    res = collar_f1(store, gt, [0.5])[0.5]
    assert res["stats"]["A"] == {"tps": 1, "fps": 1, "n_ref": 2}
    assert res["f1"]["A"] == pytest.approx(0.5) and res["f1"]["micro_average"] == pytest.approx(0.5)


def test_segment_f1_hand_worked() -> None:
    ts = np.arange(0, 4.01, 0.5)
    score = np.array([0.9, 0.9, 0, 0, 0, 0.6, 0, 0])  # active in segments 0 and 2 (1 s segments)
    store = _store({"x": score[:, None]}, ts, ["A"])
    res = segment_metrics(store, {"x": [(0.2, 1.5, "A")]}, {"x": 4.0}, [0.5])
    stats = res["f1"][0.5]["stats"]["A"]
    assert (stats["tps"], stats["fps"], stats["n_ref"]) == (1, 1, 2)
    assert res["f1"][0.5]["f1"]["A"] == pytest.approx(0.5)


def test_frame_map_uses_the_frame_targets() -> None:
    ts = np.arange(0, 10.001, 0.04)
    s = np.zeros((250, 1))
    s[50:75, 0] = 1.0  # exactly the event 2.0-3.0 s
    store = _store({"x": s}, ts, ["A"])
    assert frame_map(store, {"x": [(2.0, 3.0, "A")]})["A"] == pytest.approx(1.0)
    # event 2-4 s = 50 frames; the 25 frames scored 1 are all in it (precision 1 at recall 0.5), the rest tie
    # at 0 (precision 50 / 250 at recall 1)
    assert frame_map(store, {"x": [(2.0, 4.0, "A")]})["A"] == pytest.approx(0.5 * 1 + 0.5 * 0.2)
    uneven = _store({"x": np.zeros((2, 1))}, np.array([0.0, 1.0, 3.0]), ["A"])
    assert frame_map(uneven, {"x": [(0.0, 1.0, "A")]}) is None


# -- against sed_scores_eval --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic():  # noqa: ANN201
    return make_synthetic_set(24, 6, seed=1, levels=None)


def test_psds_equals_sed_scores_eval(synthetic) -> None:  # noqa: ANN001
    import sed_scores_eval

    gt, dur, scores, names, ts = synthetic
    store = _store(scores, ts, names)
    ours = psds(store, gt, dur, [PSDS1, PSDS2])
    dfs = _dataframes(scores, ts, names)
    for res, st in zip(ours, (PSDS1, PSDS2), strict=True):
        ref = sed_scores_eval.intersection_based.psds(
            dfs, gt, dur, dtc_threshold=st.dtc_threshold, gtc_threshold=st.gtc_threshold,
            cttc_threshold=st.cttc_threshold, alpha_ct=st.alpha_ct, alpha_st=st.alpha_st,
        )  # fmt: skip
        assert 0.05 < ref[0] < 0.95  # a non-trivial case
        assert res.value == pytest.approx(ref[0], abs=1e-12)
        for c in names:
            assert res.per_class[c] == pytest.approx(ref[1][c], abs=1e-12)
        np.testing.assert_allclose(res.roc[0], ref[2][0], atol=1e-12)
        np.testing.assert_allclose(res.roc[1], ref[2][1], atol=1e-9)


def test_collar_and_segment_metrics_equal_sed_scores_eval(synthetic) -> None:  # noqa: ANN001
    import sed_scores_eval

    gt, dur, scores, names, ts = synthetic
    store = _store(scores, ts, names)
    dfs = _dataframes(scores, ts, names)
    # a tiny chunk size makes every class its own chunk
    col = collar_f1(store, gt, [0.3, 0.5], chunk_bytes=1)
    seg = segment_metrics(store, gt, dur, [0.5], chunk_bytes=1)
    for thr in (0.3, 0.5):
        f, *_ = sed_scores_eval.collar_based.fscore(
            dfs, gt, thr, onset_collar=0.2, offset_collar=0.2, offset_collar_rate=0.2
        )
        for key in [*names, "macro_average", "micro_average"]:
            assert col[thr]["f1"][key] == pytest.approx(f[key], abs=1e-12)
    au, _ = sed_scores_eval.segment_based.auroc(dfs, gt, dur, max_fpr=0.1, segment_length=1.0)
    f, *_ = sed_scores_eval.segment_based.fscore(dfs, gt, dur, 0.5, segment_length=1.0)
    for key in [*names, "mean"]:
        assert seg["pauroc"][key] == pytest.approx(au[key], abs=1e-12)
    for key in [*names, "macro_average", "micro_average"]:
        assert seg["f1"][0.5]["f1"][key] == pytest.approx(f[key], abs=1e-12)


def test_psds_over_a_class_subset_and_validation(synthetic) -> None:  # noqa: ANN001
    gt, dur, scores, names, ts = synthetic
    store = _store(scores, ts, names)
    full = psds(store, gt, dur, PSDS1)
    sub = psds(store, gt, dur, PSDS1, classes=names[:3])
    assert set(sub.per_class) == set(names[:3])
    assert sub.per_class == pytest.approx({c: full.per_class[c] for c in names[:3]}, abs=1e-12)
    with pytest.raises(ValueError, match="no ground-truth events"):
        psds(store, {c: [] for c in gt}, dur, PSDS1)
    with pytest.raises(ValueError, match="cttc"):
        psds(store, gt, dur, PSDSSettings(0.1, 0.1, cttc_threshold=None, alpha_ct=0.5))


# -- against the reference implementation psds_eval ---------------------------------------------------------
class _Numpy2Shim:
    """numpy for psds_eval 0.5.3, which calls ``int()`` on a (1, 1) array (an error with numpy >= 2.?)."""

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(np, name)

    @staticmethod
    def argwhere(a):  # noqa: ANN001, ANN205
        out = np.argwhere(a)
        return out.reshape(()) if out.size == 1 else out


@pytest.mark.parametrize("settings", [PSDS1, PSDS2], ids=["psds1", "psds2"])
def test_psds_matches_psds_eval_with_every_threshold(settings: PSDSSettings, monkeypatch) -> None:  # noqa: ANN001
    """Scores on a 0.05 grid and thresholds between every two levels: psds_eval sees every operating point."""
    psds_eval_module = pytest.importorskip("psds_eval.psds")
    from sed_scores_eval.intersection_based.reference import approximate_psds

    monkeypatch.setattr(psds_eval_module, "np", _Numpy2Shim())
    gt, dur, scores, names, ts = make_synthetic_set(10, 3, seed=0, levels=20, skill=0.6)
    ours = psds(_store(scores, ts, names), gt, dur, settings)
    thresholds = np.round(np.arange(0.025, 1.0, 0.05), 3)
    with contextlib.redirect_stdout(io.StringIO()):
        ref = approximate_psds(
            _dataframes(scores, ts, names), gt, dur, thresholds=thresholds,
            dtc_threshold=settings.dtc_threshold, gtc_threshold=settings.gtc_threshold,
            cttc_threshold=settings.cttc_threshold, alpha_ct=settings.alpha_ct, alpha_st=settings.alpha_st,
        )  # fmt: skip
    assert 0.05 < ref[0] < 0.95
    assert abs(ours.value - ref[0]) < 1e-3


# -- the store ----------------------------------------------------------------------------------------------
def test_store_spills_to_disk_and_gives_the_same_numbers(synthetic, tmp_path) -> None:  # noqa: ANN001
    gt, dur, scores, names, ts = synthetic
    ram = _store(scores, ts, names)
    disk = _store(scores, ts, names, memory_limit_bytes=10_000, tmp_dir=tmp_path)
    assert disk.on_disk and not ram.on_disk
    assert list(tmp_path.iterdir())  # the memory-mapped file lives there
    for k in range(len(names)):
        np.testing.assert_array_equal(ram.row(k), disk.row(k))
    np.testing.assert_array_equal(disk.clip_scores("clip003"), scores["clip003"])
    assert psds(disk, gt, dur, PSDS1).value == psds(ram, gt, dur, PSDS1).value
    disk.close()
    assert not list(tmp_path.iterdir())


def test_store_picks_columns_by_name_and_filters() -> None:
    from ptsed.core.errors import ConfigError
    from ptsed.postprocess.filters import median_filter

    ts = np.arange(0, 10.001, 0.04)
    s = np.random.default_rng(0).uniform(size=(250, 3))
    store = ScoreStore(["c", "a"], median_filter_s=0.36)
    store.add("x", s, ts, ["a", "b", "c"])
    store.finalize()
    np.testing.assert_allclose(store.clip_scores("x"), median_filter(s[:, [2, 0]], 0.36, 0.04), rtol=1e-6)
    with pytest.raises(ConfigError, match="lack"):
        ScoreStore(["z"]).add("x", s, ts, ["a", "b", "c"])
    with pytest.raises(ConfigError, match="even frame grid"):
        ScoreStore(["a"], median_filter_s=0.36).add("x", s[:2, :1], np.array([0, 1.0, 3.0]))
    with pytest.raises(ConfigError, match="twice"):
        st = ScoreStore(["a"])
        st.add("x", s[:, :1], ts)
        st.add("x", s[:, :1], ts)


def test_events_to_scores_and_score_files(tmp_path) -> None:
    s, ts = events_to_scores([(1.0, 2.5, "a"), (2.0, 3.0, "a"), (0.5, 12.0, "b")], ["a", "b"], 10.0)
    assert ts.tolist() == [0.0, 0.5, 1.0, 2.0, 2.5, 3.0, 10.0]
    assert s[:, 0].tolist() == [0, 0, 1, 1, 1, 0] and s[:, 1].tolist() == [0, 1, 1, 1, 1, 1]
    assert uniform_hop(ts) is None and uniform_hop(np.arange(5) * 0.04) == pytest.approx(0.04)
    path = tmp_path / "x.tsv"
    path.write_text("onset\toffset\ta\tb\n0\t0.04\t0.1\t0.2\n0.04\t0.08\t0.3\t0.4\n")
    values, stamps, labels = read_scores_tsv(path)
    assert labels == ["a", "b"] and stamps.tolist() == [0, 0.04, 0.08] and values[1, 1] == 0.4
    from ptsed.core.errors import ConfigError

    path.write_text("onset\toffset\ta\n0\t0.04\t0.1\n0.1\t0.2\t0.3\n")
    with pytest.raises(ConfigError, match="contiguous"):
        read_scores_tsv(path)
