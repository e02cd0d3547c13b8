"""``ptsed download`` against a local HTTP server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub_testing import Server, checkpoint_bytes, http_server, register_tiny, tiny_released_state
from ptsed.cli.main import main
from ptsed.hub import fetch
from ptsed.hub.cache import cache_dir
from ptsed.models.zoo import PRETRAINED

pytestmark = pytest.mark.network


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Server]:
    with http_server() as srv:
        register_tiny(monkeypatch)
        monkeypatch.setenv(fetch.CHECKPOINT_BASE_ENV, srv.url)
        for tag in ("as_strong", "ssl"):  # tiny.as_weak is not served
            srv.serve(f"Tiny_{tag}.pt", checkpoint_bytes(tiny_released_state(tag), tmp_path))
        yield srv


def test_download_names_prints_paths(server: Server, capsys: pytest.CaptureFixture) -> None:
    assert main(["download", "tiny", "tiny.ssl", "-q"]) == 0
    out = capsys.readouterr().out.splitlines()
    strong, ssl = fetch.checkpoint_path(PRETRAINED["tiny.as_strong"]), fetch.checkpoint_path(PRETRAINED["tiny.ssl"])
    assert out[0] == f"cache: {cache_dir()}"
    assert out[1].startswith(f"tiny.as_strong: {strong} (labels: ") and "audioset_strong_train_447.tsv" in out[1]
    assert out[2] == f"tiny.ssl: {ssl}"
    assert strong.is_file() and ssl.is_file()


def test_download_reports_failures_at_the_end(server: Server, capsys: pytest.CaptureFixture) -> None:
    assert main(["download", "tiny.as_weak", "tiny", "-q"]) == 1
    captured = capsys.readouterr()
    assert "tiny.as_strong: " in captured.out  # went on past the failure
    err = captured.err.splitlines()
    assert err[0].startswith("tiny.as_weak: FAILED: checkpoint tiny.as_weak (Tiny_as_weak.pt) is not in the cache")
    assert "HTTP 404" in err[0] and err[-1] == "1 of 2 checkpoints failed"


def test_download_all_goes_on(server: Server, capsys: pytest.CaptureFixture) -> None:
    implemented = list(PRETRAINED)
    assert main(["download", "all", "-q"]) == 1  # tiny.as_weak and every real model are 404 here
    captured = capsys.readouterr()
    assert "tiny.as_strong: " in captured.out and "tiny.ssl: " in captured.out
    failed = [line.split(":")[0] for line in captured.err.splitlines() if ": FAILED: " in line]
    assert set(failed) == set(implemented) - {"tiny.as_strong", "tiny.ssl"}
    assert captured.err.splitlines()[-1] == f"{len(failed)} of {len(implemented)} checkpoints failed"


def test_verify_repairs_a_corrupted_cache(server: Server, capsys: pytest.CaptureFixture) -> None:
    assert main(["download", "tiny", "-q"]) == 0
    path = fetch.checkpoint_path(PRETRAINED["tiny.as_strong"])
    good = path.read_bytes()
    st = path.stat()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0x55
    path.write_bytes(bytes(bad))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # size and mtime as recorded
    assert main(["download", "tiny", "-q"]) == 0 and path.read_bytes() == bytes(bad)  # the cheap check trusts it
    capsys.readouterr()
    assert main(["download", "--verify", "-q"]) == 0
    captured = capsys.readouterr()
    assert "changed since it was recorded" in captured.err and "downloading it again" in captured.err
    assert path.read_bytes() == good
    assert server.requests.count("/Tiny_as_strong.pt") == 2


def test_verify_with_empty_cache(capsys: pytest.CaptureFixture) -> None:
    assert main(["download", "--verify"]) == 0
    assert "no checkpoints in the cache" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"), [(["download", "nosuchmodel"], "unknown model"), (["download"], "name at least one")]
)
def test_bad_arguments(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
