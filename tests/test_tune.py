"""Post-processing fitted on a development set: ``fit_postprocess``, ``ptsed tune``, profiles applied by
``ptsed detect --postprocess`` (and their precedence), the profile finetune stores, and ``ptsed evaluate
--model`` applying the median filters detect applies."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sed_scores_eval")

from ptsed.cli.main import main  # noqa: E402
from ptsed.core.frames import events_to_frame_targets  # noqa: E402
from ptsed.core.types import FrameScores  # noqa: E402
from ptsed.evaluation.tuning import fit_postprocess  # noqa: E402
from ptsed.postprocess.profile import Profile, load_profile  # noqa: E402
from train_fixtures import LABELS, TinyDataset, register_tiny_arch, single_thread, tiny_model  # noqa: E402

_one_thread = pytest.fixture(autouse=True)(single_thread)

HOP = 0.04


def _dev_set(pos: float, neg: float, n: int = 6, seed: int = 3) -> tuple[dict, dict]:
    """Ground truth of ``n`` 2 s clips and scores at ``pos`` inside events and ``neg`` outside."""
    ds = TinyDataset(n, seed=seed)
    gt = {r.name: list(r.events) for r in ds.records}
    scores = {}
    for name, events in gt.items():
        t = round(2.0 / HOP)
        active = events_to_frame_targets(events, LABELS, t).T
        s = np.where(active > 0, pos, neg).astype(np.float32)
        scores[name] = FrameScores(s, np.arange(t + 1) * HOP, list(LABELS), source=name)
    return scores, gt


def test_fit_chooses_thresholds_between_the_scores_and_never_near_zero():
    scores, gt = _dev_set(pos=0.3, neg=0.02)
    profile = fit_postprocess(scores, gt, LABELS, median_grid_s=(0.0,))
    assert set(profile.fitted) == set(LABELS) and profile.objective["value"] == pytest.approx(1.0)
    assert profile.objective["default_value"] == 0.0  # at 0.5 nothing is detected
    assert all(0.05 <= t < 0.3 for t in profile.thresholds.values())
    # events only reachable with a near-zero threshold: the defaults stay, nothing floods the output
    scores, gt = _dev_set(pos=0.04, neg=0.01)
    profile = fit_postprocess(scores, gt, [*LABELS, "never_seen"], median_grid_s=(0.0, 0.12))
    assert profile.fitted == [] and set(profile.thresholds.values()) == {0.5}
    assert set(profile.median_filter_s.values()) == {0.36} and profile.fitted_on["clips"] == 6
    assert set(profile.thresholds) == {*LABELS, "never_seen"}
    with_floor = fit_postprocess(scores, gt, LABELS, median_grid_s=(0.0,), min_threshold=0.02)
    assert set(with_floor.fitted) == set(LABELS) and all(t >= 0.02 for t in with_floor.thresholds.values())


def test_fit_with_the_psds1_objective():
    scores, gt = _dev_set(pos=0.7, neg=0.2)
    profile = fit_postprocess(scores, gt, LABELS, objective="psds1", median_grid_s=(0.0, 0.12))
    assert profile.objective["name"] == "psds1" and profile.objective["value"] == pytest.approx(1.0)
    assert all(0.2 <= t < 0.7 for t in profile.thresholds.values())


def _write_scores(folder: Path, scores: dict) -> None:
    folder.mkdir(parents=True)
    for name, fs in scores.items():
        fs.to_dataframe().to_csv(folder / f"{Path(name).stem}.tsv", sep="\t", index=False)


def _write_gt(path: Path, gt: dict) -> None:
    rows = [f"{name}\t{on}\t{off}\t{label}" for name, evs in gt.items() for on, off, label in evs]
    path.write_text("filename\tonset\toffset\tevent_label\n" + "\n".join(rows) + "\n")


def test_tune_writes_a_profile_that_detect_applies(tmp_path: Path, capsys):
    scores, gt = _dev_set(pos=0.3, neg=0.02)
    _write_scores(tmp_path / "scores", scores)
    _write_gt(tmp_path / "gt.tsv", {**gt, "clip000.wav": [*gt["clip000.wav"], (0.1, 0.3, "cat")]})
    (tmp_path / "dur.tsv").write_text("filename\tduration\n" + "".join(f"{n}\t2.0\n" for n in gt))
    out = tmp_path / "profile.json"
    args = ["tune", "--scores", str(tmp_path / "scores"), "--ground-truth", str(tmp_path / "gt.tsv")]
    assert main([*args, "--durations", str(tmp_path / "dur.tsv"), "--output", str(out), "--median-grid", "0"]) == 0
    printed = capsys.readouterr()
    assert "event_f1 1.000 with the profile, 0.000 with the defaults" in printed.out
    assert "class 'cat' is not among the model's classes" in printed.err
    data = json.loads(out.read_text())
    assert data["decoder"] == "median" and data["objective"]["name"] == "event_f1" and data["ptsed_version"]
    assert data["fitted_on"]["clips"] == 6 and data["fitted_on"]["scores"] == str(tmp_path / "scores")
    assert data["fitted_on"]["ground_truth"] == str(tmp_path / "gt.tsv")
    profile = load_profile(out)
    assert set(profile.thresholds) == set(LABELS) and all(0.05 <= t < 0.3 for t in profile.thresholds.values())
    assert not list(tmp_path.glob("*.tmp"))  # written through a temporary file


def _tiny_checkpoint(path: Path, postprocess: dict | None = None) -> Path:
    from ptsed.models.factory import save_checkpoint

    model = tiny_model()
    model.arch = "tinysed"
    extra = {"postprocess": postprocess} if postprocess else {}
    return save_checkpoint(model, path, **extra)


def _detect_settings(tmp_path: Path, name: str, *extra: str) -> dict:
    import soundfile as sf

    wav = tmp_path / "a.wav"
    if not wav.exists():
        sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(24000)).astype(np.float32), 8000)
    out = tmp_path / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["detect", str(wav), "--device", "cpu", "--quiet", "--output", str(out), *extra]) == 0
    return json.loads((out / "ptsed_settings.json").read_text())["settings"]["postprocess"]


def test_detect_precedence_flags_then_profile_then_checkpoint_then_defaults(tmp_path: Path, monkeypatch):
    register_tiny_arch(monkeypatch)
    stored = {"thresholds": dict.fromkeys(LABELS, 0.2), "median_filter_s": dict.fromkeys(LABELS, 0.12)}
    ckpt = _tiny_checkpoint(tmp_path / "stored.pt", stored)
    plain = _tiny_checkpoint(tmp_path / "plain.pt")
    prof = Profile(dict.fromkeys(LABELS, 0.3), dict.fromkeys(LABELS, 0.6), objective={"name": "event_f1"})
    (tmp_path / "p.json").write_text(json.dumps(prof.to_dict()))
    use_profile = ["--postprocess", str(tmp_path / "p.json")]

    s = _detect_settings(tmp_path, "defaults", "--checkpoint", str(plain))
    assert (s["threshold"], s["median_filter_s"]) == (0.5, 0.36)
    s = _detect_settings(tmp_path, "stored", "--checkpoint", str(ckpt))
    assert (s["threshold"], s["median_filter_s"]) == (stored["thresholds"], stored["median_filter_s"])
    s = _detect_settings(tmp_path, "profile", "--checkpoint", str(ckpt), *use_profile)
    assert (s["threshold"], s["median_filter_s"]) == (prof.thresholds, prof.median_filter_s)
    s = _detect_settings(tmp_path, "plain_profile", "--checkpoint", str(plain), *use_profile)
    assert (s["threshold"], s["median_filter_s"]) == (prof.thresholds, prof.median_filter_s)
    s = _detect_settings(tmp_path, "flags", "--checkpoint", str(ckpt), *use_profile, "--threshold", "0.7")
    assert (s["threshold"], s["median_filter_s"]) == (0.7, prof.median_filter_s)
    s = _detect_settings(tmp_path, "both", "--checkpoint", str(ckpt), *use_profile, "-t", "0.7", "--median-filter", "0")
    assert (s["threshold"], s["median_filter_s"]) == (0.7, None)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("{not json", "is not JSON"),
        ('{"thresholds": {"cat": 0.4}}', "class 'cat' is not among the model's 3 classes"),
        ('{"thresholds": {"beep": 1.5}}', "outside [0.0, 1.0]"),
        ('{"decoder": "hmm", "thresholds": {"beep": 0.5}}', "decoder 'hmm'"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_a_bad_profile_stops_detect_with_one_line(tmp_path: Path, monkeypatch, capsys, content, message):
    register_tiny_arch(monkeypatch)
    ckpt = _tiny_checkpoint(tmp_path / "plain.pt")
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"")  # never read: the profile is checked first
    code = main(["detect", str(wav), "--checkpoint", str(ckpt), "--postprocess", str(path), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0] and str(path) in err[0], err


def test_evaluate_model_applies_the_median_filters_detect_applies(tmp_path: Path, monkeypatch):
    import soundfile as sf

    from ptsed.inference.predictor import Predictor
    from ptsed.models.factory import create_model

    register_tiny_arch(monkeypatch)
    stored = {"thresholds": dict.fromkeys(LABELS, 0.5), "median_filter_s": {"beep": 0.6, "chirp": 0.12}}
    ckpt = _tiny_checkpoint(tmp_path / "stored.pt", stored)
    plain = _tiny_checkpoint(tmp_path / "plain.pt")
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "a.wav", np.random.default_rng(1).standard_normal(16000).astype(np.float32), 8000)
    (tmp_path / "gt.tsv").write_text("filename\tonset\toffset\tevent_label\na.wav\t0.5\t1.2\tbeep\n")
    common = ["evaluate", "--ground-truth", str(tmp_path / "gt.tsv"), "--audio", str(tmp_path / "audio"), "--no-plot"]
    common += ["--metrics", "psds1", "--device", "cpu"]

    def median(name: str, checkpoint: Path, *extra: str):  # noqa: ANN202
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert main([*common, "--model", str(checkpoint), "--output", str(tmp_path / name), *extra]) == 0
        return json.loads((tmp_path / name / "summary.json").read_text())["settings"]["median_filter_s"]

    detect = Predictor(create_model("", checkpoint_path=ckpt), device="cpu").postprocess
    expect = {"beep": 0.6, "noise_burst": 0.36, "chirp": 0.12}  # the classes not stored: detect's 0.36
    assert detect.median_filter_lengths(LABELS) == expect
    assert median("stored", ckpt) == expect
    assert median("plain", plain) == 0.36  # detect's default
    assert median("explicit", ckpt, "--median-filter", "0") is None


def test_finetune_stores_its_profile_and_validation_windows(tmp_path: Path, monkeypatch):
    from ptsed.models.factory import create_model
    from train_fixtures import write_dcase_folder

    register_tiny_arch(monkeypatch)
    write_dcase_folder(tmp_path / "train", n=8, seed=0, sr=8000)
    write_dcase_folder(tmp_path / "valid", n=3, seed=1, sr=8000)
    out = tmp_path / "run"
    args = ["finetune", "--model", "tinysed", "--no-pretrained", "--train", str(tmp_path / "train")]
    args += ["--valid", str(tmp_path / "valid"), "--window", "2", "--batch-size", "4", "--epochs", "1"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([*args, "--output", str(out), "--quiet"]) == 0
    extra = create_model("", checkpoint_path=out / "model.pt").checkpoint_extra
    windows = {"window_s": 10.0, "hop_s": 5.0, "stitch": "centre"}  # detect's defaults for a 10 s model
    assert extra["training"]["validation_windows"] == windows
    stored = extra["postprocess"]
    assert stored["decoder"] == "median" and stored["fitted_on"]["windows"] == windows
    assert stored["fitted_on"]["clips"] == 3 and stored["objective"]["name"] == "event_f1"
    assert load_profile(out / "postprocess.json").thresholds == stored["thresholds"]


SOUNDSCAPES = Path(__file__).resolve().parents[1] / ".." / "shared" / "soundscapes"


@pytest.mark.skipif(not (SOUNDSCAPES / "sources").is_dir(), reason="needs ../shared/soundscapes")
def test_the_fitted_objective_is_what_detect_then_scores(tmp_path: Path):
    """The fit runs on the scores detect produces: detect's events with the profile reach, class by class,
    the event F1 that tune reports (on the same clips)."""
    from sed_scores_eval import collar_based

    from ptsed.data.audioset import read_ground_truth
    from ptsed.evaluation.scores import events_to_scores
    from ptsed.evaluation.tuning import COLLAR
    from ptsed.io.annotations import read_detections
    from ptsed.models.factory import create_model

    only = [a for c in ("speech", "music", "beep", "bird", "gunshot") for a in ("--only", c)]
    src, dev = SOUNDSCAPES / "sources", tmp_path / "dev"
    assert main(["synth", "--foreground", str(src / "foreground"), "--background", str(src / "background"),
                 "--classes", str(SOUNDSCAPES / "classes.tsv"), *only, "--count", "12", "--seed", "3",
                 "--output", str(dev), "--no-progress"]) == 0  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["tune", "--model", "demo", "--audio", str(dev / "audio"), "--device", "cpu",
                     "--ground-truth", str(dev / "labels.tsv"), "--output", str(tmp_path / "p.json")]) == 0  # fmt: skip
        assert main(["detect", str(dev / "audio"), "--model", "demo", "--postprocess", str(tmp_path / "p.json"),
                     "--device", "cpu", "--quiet", "--output", str(tmp_path / "det")]) == 0  # fmt: skip
    profile = load_profile(tmp_path / "p.json")
    assert profile.fitted and profile.fitted_on["windows"] == {"window_s": 10.0, "hop_s": 5.0, "stitch": "centre"}
    labels = create_model("demo").labels
    gt, _ = read_ground_truth(dev / "labels.tsv")
    detected = read_detections(tmp_path / "det" / "events.tsv")
    present = sorted({e[2] for evs in gt.values() for e in evs})
    frames = {}
    for clip in gt:
        scores, ts = events_to_scores(detected.get(clip, []), labels, 10.0)
        frames[clip] = FrameScores(scores, ts, labels).to_dataframe()[["onset", "offset", *present]]
    f1, *_ = collar_based.fscore(frames, gt, 0.5, **COLLAR)
    assert sorted(profile.objective["per_class"]) == present
    for label, value in profile.objective["per_class"].items():
        assert f1[label] == pytest.approx(value, abs=1e-5), label
