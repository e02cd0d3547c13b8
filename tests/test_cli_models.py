"""``ptsed models`` and the measurement code behind it (``ptsed.models.profile``)."""

from __future__ import annotations

import json

import pytest
import torch

import ptsed
from hub_testing import TINY, TinyBackbone, TinyFrontend, checkpoint_bytes, register_tiny, tiny_released_state
from ptsed.cli.main import main
from ptsed.hub import fetch
from ptsed.hub.cache import cache_dir
from ptsed.models import profile
from ptsed.models.zoo import ARCHS, PRETRAINED


def _tiny_macs(n_samples: int, n_classes: int) -> int:
    """MACs of the tiny model worked out by hand: frame projection, backbone linear, strong and weak heads."""
    frames = n_samples // 160
    front = frames * 160 * 16
    body = frames * 16 * 8
    heads = 250 * 8 * n_classes + 8 * n_classes if n_classes else 0
    return front + body + heads


class DataDependentBackbone(TinyBackbone):
    """A backbone whose forward reads a value (``.item()``), which the meta device cannot do."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        scale = 1.0 + 0.0 * float(features.abs().max().item())
        return super().forward(features) * scale


class LayerDropBackbone(TinyBackbone):
    """A backbone that runs an extra block at random in training mode (like layer drop)."""

    def __init__(self) -> None:
        super().__init__()
        self.extra = torch.nn.Linear(8, 8)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = super().forward(features)
        return self.extra(x) if self.training and torch.rand(()).item() < 2.0 else x


def build_layer_drop(**kwargs: object) -> tuple[TinyFrontend, LayerDropBackbone]:
    return TinyFrontend(), LayerDropBackbone()


def build_data_dependent(**kwargs: object) -> tuple[TinyFrontend, DataDependentBackbone]:
    return TinyFrontend(), DataDependentBackbone()


def _register_variant(monkeypatch: pytest.MonkeyPatch, name: str, builder: str) -> None:
    """``name.as_strong``: the tiny arch with another builder (``tiny`` is registered too)."""
    from dataclasses import replace

    register_tiny(monkeypatch)
    arch = replace(TINY, name=name, builder=builder)
    monkeypatch.setitem(ARCHS, name, arch)
    strong = replace(PRETRAINED["tiny.as_strong"], name=f"{name}.as_strong", arch=arch)
    monkeypatch.setitem(PRETRAINED, f"{name}.as_strong", strong)


def test_profile_counts_params_and_macs(monkeypatch: pytest.MonkeyPatch) -> None:
    register_tiny(monkeypatch)
    for tag, n in (("as_strong", 447), ("as_weak", 527), ("ssl", 0)):
        p = profile.profile_model(f"tiny.{tag}")
        built = ptsed.create_model(f"tiny.{tag}", pretrained=False)
        assert p.params == sum(t.numel() for t in built.parameters())
        assert p.macs == _tiny_macs(160_000, n) and p.device == "meta" and p.input_s == 10.0
    assert profile.profile_model("tiny", input_s=20.0).macs == _tiny_macs(320_000, 447) - 250 * 8 * 447 + 500 * 8 * 447


def test_profile_counts_in_eval_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    _register_variant(monkeypatch, "tiny_ld", "test_cli_models:build_layer_drop")
    p = profile.profile_model("tiny_ld")
    assert p.macs == _tiny_macs(160_000, 447)  # the training-only block is not counted
    assert p.params == sum(t.numel() for t in ptsed.create_model("tiny_ld", pretrained=False).parameters())


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_attention_is_counted_on_every_device(device: str) -> None:
    x = torch.ones(1, 1, 50, 16, device=device)  # (B, heads, S, D)
    macs = profile.count_macs(torch.nn.functional.scaled_dot_product_attention, x, x, x)
    assert macs == 2 * 50 * 50 * 16  # q k^T and attn v


def test_profile_falls_back_to_cpu_once_and_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    _register_variant(monkeypatch, "tiny_dd", "test_cli_models:build_data_dependent")
    first = profile.profile_model("tiny_dd")
    assert first.device == "cpu" and first.macs == _tiny_macs(160_000, 447)
    assert (cache_dir() / "profile.json").is_file()
    second = profile.profile_model("tiny_dd")
    assert second.device == "cache" and (second.params, second.macs) == (first.params, first.macs)


def test_models_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path) -> None:
    _register_variant(monkeypatch, "ghost", "ptsed.backbones.no_such_module:build")  # cannot be built
    # tiny.ssl is in the cache
    spec = PRETRAINED["tiny.ssl"]
    fetch.checkpoint_path(spec).parent.mkdir(parents=True)
    fetch.checkpoint_path(spec).write_bytes(checkpoint_bytes(tiny_released_state("ssl"), tmp_path))
    monkeypatch.setattr(profile, "profile_model", _only_tiny(profile.profile_model))

    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {*PRETRAINED, "demo"}  # the shipped demo is listed too
    for name, spec in PRETRAINED.items():
        assert rows[name]["license"] == spec.license
    assert rows["tiny.as_strong"]["macs_per_10s"] == _tiny_macs(160_000, 447)
    assert rows["tiny.ssl"]["cached"] and not rows["tiny.as_strong"]["cached"]
    assert rows["ghost.as_strong"]["params"] is None and "profile_error" in rows["ghost.as_strong"]


def _only_tiny(real):  # type: ignore[no-untyped-def]
    """profile_model for the tiny archs; a clear failure for the others (keeps the CLI test fast)."""

    def fake(name: str, input_s: float = 10.0, **kw):  # type: ignore[no-untyped-def]
        if not name.startswith("tiny"):
            raise RuntimeError("not measured in this test")
        return real(name, input_s, **kw)

    return fake


def test_models_table(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    _register_variant(monkeypatch, "ghost", "ptsed.backbones.no_such_module:build")  # cannot be built
    monkeypatch.setattr(profile, "profile_model", _only_tiny(profile.profile_model))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    header, *lines = out.splitlines()
    assert header.split() == ["name", "params", "MACs/10s", "stage", "cached", "licence"]
    by_name = {line.split()[0]: line for line in lines if line and line.split()[0] in PRETRAINED}
    assert set(by_name) == set(PRETRAINED)
    assert by_name["ghost.as_strong"].split()[1:3] == ["-", "-"]
    p = profile.profile_model("tiny")
    assert (
        f"{p.macs / 1e6:.2f} M" in by_name["tiny.as_strong"] and f"{p.params / 1e3:.2f} k" in by_name["tiny.as_strong"]
    )


def test_models_no_profile(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("profiled despite --no-profile")

    monkeypatch.setattr(profile, "profile_model", boom)
    assert main(["models", "--no-profile", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(PRETRAINED) + 1 and all(r["params"] is None for r in rows)  # + demo
