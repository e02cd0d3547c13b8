"""Checkpoint downloads against a real HTTP server on localhost: good, truncated, broken, missing and
corrupted files, cache hits, later corruption, and the offline message."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import ptsed
from hub_testing import Server, checkpoint_bytes, http_server, refused_url, register_tiny, tiny_released_state
from ptsed.core.errors import CheckpointError
from ptsed.hub import download as dl
from ptsed.hub import fetch
from ptsed.hub.cache import checkpoints_dir
from ptsed.models import layout
from ptsed.models.zoo import get_pretrained_spec, resolve_names

pytestmark = pytest.mark.network


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    with http_server() as srv:
        register_tiny(monkeypatch)
        monkeypatch.setenv(fetch.CHECKPOINT_BASE_ENV, srv.url + "/release")
        yield srv


def _leftovers() -> list[str]:
    """Every name in the checkpoint folder (temporary files included)."""
    folder = checkpoints_dir()
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _serve_good(server: Server, tmp_path: Path, tag: str = "as_strong", **kw: object) -> bytes:
    body = checkpoint_bytes(tiny_released_state(tag), tmp_path)
    server.serve(f"release/Tiny_{tag}.pt", body, **kw)  # type: ignore[arg-type]
    return body


def test_good_file_is_cached_recorded_and_loaded(server: Server, tmp_path: Path) -> None:
    body = _serve_good(server, tmp_path)
    spec = get_pretrained_spec("tiny")
    path = layout.fetch_checkpoint(spec, progress=False)
    assert path == checkpoints_dir() / "Tiny_as_strong.pt"
    assert path.read_bytes() == body
    rec = json.loads(fetch.record_path(path).read_text())
    assert rec["sha256"] == hashlib.sha256(body).hexdigest() and rec["size"] == len(body)
    assert rec["url"] == f"{server.url}/release/Tiny_as_strong.pt" and rec["head"]["n_strong"] == 447
    assert _leftovers() == ["Tiny_as_strong.pt", "Tiny_as_strong.pt.json"]
    assert server.requests == ["/release/Tiny_as_strong.pt"]  # labels come from PTSED_LABELS_DIR

    model = ptsed.create_model("tiny", progress=False)  # pretrained: through the cache
    expected = tiny_released_state()
    assert torch.equal(model.state_dict()["backbone.proj.weight"], expected["model.tiny.proj.weight"])
    assert len(model.labels) == 447
    assert server.requests == ["/release/Tiny_as_strong.pt"]  # the cache hit made no request


def test_cache_hit_makes_no_request(server: Server, tmp_path: Path) -> None:
    _serve_good(server, tmp_path)
    spec = get_pretrained_spec("tiny")
    first = layout.fetch_checkpoint(spec, progress=False)
    n = len(server.requests)
    for _ in range(3):
        assert layout.fetch_checkpoint(spec, progress=False) == first
    assert len(server.requests) == n == 1


def test_truncated_file_leaves_nothing(server: Server, tmp_path: Path) -> None:
    body = _serve_good(server, tmp_path, mode="truncate", cut=1000)
    with pytest.raises(CheckpointError) as info:
        layout.fetch_checkpoint(get_pretrained_spec("tiny"), progress=False)
    msg = str(info.value)
    assert "could not be downloaded" in msg and "Tiny_as_strong.pt" in msg
    assert f"the server announced {len(body)} bytes but sent 1000: the transfer was cut short" in msg
    assert _leftovers() == []


def test_broken_connection_leaves_nothing(server: Server, tmp_path: Path) -> None:
    _serve_good(server, tmp_path, mode="break", cut=2000)
    with pytest.raises(CheckpointError, match="could not be downloaded") as info:
        layout.fetch_checkpoint(get_pretrained_spec("tiny"), progress=False)
    assert "reset" in str(info.value) or "cut short" in str(info.value)
    assert _leftovers() == []


def test_missing_file_404(server: Server) -> None:
    spec = get_pretrained_spec("tiny")
    with pytest.raises(CheckpointError) as info:
        layout.fetch_checkpoint(spec, progress=False)
    msg = str(info.value)
    assert "HTTP 404" in msg and f"{server.url}/release/Tiny_as_strong.pt" in msg
    assert "--checkpoint PATH" in msg and str(checkpoints_dir() / "Tiny_as_strong.pt") in msg
    assert _leftovers() == []


def test_corrupted_bytes_fail_verification(server: Server, tmp_path: Path) -> None:
    body = bytearray(_serve_good(server, tmp_path))
    body[len(body) // 2 : len(body) // 2 + 64] = b"\x00" * 64
    body[:4] = b"JUNK"
    server.serve("release/Tiny_as_strong.pt", bytes(body))
    with pytest.raises(CheckpointError, match="failed verification and was deleted") as info:
        layout.fetch_checkpoint(get_pretrained_spec("tiny"), progress=False)
    assert "cannot be read" in str(info.value) and "\n" not in str(info.value)
    assert _leftovers() == []


@pytest.mark.parametrize("problem", ["missing", "misshaped", "classes"])
def test_wrong_layout_is_rejected(server: Server, tmp_path: Path, problem: str) -> None:
    state = tiny_released_state()
    if problem == "missing":
        del state["model.tiny.norm.weight"]
    elif problem == "misshaped":
        state["model.tiny.proj.weight"] = torch.zeros(8, 17)
    else:
        state = tiny_released_state("as_weak")  # 527 classes where 447 are expected
    server.serve("release/Tiny_as_strong.pt", checkpoint_bytes(state, tmp_path))
    with pytest.raises(CheckpointError) as info:
        layout.fetch_checkpoint(get_pretrained_spec("tiny"), progress=False)
    msg = str(info.value)
    assert "failed verification and was deleted" in msg and "tiny.as_strong" in msg
    expected = {"missing": "model.tiny.norm.weight", "misshaped": "(8, 17)", "classes": "527"}[problem]
    assert expected in msg
    assert _leftovers() == []


def test_known_hash_is_checked(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from ptsed.models import zoo

    body = _serve_good(server, tmp_path)
    good = hashlib.sha256(body).hexdigest()
    spec = replace(get_pretrained_spec("tiny"), sha256="0" * 64)
    with pytest.raises(CheckpointError, match=f"sha256 is {good}"):
        layout.fetch_checkpoint(spec, progress=False)
    assert _leftovers() == []
    spec = replace(spec, sha256=good.upper())
    monkeypatch.setitem(zoo.PRETRAINED, "tiny.as_strong", spec)
    assert layout.fetch_checkpoint(spec, progress=False).read_bytes() == body


def test_teacher_form_file_is_accepted(server: Server, tmp_path: Path) -> None:
    state = tiny_released_state(teacher=True)
    assert any(k.startswith("seq_model.rnn.") for k in state)
    server.serve("release/Tiny_as_strong.pt", checkpoint_bytes(state, tmp_path))
    path = layout.fetch_checkpoint(get_pretrained_spec("tiny"), progress=False)
    assert json.loads(fetch.record_path(path).read_text())["head"]["rnn_dim"] == 6


def test_later_corruption_is_caught_and_repaired(server: Server, tmp_path: Path) -> None:
    body = _serve_good(server, tmp_path)
    spec = get_pretrained_spec("tiny")
    path = layout.fetch_checkpoint(spec, progress=False)
    st = path.stat()
    # same size, different bytes, mtime restored: only a full re-hash notices
    data = bytearray(body)
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert layout.check_cached(spec) is None  # the cheap check trusts size + mtime
    assert "corrupted" in (layout.check_cached(spec, full=True) or "")
    assert layout.fetch_checkpoint(spec, progress=False, verify=True).read_bytes() == body
    assert len(server.requests) == 2

    # a changed mtime triggers the re-hash without verify=True
    path.write_bytes(bytes(data))
    assert layout.fetch_checkpoint(spec, progress=False).read_bytes() == body
    assert len(server.requests) == 3


def test_file_placed_by_hand_is_checked_and_recorded(server: Server, tmp_path: Path) -> None:
    spec = get_pretrained_spec("tiny")
    body = checkpoint_bytes(tiny_released_state(), tmp_path)
    target = fetch.checkpoint_path(spec)
    target.parent.mkdir(parents=True)
    target.write_bytes(body)
    assert layout.fetch_checkpoint(spec, progress=False) == target
    assert server.requests == []
    assert json.loads(fetch.record_path(target).read_text())["sha256"] == hashlib.sha256(body).hexdigest()


def test_offline_message_is_one_clear_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    register_tiny(monkeypatch)
    base = refused_url()
    monkeypatch.setenv(fetch.CHECKPOINT_BASE_ENV, base)
    with pytest.raises(CheckpointError) as info:
        ptsed.create_model("tiny", progress=False)
    msg = str(info.value)
    assert msg.startswith(
        f"checkpoint tiny.as_strong (Tiny_as_strong.pt) is not in the cache and could not be downloaded "
        f"from {base}/Tiny_as_strong.pt (connection refused)"
    )
    assert "--checkpoint PATH (checkpoint_path= in Python)" in msg
    assert msg.endswith(str(checkpoints_dir() / "Tiny_as_strong.pt")) and "\n" not in msg


def test_interrupt_mid_download_leaves_nothing(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _serve_good(server, tmp_path)
    real_stream = dl.stream

    def interrupted(url: str, out, **kw):  # type: ignore[no-untyped-def]
        out.write(b"partial bytes")
        raise KeyboardInterrupt

    monkeypatch.setattr(dl, "stream", interrupted)
    with pytest.raises(KeyboardInterrupt):
        layout.fetch_checkpoint(get_pretrained_spec("tiny"), progress=False)
    assert _leftovers() == []
    monkeypatch.setattr(dl, "stream", real_stream)
    assert layout.fetch_checkpoint(get_pretrained_spec("tiny"), progress=False).is_file()


def test_download_file_streams_and_reports_size(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    body = os.urandom(3 * dl.CHUNK_BYTES + 17)
    url = server.serve("blob.bin", body)
    got = dl.download_file(url, tmp_path / "sub" / "blob.bin", progress=False)
    assert got.size == len(body) and got.sha256 == hashlib.sha256(body).hexdigest()
    assert got.path.read_bytes() == body and capsys.readouterr().err == ""
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["blob.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert got.path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_download_many_goes_on_past_failures(server: Server, tmp_path: Path) -> None:
    _serve_good(server, tmp_path, "as_strong")
    _serve_good(server, tmp_path, "ssl")  # as_weak is missing: 404
    results = layout.fetch_many(resolve_names(["tiny.as_weak", "tiny", "tiny.ssl"]), progress=False)
    assert [r.name for r in results] == ["tiny.as_weak", "tiny.as_strong", "tiny.ssl"]
    assert [r.ok for r in results] == [False, True, True]
    assert "HTTP 404" in (results[0].error or "")
    assert results[1].labels is not None and results[1].labels.name == "audioset_strong_train_447.tsv"
    assert results[2].labels is None and results[2].path is not None and results[2].path.is_file()


def test_a_trickling_server_meets_the_overall_deadline(server: Server, monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    import time

    url = server.serve("slow.bin", b"x" * 100, mode="trickle", delay=0.05)  # 5 s in all, a byte every 50 ms
    monkeypatch.setenv(dl.DEADLINE_ENV, "0.6")
    start = time.monotonic()
    with pytest.raises(dl.DownloadError, match=r"did not finish within 0\.6 s .*PTSED_DOWNLOAD_DEADLINE_S"):
        dl.download_file(url, tmp_path / "slow.bin", progress=False)
    assert time.monotonic() - start < 3.0  # each byte came within the per-read timeout: only the deadline stops it
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv(dl.DEADLINE_ENV, "0")  # no limit: the same transfer completes
    fast = server.serve("fast.bin", b"y" * 10, mode="trickle", delay=0.01)
    assert dl.download_file(fast, tmp_path / "fast.bin", progress=False).size == 10
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv(dl.DEADLINE_ENV, bad)
        with pytest.raises(CheckpointError, match="PTSED_DOWNLOAD_DEADLINE_S"):
            dl.download_file(fast, tmp_path / "again.bin", progress=False)


def test_stale_part_files_of_killed_downloads_are_removed(server: Server, tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    folder = checkpoints_dir()
    folder.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = dl._host()
    killed = folder / f".Tiny_as_strong.pt.{int(dead.stdout)}@{host}.0123456789ab.part"  # writer gone (kill -9)
    running = folder / f".Tiny_ssl.pt.{os.getpid()}@{host}.0123456789ac.part"  # a live writer, still writing
    other_host = folder / ".Tiny_ssl.pt.1@elsewhere.0123456789ad.part"  # a shared cache: another machine's
    old = folder / ".Tiny_as_weak.pt.0123456789ae.part"  # the older naming, untouched for two hours
    keep = folder / "notes.part"  # not ours
    for path in (killed, running, other_host, old, keep):
        path.write_bytes(b"partial")
    hours_ago = time.time() - 2 * 3600
    os.utime(old, (hours_ago, hours_ago))
    _serve_good(server, tmp_path)
    layout.fetch_checkpoint(get_pretrained_spec("tiny"), progress=False)
    assert _leftovers() == sorted(
        ["Tiny_as_strong.pt", "Tiny_as_strong.pt.json", running.name, other_host.name, keep.name]
    )
    os.utime(other_host, (hours_ago, hours_ago))  # not written to for longer than STALE_PART_S: a leftover
    assert dl.remove_stale_parts(folder) == [other_host]


class _Payload:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("echo payload ran",))


def test_a_downloaded_code_carrying_pickle_is_named_as_such(server: Server, tmp_path: Path) -> None:
    state = {**tiny_released_state(), "extra": _Payload()}
    server.serve("release/Tiny_as_strong.pt", checkpoint_bytes(state, tmp_path))  # type: ignore[arg-type]
    with pytest.raises(CheckpointError) as info:
        layout.fetch_checkpoint(get_pretrained_spec("tiny"), progress=False)
    msg = str(info.value)
    assert "failed verification and was deleted" in msg and "pickled Python objects that can carry code" in msg
    assert f"{server.url}/release/Tiny_as_strong.pt" in msg and "weights_only` set to `False" not in msg
    assert _leftovers() == []
