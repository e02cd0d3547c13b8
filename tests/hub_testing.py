"""Test helpers for the hub: a real HTTP server on localhost and a tiny architecture for fast checkpoints.

The server (``http.server`` in a thread, 127.0.0.1, ephemeral port) serves what a test puts in
``routes`` and records every request path; a route may send a file whole, cut it short (fewer bytes
than its ``Content-Length``, then a clean close), break the connection mid-way (a reset), or trickle it
(one byte every ``delay`` seconds, each within any per-read timeout).
"""

from __future__ import annotations

import io
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from torch import nn

from ptsed.backbones.base import Backbone
from ptsed.frontends.base import Frontend
from ptsed.heads.sed_head import HeadConfig
from ptsed.hub.checkpoint import ptsed_to_released
from ptsed.models import zoo
from ptsed.models.sed_model import SEDModel


@dataclass
class Route:
    """What the server answers for one path: ``mode`` is ``"ok"``, ``"truncate"``, ``"break"`` or
    ``"trickle"``; ``cut`` is the number of body bytes sent before cutting short / breaking; ``delay`` the
    seconds between the bytes of a trickle."""

    body: bytes
    mode: str = "ok"
    cut: int = 0
    delay: float = 0.0


@dataclass
class Server:
    url: str
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def serve(self, path: str, body: bytes, mode: str = "ok", cut: int = 0, delay: float = 0.0) -> str:
        """Serve ``body`` at ``/path``; returns its URL."""
        self.routes["/" + path.lstrip("/")] = Route(body, mode, cut, delay)
        return f"{self.url}/{path.lstrip('/')}"


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            server.requests.append(self.path)
            route = server.routes.get(self.path)
            if route is None:
                self.send_error(404, "Not Found")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            if route.mode == "ok":
                self.wfile.write(route.body)
                return
            if route.mode == "trickle":
                try:
                    for i in range(len(route.body)):
                        self.wfile.write(route.body[i : i + 1])
                        self.wfile.flush()
                        time.sleep(route.delay)
                except OSError:  # the client hung up
                    self.close_connection = True
                return
            self.wfile.write(route.body[: route.cut])
            self.wfile.flush()
            self.close_connection = True
            if route.mode == "break":  # reset the connection: linger 0, then close the socket for real (RST)
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.rfile.close()
                self.wfile.close()
                self.connection.close()
                self.wfile = io.BytesIO()  # http.server flushes it after do_GET

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextmanager
def http_server() -> Iterator[Server]:
    """A running server on 127.0.0.1 with an ephemeral port; stopped on exit."""
    state = Server(url="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def refused_url() -> str:
    """An address on localhost where nothing listens (the connection is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- a tiny architecture --------------------------------------------------------------------------------
class TinyFrontend(Frontend):
    """Framed waveform (B, N) -> (B, 1, 16, N // 160) with a computed (optional-in-file) window buffer."""

    sample_rate = 16_000
    hop_s = 0.01
    n_bins = 16

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.full((160,), 0.5))
        self.proj = nn.Linear(160, self.n_bins, bias=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        frames = waveform[:, : waveform.shape[1] // 160 * 160].reshape(waveform.shape[0], -1, 160)
        return self.proj(frames * self.window).transpose(1, 2).unsqueeze(1)

    def num_frames(self, num_samples: int) -> int:
        return num_samples // 160


class TinyBackbone(Backbone):
    embed_dim = 8
    num_layers = 1

    def __init__(self, embed_dim: int = 8) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.proj = nn.Linear(16, embed_dim)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(features[:, 0].transpose(1, 2)))

    def forward_intermediates(self, features, indices=None):  # type: ignore[no-untyped-def]
        return [self.forward(features)]

    def param_groups(self) -> list[list[str]]:
        return [[n for n, _ in self.named_parameters()]]


def build_tiny(**kwargs: object) -> tuple[TinyFrontend, TinyBackbone]:
    return TinyFrontend(), TinyBackbone(**kwargs)  # type: ignore[arg-type]


TINY = zoo.ArchSpec(
    name="tiny",
    upstream_name="Tiny",
    title="tiny test model",
    builder="hub_testing:build_tiny",
    key_prefixes=(("model.mel.", "frontend."), ("model.tiny.", "backbone.")),
    markers=("model.tiny.",),
    reference="test",
    backbone_license="MIT",
)
TINY_HEADS = {"ssl": HeadConfig(n_strong=0), "as_weak": HeadConfig(n_strong=527), "as_strong": HeadConfig(n_strong=447)}
TINY_VOCAB = {"ssl": None, "as_weak": zoo.WEAK_VOCAB, "as_strong": zoo.STRONG_VOCAB}


def register_tiny(monkeypatch: pytest.MonkeyPatch, base_url: str = "https://example.invalid") -> None:
    """Put ``tiny.{ssl,as_weak,as_strong}`` into the zoo for one test."""
    monkeypatch.setitem(zoo.ARCHS, "tiny", TINY)
    for tag in TINY.tags:
        filename = f"Tiny_{tag}.pt"
        monkeypatch.setitem(
            zoo.PRETRAINED,
            f"tiny.{tag}",
            zoo.PretrainedSpec(
                name=f"tiny.{tag}",
                arch=TINY,
                tag=tag,
                stage=tag,
                url=f"{base_url}/{filename}",
                filename=filename,
                head=TINY_HEADS[tag],
                vocabulary=TINY_VOCAB[tag],
            ),
        )


def tiny_released_state(tag: str = "as_strong", seed: int = 0, teacher: bool = False) -> dict[str, torch.Tensor]:
    """A state dict of ``tiny.<tag>`` in the released layout, without the computed window buffer."""
    torch.manual_seed(seed)
    head = TINY_HEADS[tag]
    if teacher:
        head = HeadConfig(n_strong=head.n_strong, rnn_dim=6, rnn_layers=1)  # heads on 12 features, not 8
    frontend, backbone = build_tiny()
    state = SEDModel(frontend, backbone, head).state_dict()
    state = {k: v for k, v in state.items() if k != "frontend.window"}
    return ptsed_to_released(TINY, state)


def checkpoint_bytes(state: dict[str, torch.Tensor], tmp: Path) -> bytes:
    """The bytes of ``torch.save(state)``."""
    path = tmp / "state.pt"
    torch.save(state, path)
    data = path.read_bytes()
    path.unlink()
    return data
