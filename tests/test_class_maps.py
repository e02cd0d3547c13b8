"""Class maps, --include/--exclude and the vocabulary options of detect, tune and evaluate: names are checked
before inference, unknown names get the closest classes as a suggestion, merged classes take the maximum."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ptsed.cli.main import main
from ptsed.core.errors import ConfigError
from ptsed.core.types import FrameScores
from ptsed.hub.labels import get_labels
from ptsed.postprocess.pipeline import PostProcessor
from ptsed.postprocess.transforms import CLASS_MAP_DIR, ClassMap, Rollup, with_transform

REPO = Path(__file__).resolve().parents[1]
WAV = REPO / "examples" / "soundscape.wav"
DESED = ["Alarm_bell_ringing", "Blender", "Cat", "Dishes", "Dog", "Electric_shaver_toothbrush", "Frying",
         "Running_water", "Speech", "Vacuum_cleaner"]  # fmt: skip


def _scores(labels: list[str], values: list[list[float]]) -> FrameScores:
    x = np.asarray(values, dtype=np.float32)
    return FrameScores(x, np.arange(x.shape[0] + 1) * 0.04, labels, source="a")


def test_merged_classes_take_the_maximum_and_unlisted_ones_are_dropped() -> None:
    fs = _scores(["Speech", "Music", "Dog"], [[0.1, 0.7, 0.2], [0.9, 0.3, 0.4]])
    out = ClassMap([("Speech", "voice"), ("Music", "voice"), ("Dog", "animal")])(fs)
    assert out.labels == ["voice", "animal"]
    np.testing.assert_allclose(out.scores, [[0.7, 0.2], [0.9, 0.4]])
    np.testing.assert_array_equal(out.timestamps, fs.timestamps)


def test_class_map_file_header_comments_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "map.tsv"
    good.write_text("# comment\nmodel_class\tuser_class\nBeep, bleep\tbeeps\n\nspeech\tvoice\n")
    cmap = ClassMap.read(good)
    assert cmap.pairs == [("Beep, bleep", "beeps"), ("speech", "voice")]
    assert cmap.output_labels(["Speech", "Beep, bleep"]) == ["beeps", "voice"]  # names case-insensitive
    bad = tmp_path / "bad.tsv"
    bad.write_text("Speech\tvoice\nMusic voice\n")
    with pytest.raises(ConfigError, match=r"bad.tsv' line 2: expected 'model class<TAB>user class'"):
        ClassMap.read(bad)
    with pytest.raises(ConfigError, match="does not exist .*desed"):
        ClassMap.read(tmp_path / "missing.tsv")
    typo = tmp_path / "typo.tsv"
    typo.write_text("Speech\tvoice\nBeep\tbeeps\n")
    with pytest.raises(
        ConfigError, match=r"typo.tsv' line 2: the model has no class 'Beep' \(did you mean 'Beep, bleep'"
    ):
        ClassMap.read(typo).output_labels(["Speech", "Beep, bleep"])


def test_shipped_desed_map_covers_the_ten_classes_from_the_447() -> None:
    cmap = ClassMap.read("desed")
    labels = get_labels("audioset_strong_447")
    assert sorted(cmap.output_labels(labels)) == DESED
    doc = (REPO / "docs" / "vocabularies.md").read_text()
    for model_class, _ in cmap.pairs:  # the docs explain every choice
        assert f"`{model_class}`" in doc, model_class
    assert (CLASS_MAP_DIR / "desed.tsv").is_file()


def test_transform_runs_before_the_postprocessor_chain() -> None:
    fs = _scores(["Speech", "Music"], [[0.6, 0.1]] * 5 + [[0.1, 0.7]] * 5)
    pp = with_transform(PostProcessor(median_filter_s=None), ClassMap([("Speech", "voice"), ("Music", "voice")]))
    events = pp.events(fs)
    assert [(e.label, e.onset, round(e.offset, 2)) for e in events] == [("voice", 0.0, 0.4)]
    assert pp.filter(fs).labels == ["voice"] and "transform" in pp.settings()


def test_rollup_then_class_map_can_name_parent_classes() -> None:
    fs = _scores(["Bark", "Meow"], [[0.9, 0.2], [0.1, 0.6]])
    out = (Rollup() | ClassMap([("Domestic animals, pets", "pet")]))(fs)
    assert out.labels == ["pet"]
    np.testing.assert_allclose(out.scores[:, 0], [0.9, 0.6])


def _no_inference(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("inference ran before the class names were checked")

    monkeypatch.setattr("ptsed.inference.detect.run_batch", fail)  # the name detect() calls


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (["--include", "Beep"], "unknown class 'Beep' (did you mean 'Beep, bleep'"),
        (["--exclude", "Speach"], "unknown class 'Speach' (did you mean 'Speech'"),
        (["--class-map", "desed"], "line 4: the model has no class 'Alarm'"),
    ],
)
def test_detect_checks_class_names_before_inference(option: list[str], expected: str, monkeypatch, capsys) -> None:  # noqa: ANN001
    _no_inference(monkeypatch)
    assert main(["detect", str(WAV), "--model", "demo", *option]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err


def test_detect_class_map_events_and_scores(tmp_path: Path) -> None:
    cmap = tmp_path / "map.tsv"
    cmap.write_text("Speech\tvoice\nMusic\tvoice\nBeep, bleep\tbeeps\n")
    out = tmp_path / "out"
    args = ["detect", str(WAV), "--model", "demo", "-o", str(out), "-f", "tsv,scores,scores_filtered", "-q"]
    assert main([*args, "--class-map", str(cmap)]) == 0
    rows = (out / "events.tsv").read_text().splitlines()[1:]
    assert rows and {r.split("\t")[3] for r in rows} <= {"voice", "beeps"}
    raw = next((out / "scores").rglob("*.tsv")).read_text().splitlines()[0].split("\t")
    filtered = next((out / "scores_filtered").rglob("*.tsv")).read_text().splitlines()[0].split("\t")
    assert len(raw) == 12 and filtered[2:] == ["voice", "beeps"]  # scores stay the model's raw output


def _dev_set(tmp_path: Path) -> tuple[Path, Path]:
    """Two score files with classes Speech, Music, Dog and a ground truth in the user classes."""
    scores = tmp_path / "scores"
    scores.mkdir()
    t = np.arange(51) * 0.2
    for clip in ("a", "b"):
        x = np.zeros((50, 3))
        x[5:20, 0] = 0.9  # Speech 1-4 s
        x[25:40, 1] = 0.8  # Music 5-8 s
        lines = ["onset\toffset\tSpeech\tMusic\tDog"]
        lines += [f"{t[i]:.2f}\t{t[i + 1]:.2f}\t" + "\t".join(f"{v:.2f}" for v in x[i]) for i in range(50)]
        (scores / f"{clip}.tsv").write_text("\n".join(lines) + "\n")
    gt = tmp_path / "gt.tsv"
    gt.write_text("filename\tonset\toffset\tevent_label\n" + "".join(
        f"{c}.wav\t1.0\t4.0\tvoice\n{c}.wav\t5.0\t8.0\tvoice\n" for c in ("a", "b")))  # fmt: skip
    return scores, gt


def test_evaluate_and_tune_map_classes(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    pytest.importorskip("sed_scores_eval")
    scores, gt = _dev_set(tmp_path)
    cmap = tmp_path / "map.tsv"
    cmap.write_text("Speech\tvoice\nMusic\tvoice\n")
    base = ["evaluate", "--ground-truth", str(gt), "--scores", str(scores), "--no-plot", "--metrics", "collar_f1"]
    assert main([*base, "--output", str(tmp_path / "e1"), "--class-map", str(cmap)]) == 0
    summary = json.loads((tmp_path / "e1" / "summary.json").read_text())
    assert summary["n_classes"] == 1 and summary["collar_f1"]["0.5"]["micro"] == pytest.approx(1.0)
    assert main([*base, "--output", str(tmp_path / "e2")]) == 2  # without the map nothing is shared
    assert main([*base, "--output", str(tmp_path / "e3"), "--include", "Spech"]) == 2
    assert "did you mean 'Speech'" in capsys.readouterr().err
    profile = tmp_path / "p.json"
    tune = ["tune", "--scores", str(scores), "--ground-truth", str(gt), "--output", str(profile)]
    assert main([*tune, "--class-map", str(cmap), "--median-grid", "0"]) == 0
    data = json.loads(profile.read_text())
    assert list(data["objective"]["per_class"]) == ["voice"] and data["fitted_on"]["transform"]["class_map"]


def test_per_class_values_stored_in_a_checkpoint_follow_the_map(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from ptsed.cli.vocabulary import apply_to_predictor
    from ptsed.postprocess.transforms import check_classes

    cmap = tmp_path / "map.tsv"
    cmap.write_text("Speech\tvoice\nMusic\tvoice\n")
    stored = PostProcessor(threshold={"Speech": 0.3, "Music": 0.4})
    predictor = SimpleNamespace(postprocess=stored, postprocess_from_checkpoint=["threshold"])
    args = SimpleNamespace(rollup=False, class_map=str(cmap), include=None, exclude=None)
    reported = apply_to_predictor(args, predictor, ["Speech", "Music", "Dog"])
    assert reported == ["voice"] and predictor.postprocess.threshold == {}
    check_classes(predictor.postprocess, reported)  # the model's class names no longer stop the run
    given = SimpleNamespace(postprocess=stored, postprocess_from_checkpoint=[])  # the user's own file: an error
    with pytest.raises(ConfigError, match="unknown class 'Speech' in the per-class thresholds"):
        check_classes(with_transform(given.postprocess, ClassMap.read(cmap)), ["voice"])


def test_evaluate_model_with_a_class_map_filters_as_detect_does(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    import warnings

    import soundfile as sf

    from test_tune import _tiny_checkpoint, register_tiny_arch

    register_tiny_arch(monkeypatch)
    ckpt = _tiny_checkpoint(tmp_path / "stored.pt", {"median_filter_s": {"beep": 0.6, "chirp": 0.12}})
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "a.wav", np.random.default_rng(1).standard_normal(16000).astype(np.float32), 8000)
    (tmp_path / "gt.tsv").write_text("filename\tonset\toffset\tevent_label\na.wav\t0.5\t1.2\tbirdish\n")
    cmap = tmp_path / "map.tsv"
    cmap.write_text("beep\tbeep\nchirp\tbirdish\nnoise_burst\tbirdish\n")
    args = ["evaluate", "--ground-truth", str(tmp_path / "gt.tsv"), "--audio", str(tmp_path / "audio"), "--no-plot",
            "--metrics", "psds1", "--device", "cpu", "--model", str(ckpt), "--class-map", str(cmap),
            "--output", str(tmp_path / "e")]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(args) == 0
    settings = json.loads((tmp_path / "e" / "summary.json").read_text())["settings"]
    assert settings["median_filter_s"] == {"beep": 0.6, "birdish": 0.36}  # merged classes: detect's default
