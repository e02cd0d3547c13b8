"""``ptsed evaluate``: every input mode, the files it writes, and the AudioSet-strong protocol end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from conformance import LABELS
from ptsed.cli.main import main
from ptsed.evaluation.synthetic import write_synthetic_set

pytestmark = pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")

HEADLINE = ("psds1", "psds1_macro", "psds2", "psds2_macro", "pauroc", "collar_f1", "segment_f1", "frame_map")


def _summary(folder) -> dict:  # noqa: ANN001
    return json.loads((folder / "summary.json").read_text())


@pytest.fixture(scope="module")
def syn(tmp_path_factory):  # noqa: ANN201
    return write_synthetic_set(tmp_path_factory.mktemp("syn"), n_clips=12, n_classes=4, seed=11)


def test_scores_mode_writes_summary_per_class_and_plot(syn, tmp_path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "eval"
    args = ["--scores", str(syn["scores"]), "--output", str(out), "--thresholds", "0.3,0.5", "--per-class"]
    code = main(["evaluate", "--ground-truth", str(syn["ground_truth"]), "--durations", str(syn["durations"]), *args])
    assert code == 0
    s = _summary(out)
    for key in HEADLINE:
        assert key in s
    assert 0 < s["psds1"] < 1 and 0 < s["psds1_macro"] < 1 and s["protocol"] == "none"
    assert set(s["collar_f1"]) == {"0.3", "0.5"}
    lines = (out / "per_class.csv").read_text().splitlines()
    assert lines[0].startswith("class,n_events,psds1,psds2,pauroc") and len(lines) == 5
    assert (out / "psd_roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "psds1" in printed and "class0" in printed and "summary.json" in printed
    # psds1 is sed_scores_eval's psds on the same files
    import sed_scores_eval

    ref = sed_scores_eval.intersection_based.psds(
        str(syn["scores"]), str(syn["ground_truth"]), str(syn["durations"]),
        dtc_threshold=0.7, gtc_threshold=0.7, cttc_threshold=None, alpha_ct=0, alpha_st=1,
    )  # fmt: skip
    assert s["psds1"] == pytest.approx(ref[0], abs=1e-12)
    assert s["psds1_macro"] == pytest.approx(np.mean(list(ref[1].values())), abs=1e-12)


def test_detections_mode(syn, tmp_path) -> None:  # noqa: ANN001
    out = tmp_path / "eval"
    args = ["--detections", str(syn["detections"]), "--output", str(out), "--metrics", "psds1,collar_f1"]
    assert (
        main(["evaluate", "--ground-truth", str(syn["ground_truth"]), "--durations", str(syn["durations"]), *args]) == 0
    )
    s = _summary(out)
    assert s["source"].startswith("detections") and "psds2" not in s and "collar_f1" in s
    assert 0 <= s["psds1"] <= 1


def test_median_filter_option_and_errors(syn, tmp_path, capsys) -> None:  # noqa: ANN001
    base = ["evaluate", "--ground-truth", str(syn["ground_truth"]), "--durations", str(syn["durations"]),
            "--scores", str(syn["scores"]), "--metrics", "psds1", "--no-plot"]  # fmt: skip
    assert main([*base, "--output", str(tmp_path / "a"), "--median-filter", "0.36"]) == 0
    assert main([*base, "--output", str(tmp_path / "b"), "--protocol", "audioset-strong", "--median-filter", "0"]) == 0
    a, b = _summary(tmp_path / "a"), _summary(tmp_path / "b")
    assert a["settings"]["median_filter_s"] == 0.36 and b["settings"]["median_filter_s"] is None
    assert not (tmp_path / "a" / "psd_roc.png").exists()
    assert main(["evaluate", "--ground-truth", str(tmp_path / "nope.tsv"), "--scores", str(syn["scores"]),
                 "--output", str(tmp_path / "c")]) == 2  # fmt: skip
    assert "nope.tsv" in capsys.readouterr().err
    assert main(["evaluate", "--ground-truth", str(syn["ground_truth"]), "--scores", str(syn["scores"]),
                 "--audio", str(tmp_path), "--output", str(tmp_path / "d")]) == 2  # fmt: skip


def _audioset_fixture(root, n_clips: int = 3):  # noqa: ANN001, ANN202
    """AudioSet-format labels (MIDs, segment ids with '_' in the YouTube id), a headerless durations CSV
    and 16 kHz wav files named Y<id>.wav."""
    from ptsed.data.audioset import vocabulary_mids

    mids = vocabulary_mids("audioset_strong_447")
    rng = np.random.default_rng(0)
    ids = ["ab_cd", "-x1y2z3", "q_w_e_r"][:n_clips]
    rows = ["segment_id\tstart_time_seconds\tend_time_seconds\tlabel"]
    (root / "audio").mkdir(parents=True)
    for i, yid in enumerate(ids):
        seconds = 10 if i < 2 else 7
        sf.write(root / "audio" / f"Y{yid}.wav", rng.normal(0, 0.1, 16000 * seconds).astype(np.float32), 16000)
        for _ in range(3):
            on = float(rng.uniform(0, 6))
            rows.append(f"{yid}_30000\t{on:.3f}\t{on + rng.uniform(0.5, 3):.3f}\t{mids[int(rng.integers(0, 12))][0]}")
    rows.append(f"{ids[0]}_30000\t1.000\t2.000\t/m/028v0c")  # Silence: in the eval labels, not in the 447
    rows.append("zzzz_0\t1.000\t2.000\t/m/028v0c")  # a clip with only Silence: dropped by the protocol
    sf.write(root / "audio" / "Yzzzz.wav", rng.normal(0, 0.1, 16000 * 10).astype(np.float32), 16000)
    (root / "gt.tsv").write_text("\n".join(rows) + "\n")
    (root / "dur.csv").write_text(
        "".join(f"Y{y},{10.0 if i < 2 else 7.0}\n" for i, y in enumerate(ids)) + "Yzzzz,10.0\n"
    )
    return root


@pytest.mark.skipif(not LABELS.exists(), reason="needs ../shared/labels")
def test_model_mode_gives_the_numbers_of_its_saved_scores(tmp_path) -> None:
    from ptsed.models.factory import create_model, save_checkpoint
    from ptsed.models.zoo import ARCHS

    if not ARCHS["atst_frame"].implemented:
        pytest.skip("atst_frame is not implemented yet")
    pytest.importorskip("ptsed.inference.predictor")
    import torch

    torch.manual_seed(0)
    save_checkpoint(create_model("atst_frame", pretrained=False, depth=1), tmp_path / "tiny.pt")
    root = _audioset_fixture(tmp_path / "as")
    common = ["evaluate", "--ground-truth", str(root / "gt.tsv"), "--durations", str(root / "dur.csv"),
              "--protocol", "audioset-strong", "--no-plot"]  # fmt: skip
    assert main([*common, "--model", "atst_frame", "--checkpoint", str(tmp_path / "tiny.pt"), "--audio",
                 str(root / "audio"), "--device", "cpu", "--save-scores", str(tmp_path / "scores"),
                 "--output", str(tmp_path / "model")]) == 0  # fmt: skip
    saved = sorted(p.name for p in (tmp_path / "scores").iterdir())
    assert saved == ["Y-x1y2z3.tsv", "Yab_cd.tsv", "Yq_w_e_r.tsv"]
    head = (tmp_path / "scores" / "Yq_w_e_r.tsv").read_text().splitlines()
    assert len(head) == 251 and len(head[0].split("\t")) == 449  # 250 frames of 447 classes: a 7 s clip is padded
    assert main([*common, "--scores", str(tmp_path / "scores"), "--output", str(tmp_path / "saved")]) == 0
    m, s = _summary(tmp_path / "model"), _summary(tmp_path / "saved")
    for key in (*HEADLINE, "n_clips", "n_classes", "n_events"):
        assert m[key] == s[key], key
    assert m["n_clips"] == 3 and m["clips_dropped_without_events"] == 1 and m["classes_dropped"] == ["Silence"]
    assert m["settings"]["median_filter_s"] == 0.36 and m["settings"]["clip_s"] == 10.0
    assert m["ground_truth"]["format"] == "audioset"
    assert m["pauroc"] > 0 and m["frame_map"] > 0


@pytest.mark.skipif(not LABELS.exists(), reason="needs ../shared/labels")
def test_model_on_hdf5_audio_with_a_model_object(tmp_path) -> None:
    """The library path: a model object, PaSST-style HDF5 audio, no protocol (whole files, Predictor windows)."""
    import torch

    from ptsed.data.audioset import AudioSetHDF5, read_ground_truth
    from ptsed.evaluation.protocol import evaluate
    from ptsed.evaluation.sources import ModelScores
    from ptsed.io.annotations import read_durations
    from ptsed.models.factory import create_model
    from ptsed.models.zoo import ARCHS

    if not ARCHS["atst_frame"].implemented:
        pytest.skip("atst_frame is not implemented yet")
    pytest.importorskip("ptsed.inference.predictor")
    from test_audioset_data import _write_hdf5

    root = _audioset_fixture(tmp_path / "as", n_clips=2)
    clips = {p.stem: sf.read(p, dtype="float32")[0] for p in sorted((root / "audio").iterdir())}
    _write_hdf5(root / "eval.hdf", clips, 16000)
    torch.manual_seed(0)
    model = create_model("atst_frame", pretrained=False, depth=1)
    gt, _ = read_ground_truth(root / "gt.tsv")
    with AudioSetHDF5(root / "eval.hdf") as h5:
        src = ModelScores(model, h5, device="cpu")
        res = evaluate(src, gt, read_durations(root / "dur.csv"), metrics=["psds1", "frame_map"], warn=None)
    # without a protocol the clip left without events stays (it can only add false positives)
    assert res.summary["n_clips"] == 3 and res.summary["clips_missing_predictions"] == []
    assert 0 <= res.summary["psds1"] <= 1 and res.summary["frame_map"] > 0


# -- issue 17 ------------------------------------------------------------------------------------------------
def test_detections_that_miss_a_class_or_are_header_only_are_evaluated(syn, tmp_path, capsys) -> None:  # noqa: ANN001
    rows = syn["detections"].read_text().splitlines()
    missed = tmp_path / "missed.tsv"  # an events.tsv whose model never detected class0
    missed.write_text("\n".join([rows[0], *(r for r in rows[1:] if not r.endswith("\tclass0"))]) + "\n")
    empty = tmp_path / "empty.tsv"
    empty.write_text(rows[0] + "\n")
    base = ["evaluate", "--ground-truth", str(syn["ground_truth"]), "--durations", str(syn["durations"]),
            "--metrics", "psds1,collar_f1", "--no-plot", "--strict"]  # fmt: skip
    assert main([*base, "--detections", str(missed), "--output", str(tmp_path / "a")]) == 0
    per_class = (tmp_path / "a" / "per_class.csv").read_text().splitlines()
    assert len(per_class) == 5 and "class0,5,0.000000,0.000000" in per_class  # scored, with recall 0
    assert _summary(tmp_path / "a")["collar_f1"]["0.5"]["micro"] > 0
    assert main([*base, "--detections", str(empty), "--output", str(tmp_path / "b")]) == 0
    s = _summary(tmp_path / "b")
    assert s["n_clips"] == 12 and s["n_classes"] == 4 and s["psds1"] == 0
    assert "scored 12 of 12 clips; exit code 0" in capsys.readouterr().err


def test_strict_exits_1_when_a_clip_is_not_scored(syn, tmp_path, capsys) -> None:  # noqa: ANN001
    import shutil

    scores = tmp_path / "scores"
    shutil.copytree(syn["scores"], scores)
    first, *_, second = sorted(scores.iterdir())
    first.unlink()  # no predictions
    second.write_text("onset\toffset\tclass0\n0\t1\t0.5\n")  # lacks classes: fails
    base = ["evaluate", "--ground-truth", str(syn["ground_truth"]), "--durations", str(syn["durations"]),
            "--scores", str(scores), "--metrics", "psds1", "--no-plot"]  # fmt: skip
    assert main([*base, "--output", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "scored 10 of 12 clips (1 failed, 1 without predictions); exit code 0 (with --strict: 1)" in err
    assert main([*base, "--output", str(tmp_path / "b"), "--strict"]) == 1
    assert "exit code 1 (--strict)" in capsys.readouterr().err
    assert _summary(tmp_path / "b")["n_clips"] == 10  # the numbers are written all the same


@pytest.mark.parametrize(
    "content",
    [bytes(range(256)) * 8, "filename\tonset\toffset\tevent_label\nç.wav\t0\t1\tx\n".encode("latin-1")],
    ids=["binary", "latin-1"],
)
def test_a_binary_or_non_utf8_ground_truth_is_one_line(syn, tmp_path, capsys, content) -> None:  # noqa: ANN001
    gt = tmp_path / "gt.tsv"
    gt.write_bytes(content)
    code = main(["evaluate", "--ground-truth", str(gt), "--detections", str(syn["detections"]),
                 "--output", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "gt.tsv" in err[0] and "UTF-8" in err[0] and "Traceback" not in err[0]


def test_model_mode_takes_the_hop_and_window_of_detect(tmp_path, capsys) -> None:
    """``--hop``/``--window`` reach the Predictor: on a 20 s file the saved scores equal the Predictor's at that
    hop, and differ from those at the default hop; they are refused without a model and with a protocol."""
    pytest.importorskip("ptsed.inference.predictor")
    from ptsed.inference.predictor import Predictor
    from ptsed.io.scores_tsv import read_scores_tsv

    rng = np.random.default_rng(3)
    (tmp_path / "audio").mkdir()
    t = np.arange(16000 * 20) / 16000
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 0.1 * t) > 0) + rng.normal(0, 0.05, t.size)
    sf.write(tmp_path / "audio" / "long.wav", wave.astype(np.float32), 16000)
    (tmp_path / "gt.tsv").write_text("filename\tonset\toffset\tevent_label\nlong.wav\t1.0\t4.0\tBeep, bleep\n")
    (tmp_path / "dur.tsv").write_text("filename\tduration\nlong.wav\t20\n")
    common = ["evaluate", "--ground-truth", str(tmp_path / "gt.tsv"), "--durations", str(tmp_path / "dur.tsv"),
              "--metrics", "psds1", "--no-plot"]  # fmt: skip
    model = ["--model", "demo", "--audio", str(tmp_path / "audio"), "--device", "cpu"]
    scores = {}
    for name, extra in (("default", []), ("hop10", ["--hop", "10"]), ("w8", ["--window", "8", "--hop", "4"])):
        assert main([*common, *model, *extra, "--save-scores", str(tmp_path / name),
                     "--output", str(tmp_path / f"eval_{name}")]) == 0  # fmt: skip
        scores[name] = read_scores_tsv(tmp_path / name / "long.tsv")[0]
    for name, kwargs in (("default", {}), ("hop10", {"hop_s": 10.0}), ("w8", {"window_s": 8.0, "hop_s": 4.0})):
        audio, sr = sf.read(tmp_path / "audio" / "long.wav", dtype="float32")
        expected = Predictor("demo", device="cpu", **kwargs).frame_scores(audio, sr).scores
        np.testing.assert_allclose(scores[name], expected, atol=1e-5, err_msg=name)
    assert np.abs(scores["hop10"] - scores["default"]).max() > 1e-4
    capsys.readouterr()
    assert main([*common, "--scores", str(tmp_path / "hop10"), "--hop", "10", "--output", str(tmp_path / "x")]) == 2
    assert "--hop go with --model" in capsys.readouterr().err
    assert main([*common, *model, "--protocol", "audioset-strong", "--hop", "10", "--output", str(tmp_path / "y")]) == 2
    assert "cannot be used with --protocol" in capsys.readouterr().err
