"""Missing optional dependencies: every command stops before any work with one line naming the extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ptsed import extras
from ptsed.cli.main import main


def _absent(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``modules`` look uninstalled (``find_spec`` answers None, ``import`` fails)."""
    for m in modules:
        monkeypatch.setitem(sys.modules, m, None)


def _no_model_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any model construction or training start fails the test."""
    import ptsed.inference.predictor
    import ptsed.models.factory
    import ptsed.train.finetune

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("model work started before the extras were checked")

    monkeypatch.setattr(ptsed.models.factory, "create_model", forbidden)
    monkeypatch.setattr(ptsed.inference.predictor, "Predictor", forbidden)
    monkeypatch.setattr(ptsed.train.finetune, "load_start_model", forbidden)


def _one_line(capsys: pytest.CaptureFixture[str], extra: str) -> str:
    out, err = capsys.readouterr()
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert f'pip install "ptsed[{extra}]"' in lines[0] and "Traceback" not in err and not out
    return lines[0]


EVAL = ["evaluate", "--ground-truth", "gt.tsv", "--durations", "d.tsv", "--model", "demo", "--audio", "clips/"]

CASES = [
    # (argv, modules made absent, extra named)
    ([*EVAL, "--output", "o", "--no-plot"], ["sed_scores_eval"], "eval"),
    ([*EVAL, "--output", "o", "--no-plot"], ["pandas"], "eval"),
    ([*EVAL, "--output", "o", "--no-plot"], ["pkg_resources"], "eval"),  # setuptools >= 81
    ([*EVAL, "--output", "o"], ["matplotlib"], "plot"),
    (["finetune", "--model", "demo", "--train", "t", "--output", "o"], ["lightning"], "train"),
    (["finetune", "--model", "demo", "--train", "t", "--output", "o"], ["sed_scores_eval"], "train"),
    (["finetune", "--model", "demo", "--train", "t", "--output", "o"], ["yaml"], "train"),
    (["train", "audioset-strong", "--model", "frame_mn06", "--output", "o"], ["lightning"], "train"),
    (["train", "audioset-strong", "--model", "frame_mn06", "--output", "o"], ["h5py"], "hdf5"),
    (["ensemble-logits", "--model", "frame_mn06", "--audio", "a", "--output", "e.h5"], ["h5py"], "hdf5"),
    (["detect", "x.wav", "--model", "demo", "--output", "o", "--format", "tsv,h5"], ["h5py"], "hdf5"),
    (["detect", "x.wav", "--model", "demo", "--output", "o", "--plot"], ["matplotlib"], "plot"),
    (["embed", "x.wav", "--model", "demo", "--output", "o", "--format", "h5"], ["h5py"], "hdf5"),
    (["tune", "--scores", "s", "--ground-truth", "gt.tsv", "--output", "o"], ["sed_scores_eval"], "eval"),
]


@pytest.mark.parametrize(("argv", "absent", "extra"), CASES, ids=[f"{c[0][0]}-{c[1][0]}" for c in CASES])
def test_command_names_the_missing_extra_before_any_work(
    argv: list[str], absent: list[str], extra: str, monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    _no_model_work(monkeypatch)
    _absent(monkeypatch, *absent)
    assert main(argv) == 2
    line = _one_line(capsys, extra)
    assert line.startswith(f"ptsed {argv[0]}: error: ") and f"missing: {absent[0]}" in line
    assert not (tmp_path / "o").exists()  # nothing written either


def test_commands_run_past_the_check_when_the_extras_are_installed(monkeypatch, capsys, tmp_path: Path) -> None:
    """The same evaluate call with everything installed gets past the check (and fails later, on the data)."""
    monkeypatch.chdir(tmp_path)
    _no_model_work(monkeypatch)
    assert main([*EVAL, "--output", "o", "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert "pip install" not in err and "gt.tsv" in err


def test_console_script_prints_no_traceback(tmp_path: Path) -> None:
    """A fresh interpreter without sed_scores_eval: `ptsed evaluate` exits 2 with one line, no traceback."""
    code = (
        "import sys; sys.modules['sed_scores_eval'] = None\n"
        "from ptsed.cli.main import main\n"
        f"sys.exit(main({[*EVAL, '--output', str(tmp_path / 'o')]!r}))\n"
    )
    from child_env import child_env

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=child_env())
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        'ptsed evaluate: error: ptsed evaluate needs the "eval" extra (missing: sed_scores_eval): '
        'pip install "ptsed[eval]"'
    ]


def test_api_entries_check_their_extras(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ptsed.evaluation.protocol import evaluate
    from ptsed.train.config import FinetuneConfig
    from ptsed.train.finetune import finetune

    _no_model_work(monkeypatch)

    def source():  # noqa: ANN202 - a model source that must never be run
        raise AssertionError("the source was read before the extras were checked")
        yield

    _absent(monkeypatch, "sed_scores_eval")
    with pytest.raises(extras.MissingExtraError, match=r'pip install "ptsed\[eval\]"'):
        evaluate(source(), {}, None)
    _absent(monkeypatch, "lightning")
    with pytest.raises(extras.MissingExtraError, match=r'pip install "ptsed\[train\]"') as info:
        finetune(FinetuneConfig(train=str(tmp_path)), tmp_path / "run")
    assert isinstance(info.value, ImportError) and info.value.extra == "train"
    assert not (tmp_path / "run").exists()


def test_require_and_missing_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(extras.EXTRAS) == {"media", "plot", "hdf5", "eval", "train", "onnx", "live"}
    for extra in extras.EXTRAS:  # the test environment installs ptsed[all]
        assert extras.missing_modules(extra) == [] and extras.has(extra)
    extras.require("eval", "train", "hdf5", "plot", "media")
    _absent(monkeypatch, "av", "h5py")
    assert extras.missing_modules("media") == ["av"] and not extras.has("hdf5")
    with pytest.raises(extras.MissingExtraError) as info:
        extras.require("eval", "media", "hdf5", what="reading m4a")
    assert str(info.value) == 'reading m4a needs the "media" extra (missing: av): pip install "ptsed[media]"'
    with pytest.raises(KeyError, match="unknown extra"):
        extras.missing_modules("gpu")


def test_pyproject_and_readme_know_every_extra() -> None:
    """Every extra checked here exists in pyproject.toml (the printed pip command installs it) and has a row in
    the README's table of extras."""
    import tomllib

    root = Path(__file__).parent.parent
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    readme = (root / "README.md").read_text(encoding="utf-8")
    for extra in extras.EXTRAS:
        assert extra in declared and f"| `{extra}` |" in readme
