"""Released-file layouts of every stage (ssl, as_weak, as_strong) of every implemented architecture.

Synthetic files are built from ``../shared/conformance/manifests/<Model>.json`` (the student layout of
the released ``*_strong_1.pt``): the weak layout has the same backbone keys and 527-class heads, the ssl
layout has no heads. To keep the files tiny every tensor is one value broadcast to its shape (a
stride-0 tensor, saved with a single element), which is enough to check layouts and that weights land
in the right place.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
import torch

import ptsed
from conformance import LABELS, manifest, require_shared
from hub_testing import register_tiny, tiny_released_state
from ptsed.core.errors import CheckpointError
from ptsed.hub import checkpoint as ckpt
from ptsed.hub.labels import read_vocab_tsv
from ptsed.models.layout import check_layout, verify_file
from ptsed.models.zoo import ARCHS, get_pretrained_spec

IMPLEMENTED = [a.name for a in ARCHS.values() if a.implemented]
HEADS = ("strong_head.", "weak_head.")
N_CLASSES = {"as_strong": 447, "as_weak": 527, "ssl": 0}


def _value(key: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A per-key constant broadcast to ``shape`` (one stored element)."""
    v = (zlib.crc32(key.encode()) % 1000) / 1000.0 - 0.5 if dtype.is_floating_point else 0
    return torch.full((), v, dtype=dtype).expand(shape)


def _student_entries(arch: str, teacher: bool = False) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    if arch == "tiny":
        return [(k, tuple(v.shape), v.dtype) for k, v in tiny_released_state(teacher=teacher).items()]
    m = manifest(ARCHS[arch].upstream_name)
    entries = m["teacher_entries"] if teacher else m["entries"]
    return [(e["key"], tuple(e["shape"]), getattr(torch, e["dtype"])) for e in entries if e["in_released_file"]]


def released_layout(arch: str, tag: str, device: str = "cpu", teacher: bool = False) -> dict[str, torch.Tensor]:
    """Synthetic released state dict of ``arch.tag``: 447-class heads (strong), 527 (weak), none (ssl)."""
    out = {}
    for key, shape, dtype in _student_entries(arch, teacher):
        if key.startswith(HEADS):
            if tag == "ssl":
                continue
            shape = (N_CLASSES[tag], *shape[1:])
        if device == "meta":
            out[key] = torch.empty(shape, dtype=dtype, device="meta")
        else:
            out[key] = _value(key, shape, dtype)
    return out


@pytest.fixture(params=[*IMPLEMENTED, "tiny"])
def arch(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every implemented architecture, plus a tiny registered one (so the test runs before any lands)."""
    if request.param == "tiny":
        register_tiny(monkeypatch)
    else:
        require_shared()
    return request.param


def _names(file: str) -> list[str]:
    return read_vocab_tsv(require_shared(LABELS) / file)


def _ptsed_prefix(arch: str, key: str) -> str | None:
    """The ptsed prefix a released key maps to (``None`` for heads and dropped keys)."""
    spec = ARCHS[arch]
    if key.startswith(HEADS) or (spec.ignore_released and key.startswith(spec.ignore_released)):
        return None
    return next((new for old, new in spec.key_prefixes if key.startswith(old)), None)


@pytest.fixture
def no_init(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip random initialisation while building models whose weights all come from a file."""
    for fn in (
        "kaiming_uniform_",
        "kaiming_normal_",
        "uniform_",
        "normal_",
        "trunc_normal_",
        "xavier_uniform_",
        "xavier_normal_",
        "orthogonal_",
        "zeros_",
        "ones_",
        "constant_",
    ):
        monkeypatch.setattr(torch.nn.init, fn, lambda tensor, *args, **kwargs: tensor)


def _assert_backbone_loaded(model: ptsed.SEDModel, arch: str, state: dict[str, torch.Tensor]) -> None:
    """Every backbone tensor of the file is in the model (each file tensor is one constant: sample it)."""
    mapped = ckpt.released_to_ptsed(ARCHS[arch], state)
    own = model.state_dict()
    body = [k for k in mapped if not k.startswith(("head.", "frontend."))]
    assert body, "no backbone keys"
    for k in body:
        flat = own[k].reshape(-1)
        sample = flat[:: max(1, flat.numel() // 512)]
        assert torch.equal(sample, mapped[k].reshape(-1)[: sample.numel()]), f"{k} was not loaded"


def test_three_stages_load_with_their_heads_and_labels(arch: str, tmp_path: Path, no_init: None) -> None:
    strong_names = _names("audioset_strong_train_447.tsv")
    weak_names = _names("audioset_weak_527.tsv")
    for tag in ARCHS[arch].tags:
        spec = get_pretrained_spec(f"{arch}.{tag}")
        state = released_layout(arch, tag)
        path = tmp_path / spec.filename
        torch.save(state, path)
        assert path.stat().st_size < 2_000_000  # the broadcast trick keeps files small
        assert verify_file(spec, path).n_strong == N_CLASSES[tag]

        model = ptsed.create_model(spec.name, checkpoint_path=path)
        assert model.head_config.n_strong == N_CLASSES[tag] and not model.head_config.is_teacher
        _assert_backbone_loaded(model, arch, state)
        if tag == "as_strong":
            assert model.labels == strong_names
        elif tag == "as_weak":
            assert model.labels == weak_names
            assert model.head.weak_head.weight.shape[0] == 527
            # fine-tuning start: fresh 447-class heads on the weak backbone
            fresh = ptsed.create_model(spec.name, checkpoint_path=path, num_classes=447)
            assert fresh.head_config.n_strong == 447 and fresh.labels == strong_names
            assert fresh.head.strong_head.weight.shape[0] == 447
            _assert_backbone_loaded(fresh, arch, state)
        else:
            assert not model.head.has_heads and model.labels == []
            assert not any(k.startswith("head.") for k in model.state_dict())


@pytest.mark.parametrize("tag", ["as_strong", "as_weak", "ssl"])
def test_verifier_accepts_each_stage_and_rejects_broken_files(arch: str, tag: str) -> None:
    if tag not in ARCHS[arch].tags:
        pytest.skip(f"{arch} has no {tag} checkpoint")
    spec = get_pretrained_spec(f"{arch}.{tag}")
    good = released_layout(arch, tag, "meta")
    assert check_layout(spec, good, "good.pt").n_strong == N_CLASSES[tag]

    body = [k for k in good if _ptsed_prefix(arch, k) == "backbone."]
    missing = dict(good)
    del missing[body[-1]]
    with pytest.raises(CheckpointError, match=f"1 keys missing \\(first: '{body[-1]}'\\)"):
        check_layout(spec, missing, "missing.pt")

    key = next(k for k in body if good[k].dim() >= 1 and good[k].dtype.is_floating_point)
    misshaped = {**good, key: torch.empty((good[key].shape[0] + 1, *good[key].shape[1:]), device="meta")}
    with pytest.raises(CheckpointError, match=f"another shape \\(first: '{key}'"):
        check_layout(spec, misshaped, "misshaped.pt")

    other_tag = "ssl" if tag != "ssl" else "as_strong"
    with pytest.raises(CheckpointError, match="expected"):
        check_layout(spec, released_layout(arch, other_tag, "meta"), "other_stage.pt")


def test_teacher_form_is_accepted(arch: str) -> None:
    spec = get_pretrained_spec(arch)
    teacher = released_layout(arch, "as_strong", "meta", teacher=True)
    assert any(k.startswith("seq_model.rnn.") for k in teacher)
    head = check_layout(spec, teacher, "teacher.pt")
    assert head.is_teacher and head.n_strong == 447
    # a BiGRU whose heads do not sit on its 2 * rnn_dim features is not a teacher layout
    student_heads = released_layout(arch, "as_strong", "meta")
    broken = {**teacher, **{k: v for k, v in student_heads.items() if k.startswith(HEADS)}}
    with pytest.raises(CheckpointError, match="another shape"):
        check_layout(spec, broken, "broken_teacher.pt")
