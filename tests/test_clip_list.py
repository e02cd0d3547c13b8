"""``--protocol audioset-strong`` against the published eval clip list: missing and extra clips are reported,
and the numbers are those of the intersection."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ptsed.evaluation.clip_list import PUBLISHED_COUNT, compare, published_eval_clips
from ptsed.evaluation.protocol import AUDIOSET_STRONG, evaluate
from ptsed.evaluation.synthetic import make_synthetic_set
from test_eval_protocol import Memory

pytestmark = pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")


def test_the_published_list_ships_with_durations() -> None:
    clips = published_eval_clips()
    assert len(clips) == PUBLISHED_COUNT == 16935
    assert all(c.startswith("Y") for c in clips) and all(0.9 < d < 10.1 for d in clips.values())


def test_compare_names_missing_and_extra() -> None:
    published = {"Ya": 10.0, "Yb": 10.0, "Yc": 9.5}
    report = compare(predicted=["Ya", "Yb", "Yx"], ground_truth=["Ya", "Yc", "Yy"], published=published)
    assert (report.published, report.scored_candidates) == (3, 1)
    assert report.missing == ["Yb", "Yc"] and report.extra == ["Yx", "Yy"]
    assert "1 of the 3 published" in report.line() and "2 missing" in report.line()


@pytest.fixture(scope="module")
def renamed():  # noqa: ANN201
    """A synthetic set whose first 5 clips carry published eval ids (the last one not), classes from the 447."""
    gt, dur, scores, names, ts = make_synthetic_set(6, 3, seed=4, levels=None)
    ids = sorted(published_eval_clips())[:5] + ["Ynot_published_clip"]
    rename = dict(zip(sorted(gt), ids, strict=True))
    classes = {"Speech": "Speech", **dict(zip(names, ["Speech", "Music", "Dog"], strict=False))}
    gt = {rename[c]: [(a, b, classes[n]) for a, b, n in ev] for c, ev in gt.items()}
    scores = {rename[c]: s for c, s in scores.items()}
    return gt, scores, [classes[n] for n in names], ts


def test_evaluate_scores_the_intersection_and_reports_the_rest(renamed) -> None:  # noqa: ANN001
    gt, scores, labels, ts = renamed
    warnings: list[str] = []
    res = evaluate(Memory(scores, ts, labels), gt, protocol="audioset-strong", metrics=["psds1"], warn=warnings.append)
    clip_list = res.summary["clip_list"]
    assert clip_list["applied"] and clip_list["intersection"] == 5
    assert clip_list["extra"] == ["Ynot_published_clip"] and len(clip_list["missing"]) == PUBLISHED_COUNT - 5
    assert any("5 of the 16935 published eval clips" in w for w in warnings)
    assert res.summary["clips_without_duration"] == 0  # durations from the published list
    # the same numbers as evaluating only the intersection, with the published durations
    inter = {c: ev for c, ev in gt.items() if c != "Ynot_published_clip"}
    durations = {c: published_eval_clips()[c] for c in inter}
    plain = replace(AUDIOSET_STRONG, clip_list=False)
    base = evaluate(Memory(scores, ts, labels), inter, durations, protocol=plain, metrics=["psds1"], warn=None)
    assert res.summary["n_clips"] == base.summary["n_clips"] and res.summary["psds1"] == base.summary["psds1"]


def test_data_outside_the_published_list_is_scored_whole(renamed) -> None:  # noqa: ANN001
    gt, scores, labels, ts = renamed
    own = {f"Yown{i}": ev for i, ev in enumerate(gt.values())}
    sc = {f"Yown{i}": s for i, s in enumerate(scores.values())}
    warnings: list[str] = []
    res = evaluate(Memory(sc, ts, labels), own, protocol="audioset-strong", metrics=["psds1"], warn=warnings.append)
    assert not res.summary["clip_list"]["applied"] and any("no clip is in the published list" in w for w in warnings)
    assert res.summary["n_clips"] == sum(1 for ev in own.values() if ev)


def test_cli_reports_the_clip_list(renamed, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from ptsed.cli.main import main
    from ptsed.core.types import FrameScores

    gt, scores, labels, ts = renamed
    folder = tmp_path / "scores"
    folder.mkdir()
    for clip, s in scores.items():
        FrameScores(s.astype(np.float32), ts, labels).to_dataframe().to_csv(
            folder / f"{clip}.tsv", sep="\t", index=False
        )
    gt_file = tmp_path / "gt.tsv"
    gt_file.write_text(
        "filename\tonset\toffset\tevent_label\n"
        + "".join(f"{c}.wav\t{a}\t{b}\t{n}\n" for c, ev in gt.items() for a, b, n in ev)
    )
    args = ["evaluate", "--ground-truth", str(gt_file), "--scores", str(folder), "--protocol", "audioset-strong"]
    assert main([*args, "--no-plot", "--metrics", "psds1", "--output", str(tmp_path / "e")]) == 0
    err = capsys.readouterr().err
    assert "5 of the 16935 published eval clips" in err and "1 not in the published list" in err
