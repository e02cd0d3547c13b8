"""``ptsed synth`` / :func:`ptsed.data.synth.synthesize` on tiny clips the tests write."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conformance import REPO, SOUNDSCAPES, require_shared
from ptsed.cli.main import main
from ptsed.core.errors import ConfigError
from ptsed.data.synth import SynthResult, loop_to_length, synthesize, trim_silence

SR = 16000
LENGTHS = {"tone": [0.5, 1.25], "click": [0.3], "hum": [2.0, 12.0]}  # seconds; 12 s is longer than a soundscape


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.fixture()
def sources(tmp_path: Path) -> Path:
    """fg/<class>/*.wav (a Nyquist square wave: every sample is +-0.5, none silent), bg/*.wav, classes.tsv."""
    root = tmp_path / "src"
    for cls, lengths in LENGTHS.items():
        for i, sec in enumerate(lengths):
            (root / "fg" / cls).mkdir(parents=True, exist_ok=True)
            x = 0.5 * (-1.0) ** np.arange(round(sec * SR))
            x = np.concatenate([np.zeros(800), x, np.zeros(1600)])  # silence to be trimmed
            sf.write(root / "fg" / cls / f"{cls}{i}.wav", x, SR, subtype="PCM_16")
    (root / "bg").mkdir()
    rng = np.random.default_rng(0)
    sf.write(root / "bg" / "long.wav", rng.uniform(-0.1, 0.1, 15 * SR), SR, subtype="PCM_16")
    sf.write(root / "bg" / "short.flac", rng.uniform(-0.1, 0.1, 3 * SR), SR, subtype="PCM_16")
    (root / "classes.tsv").write_text("folder\tlabel\ntone\tTone, sine\nclick\tClick\nhum\tHum\n")
    return root


def run_synth(src: Path, out: Path, count: int = 6, seed: int = 0, **kw) -> SynthResult:
    kw = {"classes": src / "classes.tsv", "progress": False, **kw}
    return synthesize(src / "fg", src / "bg", out, count, seed, **kw)


def test_same_seed_same_bytes_and_independent_of_count(sources: Path, tmp_path: Path) -> None:
    run_synth(sources, tmp_path / "a", count=4, seed=7)
    run_synth(sources, tmp_path / "b", count=6, seed=7)
    run_synth(sources, tmp_path / "c", count=4, seed=8)
    for i in range(4):
        name = f"audio/soundscape_{i:05d}.wav"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
    a_labels = [r for r in rows(tmp_path / "a/labels.tsv")]
    b_labels = [r for r in rows(tmp_path / "b/labels.tsv") if r["filename"] < "soundscape_00004.wav"]
    assert a_labels == b_labels


def test_layout_and_exact_labels(sources: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # background far below the events: the soundscape is (after PCM-16 rounding) non-zero exactly where events are
    result = run_synth(sources, out, count=8, seed=1, background_db=(-120, -120), snr_db=(100, 115))
    assert sorted(p.name for p in (out / "audio").iterdir()) == [f"soundscape_{i:05d}.wav" for i in range(8)]
    assert (out / "labels.tsv").read_text().splitlines()[0] == "filename\tonset\toffset\tevent_label"
    assert (out / "durations.tsv").read_text().splitlines()[0] == "filename\tduration"
    assert [r["duration"] for r in rows(out / "durations.tsv")] == ["10"] * 8
    labels = rows(out / "labels.tsv")
    assert {r["event_label"] for r in labels} <= {"Tone, sine", "Click", "Hum"}
    allowed = {round(s * SR) for v in LENGTHS.values() for s in v if s <= 10} | {10 * SR}
    per_file: dict[str, list[tuple[int, int]]] = {}
    for r in labels:
        on, off = round(float(r["onset"]) * SR), round(float(r["offset"]) * SR)
        assert float(r["onset"]) * SR == pytest.approx(on, abs=1e-3)  # onsets on the sample grid
        assert off - on in allowed  # trimmed clip length, or the 10 s crop of the 12 s clip
        assert 0 <= on < off <= 10 * SR
        per_file.setdefault(r["filename"], []).append((on, off))
    counts = [len(per_file.get(f"soundscape_{i:05d}.wav", [])) for i in range(8)]
    assert all(1 <= c <= 5 for c in counts) and sum(counts) == result.num_events
    for name, spans in per_file.items():
        x, sr = sf.read(out / "audio" / name, dtype="int16")
        assert sr == SR and x.shape == (10 * SR,)
        truth = np.zeros(10 * SR, bool)
        for on, off in spans:
            truth[on:off] = True
        assert np.array_equal(x != 0, truth), name


def test_only_files_and_sources_table(sources: Path, tmp_path: Path) -> None:
    out = tmp_path / "only"
    run_synth(sources, out, count=10, only=["Click", "tone"], min_events=2, max_events=3)
    labels = rows(out / "labels.tsv")
    assert {r["event_label"] for r in labels} == {"Click", "Tone, sine"}
    used = rows(out / "sources.tsv")
    assert {Path(r["source"]).parent.name for r in used if r["role"] == "fg"} == {"click", "tone"}
    assert {r["role"] for r in used} == {"fg", "bg"}
    listed = tmp_path / "list.tsv"
    listed.write_text("path\tgroup\nsrc/fg/tone/tone1.wav\tA\nsrc/bg/short.flac\tB\n")
    out2 = tmp_path / "files"
    run_synth(sources, out2, count=5, files=listed)
    used = rows(out2 / "sources.tsv")
    assert {Path(r["source"]).name for r in used} == {"tone1.wav", "short.flac"}
    assert all(float(r["offset"]) - float(r["onset"]) == pytest.approx(1.25) for r in used if r["role"] == "fg")


def test_foreground_table_with_several_labels(sources: Path, tmp_path: Path) -> None:
    table = sources / "fg" / "table.tsv"
    table.write_text("filename\tlabels\ntone/tone0.wav\tTone, sine;Music\nclick/click0.wav\tClick;Tick\n")
    out = tmp_path / "table"
    synthesize(table, sources / "bg" / "long.wav", out, 6, 3, progress=False, min_events=2, max_events=2)
    labels = rows(out / "labels.tsv")
    pairs = {}
    for r in labels:
        pairs.setdefault((r["filename"], r["onset"], r["offset"]), set()).add(r["event_label"])
    assert set(map(frozenset, pairs.values())) <= {frozenset({"Tone, sine", "Music"}), frozenset({"Click", "Tick"})}
    out2 = tmp_path / "table_only"
    synthesize(table, sources / "bg", out2, 6, 3, only=["Music", "Tick"], progress=False)
    assert {r["event_label"] for r in rows(out2 / "labels.tsv")} == {"Music", "Tick"}


def test_bad_clips_are_skipped_and_reported(sources: Path, tmp_path: Path) -> None:
    (sources / "fg" / "click" / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunk")
    sf.write(sources / "fg" / "click" / "silent.wav", np.zeros(SR), SR, subtype="PCM_16")
    result = run_synth(sources, tmp_path / "bad", count=30, only=["Click"])
    assert len(result.files) == 30
    assert {Path(p.split(":")[0]).name for p in result.problems} == {"broken.wav", "silent.wav"}
    assert all(Path(r["source"]).name not in ("broken.wav", "silent.wav") for r in rows(tmp_path / "bad/sources.tsv"))


def test_errors(sources: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'dog' matches no foreground clip"):
        run_synth(sources, tmp_path / "e1", only=["dog"])
    (sources / "fg" / "extra").mkdir()
    sf.write(sources / "fg" / "extra" / "x.wav", np.full(SR, 0.3), SR)
    with pytest.raises(ConfigError, match="extra.*classes table"):
        run_synth(sources, tmp_path / "e2")
    run_synth(sources, tmp_path / "e3", only=["Hum"], count=1)
    with pytest.raises(ConfigError, match="already holds soundscapes"):
        run_synth(sources, tmp_path / "e3", only=["Hum"], count=1)
    run_synth(sources, tmp_path / "e3", only=["Hum"], count=1, overwrite=True)
    with pytest.raises(ConfigError, match="no background"):
        (tmp_path / "nobg").mkdir()
        synthesize(sources / "fg", tmp_path / "nobg", tmp_path / "e4", 1, progress=False, only=["hum"])


def test_cli(sources: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli"
    argv = ["synth", "--foreground", str(sources / "fg"), "--background", str(sources / "bg"), "--count", "3",
            "--seed", "5", "--output", str(out), "--classes", str(sources / "classes.tsv"),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "wrote 3 soundscapes" in capsys.readouterr().out
    assert len(rows(out / "durations.tsv")) == 3
    assert main([*argv[:-1], "--duration", "4", "--overwrite", "--only", "Click"]) == 0
    assert sf.info(out / "audio" / "soundscape_00000.wav").frames == 4 * SR
    assert not (out / "audio" / "soundscape_00003.wav").exists()
    assert {r["event_label"] for r in rows(out / "labels.tsv")} == {"Click"}
    assert main([*argv, "--only", "nope", "--overwrite"]) == 2
    assert "nope" in capsys.readouterr().err


def test_signal_helpers() -> None:
    x = np.concatenate([np.zeros(5), [0.5, -1.0, 0.25], np.full(3, 1e-4)]).astype(np.float32)
    assert trim_silence(x, 60).tolist() == [0.5, -1.0, 0.25]
    assert len(trim_silence(x, 90)) == 6
    loop = loop_to_length(np.ones(10, np.float32), 35, 4, 2)
    assert loop.shape == (35,) and np.allclose(loop, 1.0)  # crossfades of a constant stay constant


def test_shipped_example_is_what_the_documented_command_builds(tmp_path: Path) -> None:
    fixtures = require_shared(SOUNDSCAPES / "fixtures")
    only = ["Speech", "Music", "Walk, footsteps", "Beep, bleep", "Cattle, bovinae"]
    synthesize(fixtures / "fixtures.tsv", fixtures / "rain.wav", tmp_path, 1, 1129, duration_s=20.0, only=only,
               min_events=5, max_events=7, snr_db=(10, 20), progress=False)  # fmt: skip
    example = REPO / "examples"
    assert (tmp_path / "audio" / "soundscape_00000.wav").read_bytes() == (example / "soundscape.wav").read_bytes()
    built = (tmp_path / "labels.tsv").read_text().replace("soundscape_00000.wav", "soundscape.wav")
    assert built == (example / "soundscape.tsv").read_text()
    script = (example / "make_soundscape.sh").read_text()
    assert "--seed 1129" in script and "--duration 20" in script and "--snr-db 10 20" in script
    used = {Path(r["source"]).name for r in rows(tmp_path / "sources.tsv")}
    attribution = (example / "ATTRIBUTION.md").read_text()
    assert all(f"`{name}`" in attribution for name in used)
