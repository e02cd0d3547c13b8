"""Size and cost of the zoo's models, measured by running the code (never typed in).

- Parameters are counted on a model built on PyTorch's ``meta`` device (shapes only: no memory, no
  initialisation).
- MACs are counted with :class:`torch.utils.flop_counter.FlopCounterMode` (matrix products, attention and
  convolutions; MACs = FLOPs / 2) for one forward pass of the whole model (front-end, backbone, head)
  on a mono clip of ``input_s`` seconds, batch 1. Element-wise operations, normalisations and FFTs are
  not counted.

The front-end and backbone ("body") and the head are measured apart: the body once per architecture,
the head (cheap, always on ``meta``) per head configuration. The body runs on ``meta`` when all its
operations allow it; otherwise it is built and run once on CPU, and its figures are cached in
``<cache>/profile.json`` (keyed by architecture, builder arguments, input length, ptsed and torch
versions and the builder's source file), so that costs time only once.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ptsed.core.frames import FRAME_HOP_S
from ptsed.heads.sed_head import HeadConfig, SEDHead
from ptsed.models.meta import parameters_on_meta
from ptsed.models.sed_model import SEDModel


@dataclass(frozen=True)
class Profile:
    """Measured size and cost of one model.

    Attributes:
        name: model name (``arch.tag``).
        params: number of parameters (buffers excluded).
        macs: multiply-accumulates of one forward pass on ``input_s`` seconds of audio (batch 1).
        input_s: length of the input in seconds.
        device: where the body's MACs were counted: ``"meta"``, ``"cpu"``, or ``"cache"`` (an earlier
            CPU count).
    """

    name: str
    params: int
    macs: int
    input_s: float
    device: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_parts_skeleton(arch: Any, **overrides: Any) -> tuple[Any, Any]:
    """(front-end, backbone) of ``arch`` (an ``ArchSpec``) for their shapes only, built as cheaply as the
    builder allows: on the ``meta`` device; else with parameters moved to ``meta`` as they are made;
    else plainly on CPU. The weights are meaningless: use the result for layouts and counts.
    """
    try:
        with torch.device("meta"):
            return arch.build_parts(**overrides)
    except Exception:  # a builder step that needs real data
        pass
    try:
        with parameters_on_meta():
            return arch.build_parts(**overrides)
    except Exception:
        return arch.build_parts(**overrides)


def build_skeleton(arch: Any, head: HeadConfig, *, name: str = "", **overrides: Any) -> SEDModel:
    """An :class:`SEDModel` of ``arch`` (an ``ArchSpec``) with ``head``, for its shapes only
    (see :func:`build_parts_skeleton`)."""
    frontend, backbone = build_parts_skeleton(arch, **overrides)
    with torch.device("meta"):
        model = SEDModel(frontend, backbone, head, name=name or arch.name, arch=arch.name, builder_kwargs=overrides)
    return model.eval()


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters of ``model`` (shared tensors counted once)."""
    return sum({id(p): p.numel() for p in model.parameters()}.values())


def count_macs(fn: Any, *args: Any) -> int:
    """Multiply-accumulates of ``fn(*args)`` as counted by ``FlopCounterMode`` (FLOPs / 2), without autograd."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), _math_attention(), counter:
        fn(*args)
    return int(counter.get_total_flops()) // 2


def _math_attention() -> Any:
    """Route ``scaled_dot_product_attention`` through its math form, whose matmuls are counted on every
    device (fused CPU kernels are not counted by ``FlopCounterMode``)."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.MATH])


def _body_pass(frontend: Any, backbone: Any, input_s: float, device: str) -> dict[str, int]:
    """Params and MACs of front-end + backbone on ``input_s`` seconds, and the output sequence shape."""
    frontend.eval()
    backbone.eval()  # no dropout / layer drop: a random number of blocks would run
    wave = torch.zeros(1, round(input_s * frontend.sample_rate), device=device)
    out: list[torch.Tensor] = []
    macs = count_macs(lambda w: out.append(backbone(frontend(w))), wave)
    return {
        "params": count_parameters(frontend) + count_parameters(backbone),
        "macs": macs,
        "seq_len": int(out[0].shape[1]),
        "embed_dim": int(out[0].shape[2]),
    }


def _cache_key(arch: Any, input_s: float) -> str:
    from ptsed._version import __version__

    stamp = ""
    spec = importlib.util.find_spec(arch.builder.split(":")[0])
    if spec is not None and spec.origin and os.path.exists(spec.origin):
        st = os.stat(spec.origin)
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
    kwargs = json.dumps(arch.builder_kwargs, sort_keys=True, default=str)
    return f"{arch.name}|{arch.builder}|{kwargs}|{input_s:g}s|ptsed {__version__}|torch {torch.__version__}|{stamp}"


def _cache_file() -> Path:
    from ptsed.hub.cache import cache_dir

    return cache_dir() / "profile.json"


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(key: str, value: dict[str, Any]) -> None:
    path = _cache_file()
    data = {**_read_cache(), key: value}
    from ptsed.core.errors import PtsedError
    from ptsed.core.files import atomic_write_text

    with contextlib.suppress(PtsedError):  # a read-only cache only costs a recount next time
        atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))


_MEASURED: dict[str, tuple[dict[str, int], str]] = {}


def profile_body(arch: Any, input_s: float = 10.0) -> tuple[dict[str, int], str]:
    """Figures of front-end + backbone of ``arch`` and where they were measured (meta, cpu, cache).

    Returns ``({"params", "macs", "seq_len", "embed_dim"}, device)``.
    """
    key = _cache_key(arch, input_s)
    if key in _MEASURED:  # once per process (the three stages of an arch share the body)
        return _MEASURED[key]
    try:
        frontend, backbone = build_parts_skeleton(arch)
        _MEASURED[key] = _body_pass(frontend.to("meta"), backbone.to("meta"), input_s, "meta"), "meta"
        return _MEASURED[key]
    except Exception:  # an operation without a meta kernel, or a data-dependent step: count on CPU once
        pass
    cached = _read_cache().get(key)
    if isinstance(cached, dict) and {"params", "macs", "seq_len", "embed_dim"} <= set(cached):
        return {k: int(cached[k]) for k in ("params", "macs", "seq_len", "embed_dim")}, "cache"
    frontend, backbone = arch.build_parts()
    figures = _body_pass(frontend, backbone, input_s, "cpu")
    _write_cache(key, figures)
    return figures, "cpu"


def profile_head(head: HeadConfig, seq_len: int, embed_dim: int, num_frames: int) -> tuple[int, int]:
    """(params, MACs) of the head ``head`` on a backbone sequence (1, seq_len, embed_dim), on ``meta``."""
    with torch.device("meta"):
        module = SEDHead(embed_dim, head).eval()
        if not module.has_heads:
            return count_parameters(module), 0
        seq = torch.zeros(1, seq_len, embed_dim)
        return count_parameters(module), count_macs(module, seq, num_frames)


def profile_model(name: str, input_s: float = 10.0, *, head: HeadConfig | None = None) -> Profile:
    """Parameters and MACs of the zoo model ``name`` (``arch`` or ``arch.tag``) with its released head.

    Args:
        name: zoo name; the head of its checkpoint (447 or 527 classes, none for ``ssl``) is measured
            unless ``head`` is given.
        input_s: clip length in seconds for the MAC count.
        head: a head configuration to measure instead (e.g. the BiGRU teacher form).
    """
    from ptsed.models.zoo import get_pretrained_spec

    spec = get_pretrained_spec(name)
    body, device = profile_body(spec.arch, input_s)
    frames = max(1, round(input_s / FRAME_HOP_S))
    head_params, head_macs = profile_head(head or spec.head, body["seq_len"], body["embed_dim"], frames)
    return Profile(spec.name, body["params"] + head_params, body["macs"] + head_macs, input_s, device)
