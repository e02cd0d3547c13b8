"""One test suite parametrised over every implemented model (random init, CPU), as timm does.

Checks the output contract of :class:`ptsed.SEDModel` and the uniform backbone interface of issue 3:
embed_dim, frame hop, longest input, intermediate layers and depth groups for layer-wise LR decay.
"""

from __future__ import annotations

import pytest
import torch

import ptsed
from ptsed.models.zoo import ARCHS

IMPLEMENTED = [a.name for a in ARCHS.values() if a.implemented]
SR = 16_000


@pytest.fixture(scope="module", params=IMPLEMENTED)
def model(request: pytest.FixtureRequest) -> ptsed.SEDModel:
    torch.manual_seed(0)
    return ptsed.create_model(request.param, pretrained=False)


@pytest.fixture(scope="module")
def waves() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return 0.1 * torch.randn(2, 10 * SR, generator=g)


def test_output_contract_and_batch_invariance(model: ptsed.SEDModel, waves: torch.Tensor) -> None:
    with torch.no_grad():
        out = model(waves)
        single = model(waves[1:])
    assert not model.training, "create_model must return the model in eval mode"
    assert out.strong_logits.shape == (2, 447, 250)
    assert out.weak_logits.shape == (2, 447)
    assert torch.isfinite(out.strong_logits).all() and torch.isfinite(out.weak_logits).all()
    assert len(model.labels) == 447 and model.labels[0] == "Accelerating, revving, vroom"
    scale = out.strong_logits.abs().max().item()
    dev = (out.strong_logits[1:] - single.strong_logits).abs().max().item()
    assert dev <= 1e-4 * max(1.0, scale), f"batch size changed the logits by {dev:.3g} (scale {scale:.3g})"
    assert torch.allclose(out.weak_logits[1:], single.weak_logits, atol=1e-4 * max(1.0, scale))


def test_features_are_per_clip(model: ptsed.SEDModel, waves: torch.Tensor) -> None:
    """A loud clip in the batch must not change a quiet clip's features (e.g. a batch-wide dB floor)."""
    quiet = waves[:1] * 0.01
    loud = waves[1:] * 30.0
    with torch.no_grad():
        alone = model.features(quiet)
        batched = model.features(torch.cat([quiet, loud]))[:1]
    assert torch.allclose(alone, batched, atol=1e-5, rtol=1e-5)


def test_backbone_interface(model: ptsed.SEDModel, waves: torch.Tensor) -> None:
    bb = model.backbone
    with torch.no_grad():
        feats = model.features(waves[:1])
        seq = bb(feats)
        inter = bb.forward_intermediates(feats)
        picked = bb.forward_intermediates(feats, [0, -1])
    assert seq.shape[-1] == bb.embed_dim
    assert bb.num_layers >= 1 and len(inter) == bb.num_layers
    assert torch.allclose(inter[-1], seq, atol=1e-6), "the last intermediate output must equal forward()"
    assert torch.allclose(picked[1], seq, atol=1e-6) and torch.allclose(picked[0], inter[0], atol=1e-6)
    assert all(t.dim() == 3 and t.shape[:2] == seq.shape[:2] for t in inter)
    assert bb.frame_hop_s * seq.shape[1] == pytest.approx(10.0, rel=0.02)
    assert bb.max_input_s >= 10.0
    with pytest.raises(ValueError):
        bb.forward_intermediates(feats, [bb.num_layers])
    names = [n for n, _ in bb.named_parameters()]
    groups = bb.param_groups()
    flat = [n for g in groups for n in g]
    assert sorted(flat) == sorted(names), "param_groups must hold every backbone parameter exactly once"
    assert len(groups) >= 2


def test_embed_layers(model: ptsed.SEDModel, waves: torch.Tensor) -> None:
    with torch.no_grad():
        top = model.embed(waves[:1])
        low = model.embed(waves[:1], layer=0)
    assert top.shape == (1, 250, model.head.num_features)
    assert low.shape[:2] == (1, 250)
    assert torch.isfinite(low).all()


def reduced(arch: str) -> dict:
    """Builder options of a small model of the family (the MobileNets are small already)."""
    return {} if arch.startswith("frame_mn") else {"depth": 1}


def test_teacher_form_and_fresh_heads(model: ptsed.SEDModel) -> None:
    arch = model.arch
    teacher = ptsed.create_model(
        arch, pretrained=False, head="teacher", rnn_dim=32, num_classes=5, labels=list("abcde"), **reduced(arch)
    )
    assert teacher.head_config.is_teacher and teacher.head.num_features == 64
    with torch.no_grad():
        out = teacher(torch.zeros(1, 10 * SR))
    assert out.strong_logits.shape == (1, 5, 250) and teacher.labels == list("abcde")
