"""Batch runs never write outside their folder, never mix runs, never look complete when they are not
(issue 17): output paths, the folder lock, partial tables, settings checks, ``--resume`` on changed
inputs, HDF5 assembly, full disks, damaged replay inputs, odd names and shared stems."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ptsed.cli.main import main
from ptsed.core.errors import ConfigError
from ptsed.core.types import Event
from ptsed.inference.types import FileResult
from ptsed.io.lock import LOCK_NAME, FolderLock
from ptsed.io.results import (
    atomic_write_text,
    get_writer,
    output_path,
    output_stem,
    read_events,
    safe_relative_name,
)
from test_cli_detect import (
    _tone,
    tiny,  # noqa: F401 - the fixture (a tiny model as `--model tiny`)
)

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def audio(tmp_path: Path) -> Path:
    root = tmp_path / "audio"
    root.mkdir()
    for i, name in enumerate(["a.wav", "b.wav", "c.wav"]):
        sf.write(root / name, _tone(2.0 + i, seed=i), 16_000)
    return root


def _manifest(out: Path) -> list[dict]:
    lines = (out / "ptsed_manifest.jsonl").read_text(errors="replace").splitlines()
    return [json.loads(x) for x in lines if x.startswith("{") and x.endswith("}")]


def _files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


# ---------------------------------------------------------------------------------------------------
# 1. outputs never escape --output
# ---------------------------------------------------------------------------------------------------
def test_output_names_are_made_safe_in_one_place(tmp_path: Path) -> None:
    assert safe_relative_name("../../a/b.wav") == "a/b.wav"
    assert safe_relative_name("/etc/x.wav") == "etc/x.wav"
    assert safe_relative_name("C:\\data\\..\\x.wav") == "data/x.wav"
    assert output_stem("../site1/rec.wav") == "site1/rec"
    with pytest.raises(ConfigError, match="cannot name output files"):
        safe_relative_name("../..")
    out = tmp_path / "out"
    (out / "scores").mkdir(parents=True)
    assert output_path(out, "scores", "../../x.tsv") == out / "scores" / "x.tsv"
    (tmp_path / "elsewhere").mkdir()
    (out / "scores" / "link").symlink_to(tmp_path / "elsewhere")  # resolves outside: refused
    with pytest.raises(ConfigError, match="outside the output folder"):
        output_path(out, "scores", "link/x.tsv")


@pytest.mark.usefixtures("tiny")
def test_replayed_npz_names_never_choose_output_paths(audio: Path, tmp_path: Path) -> None:
    first = tmp_path / "first"
    assert main(["detect", str(audio / "a.wav"), "--model", "tiny", "-o", str(first), "-f", "npz", "-q"]) == 0
    victim = tmp_path / "victim.tsv"
    victim.write_text("precious\n")
    frames = tmp_path / "frames"
    frames.mkdir()
    with np.load(first / "frames" / "a.npz") as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    for file, name in [("abs.npz", str(tmp_path / "victim.wav")), ("up.npz", "../../../victim.wav")]:
        np.savez(frames / file, **{**arrays, "meta": np.array(json.dumps({**meta, "name": name}))})
    out = tmp_path / "out"
    before = _files_under(tmp_path)
    fmts = "tsv,scores,raven,audacity,npz"
    assert main(["detect", str(frames), "-o", str(out), "-f", fmts, "--threshold", "0.2", "-q"]) == 0
    assert victim.read_text() == "precious\n"
    assert {p for p in _files_under(tmp_path) - before if not p.startswith("out")} == set()
    assert (out / "scores" / "abs.tsv").is_file() and (out / "scores" / "up.tsv").is_file()
    assert (out / "raven" / "up.selections.txt").is_file()
    names = {e.filename for e in read_events(out / "events.tsv")}  # the stored names stay table data
    assert names <= {str(tmp_path / "victim.wav"), "../../../victim.wav"}


@pytest.mark.usefixtures("tiny")
def test_list_file_entries_with_parent_parts_write_inside_output(audio: Path, tmp_path: Path) -> None:
    lists = tmp_path / "lists" / "a"
    lists.mkdir(parents=True)
    (lists / "files.txt").write_text("../../audio/a.wav\n" + f"{audio / 'b.wav'}\n")
    out = tmp_path / "out"
    before = _files_under(audio)
    args = ["detect", f"@{lists / 'files.txt'}", "--model", "tiny", "-o", str(out), "-f", "tsv,scores,raven", "-q"]
    assert main(args) == 0
    assert _files_under(audio) == before  # nothing written beside the inputs
    assert (out / "scores" / "audio" / "a.tsv").is_file() and (out / "raven" / "audio" / "a.selections.txt").is_file()
    assert (out / "scores" / "b.tsv").is_file()


# ---------------------------------------------------------------------------------------------------
# 2. concurrent runs
# ---------------------------------------------------------------------------------------------------
def test_folder_lock_refuses_a_live_holder_and_takes_over_a_stale_one(tmp_path: Path) -> None:
    with FolderLock(tmp_path, "first") as held:
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
        with pytest.raises(ConfigError, match=f"in use by process {os.getpid()}"):
            FolderLock(tmp_path).acquire()
        assert held.held
    assert not (tmp_path / LOCK_NAME).exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    with FolderLock(tmp_path):  # its holder is gone: stale
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


@pytest.mark.usefixtures("tiny")
def test_second_run_into_a_locked_folder_is_refused_with_one_line(
    audio: Path,
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        import socket

        (out / LOCK_NAME).write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
        assert main(["detect", str(audio), "--model", "tiny", "-o", str(out), "-q"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"in use by process {holder.pid}" in err[0] and "Traceback" not in err[0]
        assert not (out / "events.tsv").exists()
    finally:
        holder.kill()
        holder.wait()
    assert main(["detect", str(audio), "--model", "tiny", "-o", str(out), "-q"]) == 0  # stale now
    assert not (out / LOCK_NAME).exists()


def test_concurrent_atomic_writes_use_unique_temporary_names(tmp_path: Path) -> None:
    target = tmp_path / "events.tsv"
    errors: list[BaseException] = []

    def writer(tag: str) -> None:
        try:
            for i in range(200):
                atomic_write_text(target, [f"{tag} {i}\n"] * 50)
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(t,)) for t in "AB"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    lines = target.read_text().splitlines()
    assert len(lines) == 50 and len(set(lines)) == 1  # one whole file, never a mix
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.tsv"]


# ---------------------------------------------------------------------------------------------------
# 3. partial results never look complete; settings never mix
# ---------------------------------------------------------------------------------------------------
def _predictor():  # noqa: ANN202
    from ptsed.inference.predictor import Predictor
    from tiny_models import tiny_model

    return Predictor(tiny_model(context=3), device="cpu", batch_size=2)


def test_interrupted_run_writes_partial_tables_and_resume_completes_them(audio: Path, tmp_path: Path) -> None:
    from ptsed.inference.batch import run_batch
    from ptsed.io.audio import list_audio_files

    sources = list_audio_files(audio)
    out = tmp_path / "out"
    seen: list[str] = []

    def stop_after_two(result: FileResult) -> None:
        seen.append(result.name)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(_predictor(), sources, output_dir=out, formats=["tsv", "json", "h5"], progress=False,
                  on_result=stop_after_two)  # fmt: skip
    for name in ("events.tsv", "events.json", "frame_scores.h5"):
        assert not (out / name).exists(), name
    partial = read_events(out / "events.partial.tsv")
    assert {e.filename for e in partial} <= {"a.wav", "b.wav"}
    end = _manifest(out)[-1]
    assert end["status"] == "interrupted" and end["files"] == ["a.wav", "b.wav"]
    assert set(end["tables"]) == {"events.partial.tsv", "events.partial.json", "frame_scores.partial.h5"}
    assert not (out / LOCK_NAME).exists()
    summary = run_batch(_predictor(), sources, output_dir=out, formats=["tsv", "json", "h5"], resume=True,
                        progress=False)  # fmt: skip
    assert (summary.processed, summary.skipped) == (1, 2)
    assert (out / "events.tsv").is_file() and not (out / "events.partial.tsv").exists()
    assert not (out / "frame_scores.partial.h5").exists()
    import h5py

    with h5py.File(out / "frame_scores.h5") as fh:
        assert sorted(fh) == ["a.wav", "b.wav", "c.wav"]
    assert _manifest(out)[-1]["status"] == "finished" and not (out / ".ptsed_parts").exists()


@pytest.mark.usefixtures("tiny")
def test_a_finished_run_with_failures_writes_normal_tables(audio: Path, tmp_path: Path) -> None:
    (audio / "bad.wav").write_bytes(b"not audio")
    out = tmp_path / "out"
    assert main(["detect", str(audio), "--model", "tiny", "-o", str(out), "-q"]) == 1
    assert (out / "events.tsv").is_file() and not (out / "events.partial.tsv").exists()


def test_killed_rerun_leaves_no_complete_looking_tables(audio: Path, tmp_path: Path) -> None:
    """kill -9 in the middle of a re-run: the old events.tsv is gone, the stale lock is taken over."""
    out = tmp_path / "out"
    script = f"""
import os, sys
sys.path[:0] = [{str(TESTS)!r}]
from ptsed.inference.batch import run_batch
from ptsed.inference.predictor import Predictor
from ptsed.io.audio import list_audio_files
from tiny_models import tiny_model

def die(result):
    if sys.argv[1] == "kill":
        os.kill(os.getpid(), 9)

threshold = float(sys.argv[2])
p = Predictor(tiny_model(context=3), device="cpu", postprocess={{"threshold": threshold}})
run_batch(p, list_audio_files({str(audio)!r}), output_dir={str(out)!r}, progress=False, on_result=die,
          overwrite=sys.argv[3] == "overwrite")
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(TESTS)]))}

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, env=env)

    def finish() -> None:
        from ptsed.inference.batch import run_batch
        from ptsed.io.audio import list_audio_files

        run_batch(_predictor(), list_audio_files(audio), output_dir=out, progress=False)

    finish()
    assert (out / "events.tsv").is_file()
    killed = run("kill", "0.5", "-")  # same settings
    assert killed.returncode == -9, killed.stderr
    assert (out / LOCK_NAME).exists() and not (out / "events.tsv").exists()
    finish()  # the dead run's lock is stale
    assert (out / "events.tsv").is_file()
    killed = run("kill", "0.3", "overwrite")  # new settings
    assert killed.returncode == -9, killed.stderr
    assert not (out / "events.tsv").exists()
    settings = json.loads((out / "ptsed_settings.json").read_text())["settings"]
    assert settings["postprocess"]["threshold"] == 0.3


@pytest.mark.usefixtures("tiny")
def test_other_settings_are_refused_and_overwrite_removes_the_old_outputs(
    audio: Path,
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    out = tmp_path / "out"
    args = ["detect", str(audio), "--model", "tiny", "-o", str(out), "-f", "tsv,scores", "-q"]
    assert main([*args, "--threshold", "0.5"]) == 0
    (out / "scores" / "a.tsv").write_text("old")
    capsys.readouterr()
    assert main([*args, "--threshold", "0.3", "--median-filter", "0.2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "postprocess.threshold: 0.5 -> 0.3" in err[0] and "--overwrite" in err[0]
    assert "postprocess.median_filter_s" in err[0]
    assert (out / "scores" / "a.tsv").read_text() == "old"  # nothing touched
    (out / "notes.txt").write_text("mine")
    assert main([*args, "--threshold", "0.3", "--overwrite"]) == 0
    assert (out / "scores" / "a.tsv").read_text() != "old" and (out / "notes.txt").read_text() == "mine"
    assert main([*args, "--threshold", "0.3", "--overwrite", "--resume"]) == 2


# ---------------------------------------------------------------------------------------------------
# 4. --resume notices changed inputs
# ---------------------------------------------------------------------------------------------------
def test_resume_redoes_changed_inputs_and_trusts_unchanged_content(audio: Path, tmp_path: Path) -> None:
    from ptsed.inference.batch import run_batch
    from ptsed.io.audio import list_audio_files

    out = tmp_path / "out"

    def run() -> list[str]:
        done: list[str] = []
        run_batch(_predictor(), list_audio_files(audio), output_dir=out, formats=["tsv", "scores"], resume=True,
                  progress=False, on_result=lambda r: done.append(r.name))  # fmt: skip
        return done

    assert run() == ["a.wav", "b.wav", "c.wav"]
    assert run() == []
    data, sr = sf.read(audio / "a.wav")
    sf.write(audio / "a.wav", data[::-1].copy(), sr)  # same size, other content
    st = (audio / "b.wav").stat()
    os.utime(audio / "b.wav", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same content
    sf.write(audio / "c.wav", data, sr)  # other size
    assert run() == ["a.wav", "c.wav"]
    entries = [m for m in _manifest(out) if m.get("name") == "b.wav"]
    assert entries[-1]["mtime_ns"] == st.st_mtime_ns + 10**9  # its new mtime is recorded: not hashed again
    assert run() == []


# ---------------------------------------------------------------------------------------------------
# 5. HDF5 survives a full disk and damage
# ---------------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("tiny")
def test_h5_survives_a_full_disk_during_assembly_and_a_damaged_file(
    audio: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,  # noqa: ANN001
) -> None:
    pytest.importorskip("h5py")
    import h5py

    import ptsed.io.results as results

    out = tmp_path / "out"
    args = ["detect", str(audio), "--model", "tiny", "-o", str(out), "-f", "tsv,h5", "-q"]
    real = results._copy_group
    calls = []

    def full(src, dst, name):  # noqa: ANN001, ANN202
        calls.append(name)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, name)

    monkeypatch.setattr(results, "_copy_group", full)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "the disk is full: cannot write" in err and "frame_scores.h5" in err and "MiB free" in err
    assert not (out / "frame_scores.h5").exists() and not list(out.glob(".*.tmp*"))
    monkeypatch.setattr(results, "_copy_group", real)
    assert main([*args, "--resume"]) == 0
    with h5py.File(out / "frame_scores.h5") as fh:
        assert sorted(fh) == ["a.wav", "b.wav", "c.wav"]
    (out / "frame_scores.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # damaged
    with open(out / "ptsed_manifest.jsonl", "ab") as fh:
        fh.write(b'{"name": "a.w\xff\xfe')  # and a manifest line cut by a full disk
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    assert "frame_scores.h5" in capsys.readouterr().err  # reported, then rebuilt
    assert _manifest(out)[-1]["status"] == "finished"  # the cut line stayed alone
    with h5py.File(out / "frame_scores.h5") as fh:
        assert sorted(fh) == ["a.wav", "b.wav", "c.wav"]


# ---------------------------------------------------------------------------------------------------
# 6. errors as one line; damaged replay inputs; odd names; shared stems
# ---------------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("tiny")
def test_output_that_is_a_file_or_cannot_be_made_is_one_line(
    audio: Path,
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    for out, words in [(afile, "is a file, not a folder"), (afile / "sub", "cannot create the output folder")]:
        assert main(["detect", str(audio), "--model", "tiny", "-o", str(out), "-q"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err


@pytest.mark.usefixtures("tiny")
def test_unwritable_output_folder_is_one_line(
    audio: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,  # noqa: ANN001
) -> None:
    out = tmp_path / "ro"
    out.mkdir(mode=0o500)
    if os.geteuid() == 0:  # permissions do not apply to root: the folder reports itself unwritable
        import ptsed.inference.batch as batch

        monkeypatch.setattr(batch.os, "access", lambda path, mode: Path(path) != out)
    assert main(["detect", str(audio), "--model", "tiny", "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write to the output folder" in err[0]


@pytest.mark.usefixtures("tiny")
def test_full_disk_during_detect_is_one_line_naming_file_and_free_space(
    audio: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,  # noqa: ANN001
) -> None:
    import ptsed.io.results as results

    real = results.scores_tsv_pieces

    def pieces(fs, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        yield next(real(fs, *a, **k))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results, "scores_tsv_pieces", pieces)
    out = tmp_path / "out"
    assert main(["detect", str(audio), "--model", "tiny", "-o", str(out), "-f", "tsv,scores", "-q"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
    assert len(err) == 1 and "the disk is full: cannot write" in err[0]
    assert str(out / "scores" / "a.tsv") in err[0] and "MiB free" in err[0]
    assert not list((out / "scores").glob(".*")) and not (out / "events.tsv").exists()
    assert _manifest(out)[-1]["status"] == "interrupted"


@pytest.mark.usefixtures("tiny")
def test_replay_goes_past_a_corrupt_first_npz_and_ignores_leftovers(
    audio: Path,
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    first = tmp_path / "first"
    assert main(["detect", str(audio / "a.wav"), "--model", "tiny", "-o", str(first), "-f", "npz", "-q"]) == 0
    frames = first / "frames"
    (frames / "0broken.npz").write_bytes(b"PK\x03\x04 not a zip")
    (frames / ".a.npz.123-abcd.tmp.npz").write_bytes(b"leftover")
    (frames / "a.npz.tmp").write_bytes(b"leftover")
    out = tmp_path / "out"
    assert main(["detect", str(frames), "-o", str(out), "--threshold", "0.2"]) == 1
    err = capsys.readouterr().err
    assert "0broken.npz" in err and "1 failed" in err and ".tmp" not in err.replace(str(tmp_path), "")
    assert {e.filename for e in read_events(out / "events.tsv")} == {"a.wav"}
    assert {m["name"] for m in _manifest(out) if "name" in m} == {"0broken.npz", "a.npz"}


def test_names_with_tab_and_newline_read_back(tmp_path: Path) -> None:
    name = 'odd\tname\nwith "quotes".wav'
    r = FileResult(source=name, name=name, duration_s=1.0, events=[Event(0.1, 0.5, "Dog", name, 0.9)])
    w = get_writer("tsv", tmp_path)
    w.add(r)
    w.close()
    (back,) = read_events(tmp_path / "events.tsv")
    assert (back.filename, back.onset, back.offset, back.label) == (name, 0.1, 0.5, "Dog")
    import pandas as pd

    assert pd.read_csv(tmp_path / "events.tsv", sep="\t")["filename"].tolist() == [name]


@pytest.mark.usefixtures("tiny")
def test_inputs_sharing_a_stem_collide_only_where_files_would(
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    rec = tmp_path / "rec"
    rec.mkdir()
    sf.write(rec / "take1.wav", _tone(2.0), 16_000)
    sf.write(rec / "take1.flac", _tone(3.0, seed=1), 16_000)
    sf.write(rec / "take2.wav", _tone(2.0, seed=2), 16_000)
    out = tmp_path / "out"
    assert main(["detect", str(rec), "--model", "tiny", "-o", str(out), "--threshold", "0.2", "-q"]) == 0
    assert "keep the extension" not in capsys.readouterr().err  # only events.tsv: nothing collides
    assert {e.filename for e in read_events(out / "events.tsv")} >= {"take1.wav", "take1.flac"}
    out2 = tmp_path / "out2"
    assert main(["detect", str(rec), "--model", "tiny", "-o", str(out2), "-f", "tsv,scores", "-q"]) == 0
    assert sorted(p.name for p in (out2 / "scores").iterdir()) == ["take1.flac.tsv", "take1.wav.tsv", "take2.tsv"]
    assert capsys.readouterr().err.count("keep the extension") == 1
