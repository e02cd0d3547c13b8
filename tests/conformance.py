"""Helpers that turn ``../shared/conformance`` into synthetic checkpoints in upstream's released layout.

The weights rule is the parity spec's (``../shared/conformance/README.md``): every floating tensor is
drawn from a generator seeded with the CRC32 of its released key, scaled by a rule of its shape.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PTSED_SHARED", REPO.parent / "shared"))
CONFORMANCE = SHARED / "conformance"
LABELS = SHARED / "labels"
SOUNDSCAPES = SHARED / "soundscapes"
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_shared(path: Path = CONFORMANCE) -> Path:
    """Skip (locally) or fail (in CI) when the shared folder is absent."""
    if not path.exists():
        if IN_CI:
            pytest.fail(f"{path} is missing, and conformance tests must run when CI=true")
        pytest.skip(f"{path} is absent: the conformance data lives in ../shared beside the checkout")
    return path


def synthetic_value(key: str, shape: list[int] | tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The deterministic weights rule of the parity spec."""
    leaf = key.rsplit(".", 1)[-1]
    shape = tuple(shape)
    if leaf == "running_var":
        base, scale = 1.0, 0.1
    elif leaf == "running_mean" or leaf.startswith("bias"):
        base, scale = 0.0, 0.1
    elif len(shape) == 1 and leaf == "weight":
        base, scale = 1.0, 0.1
    elif len(shape) >= 2 and shape[0] == 1:
        base, scale = 0.0, 0.5
    elif len(shape) == 4:
        base, scale = 0.0, 1.35 / math.sqrt(math.prod(shape[1:]))
    elif len(shape) >= 2:
        base, scale = 0.0, 1.0 / math.sqrt(math.prod(shape[1:]))
    else:
        base, scale = 0.0, 1.0
    g = torch.Generator(device="cpu")
    g.manual_seed(zlib.crc32(key.encode("utf-8")))
    t = torch.randn(shape, generator=g, dtype=torch.float32)
    return t.mul_(scale).add_(base).to(dtype)


@cache
def manifest(upstream_name: str) -> dict:
    return json.loads((require_shared() / "manifests" / f"{upstream_name}.json").read_text())


_COMPUTED: dict[str, dict[str, torch.Tensor]] = {}


def released_state_dict(
    upstream_name: str, teacher: bool = False, computed: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """A synthetic checkpoint in the released layout (keys as spelled in the released file).

    ``computed`` supplies the values of ``init: "computed"`` entries that are in the released file
    (upstream's own, non-learned buffers, e.g. M2D's nnAudio kernels); otherwise they are zeros, which
    is fine for loading because ptsed recomputes these buffers and ignores the file's copies.
    """
    m = manifest(upstream_name)
    entries = m["teacher_entries"] if teacher else m["entries"]
    by_key = {e["key"]: e for e in entries}
    out: dict[str, torch.Tensor] = {}
    for e in entries:
        if not e["in_released_file"]:
            continue
        dtype = getattr(torch, e["dtype"])
        if e["init"] == "rule":
            out[e["key"]] = synthetic_value(e["key"], e["shape"], dtype)
        elif e["init"] == "alias":
            src = by_key[e["alias_of"]]
            out[e["key"]] = synthetic_value(src["key"], src["shape"], dtype)
        elif not dtype.is_floating_point:
            out[e["key"]] = torch.zeros(e["shape"], dtype=dtype)
        elif computed is not None and e["key"] in computed:
            out[e["key"]] = computed[e["key"]].to(dtype)
        else:  # a buffer ptsed recomputes and ignores on load (e.g. M2D's STFT kernels): any value fits
            out[e["key"]] = torch.zeros(e["shape"], dtype=dtype)
    return out


def write_released_checkpoint(
    path: Path, upstream_name: str, teacher: bool = False, computed: dict[str, torch.Tensor] | None = None
) -> Path:
    torch.save(released_state_dict(upstream_name, teacher, computed), path)
    return path


@cache
def fixture(upstream_name: str) -> dict[str, np.ndarray]:
    with np.load(require_shared() / "fixtures" / f"{upstream_name}.npz") as z:
        return {k: z[k] for k in z.files}


@cache
def tolerances(upstream_name: str) -> dict[str, float]:
    return json.loads((require_shared() / "tolerances.json").read_text())["tolerances"][upstream_name]


def read_wav(name: str = "test_10s.wav") -> torch.Tensor:
    """A conformance WAV as upstream reads it (float32 int16/32768), shape (1, N)."""
    import soundfile as sf

    data, sr = sf.read(require_shared() / name, dtype="int16")
    assert sr == 16000
    return torch.from_numpy(data.astype(np.float32) / 32768.0)[None]
