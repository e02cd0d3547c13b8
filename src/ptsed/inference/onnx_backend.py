"""ONNX Runtime as a second inference backend (``ptsed detect/embed --backend onnx``, ``Predictor(...,
backend="onnx")``).

The windows, batching and stitching stay the predictor's; only the model call changes. :class:`OnnxModel`
is a drop-in for the torch forward pass that the windowing code makes: ``runner(waveform)`` takes a batch of
windows (B, N) (float32, at the model's sample rate, N = one window) and returns the strong logits (B, K, T)
as a torch tensor, as ``model(waveform).strong_logits`` does; ``runner.embed(waveform, layer)`` returns frame
embeddings (B, T, D) as ``model.embed``.

Graphs are exported on first use (:mod:`ptsed.models.onnx_export`) into ``$PTSED_HOME/onnx/`` and reused after that.
A file's name is a hash of the model's weights (every tensor's bytes, so a zoo name, a released file and a
fine-tuned checkpoint with the same weights share it), of its architecture settings and labels, and of the
export settings (window length, outputs, embeddings layer, opset, ptsed and torch versions). ``int8=True``
uses ONNX Runtime's dynamic quantisation (``MatMul`` / ``Gemm`` weights int8, activations quantised per batch)
of that file, cached beside it.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptsed.core.errors import ConfigError
from ptsed.models.sed_model import SEDModel

BACKENDS = ("torch", "onnx")
"""Inference backends; ``torch`` is the default."""


def onnx_cache_dir() -> Path:
    """``$PTSED_HOME/onnx`` (not created)."""
    from ptsed.hub.cache import cache_dir

    return cache_dir() / "onnx"


def weights_digest(model: SEDModel) -> str:
    """sha256 over the model's tensors (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def cache_key(model: SEDModel, *, window_s: float, outputs: tuple[str, ...], layer: int | None) -> str:
    """The cache file stem of an export of ``model`` with these settings (see the module docstring)."""
    from ptsed._version import __version__
    from ptsed.models.onnx_export import OPSET

    settings = {
        "weights": weights_digest(model),
        "arch": model.arch,
        "builder_kwargs": {k: repr(v) for k, v in sorted(model.builder_kwargs.items())},
        "head": model.head_config.to_dict(),
        "backbone_layer": model.backbone_layer,
        "labels": model.labels if model.head.has_heads else [],
        "window_s": float(window_s),
        "outputs": list(outputs),
        "layer": layer,
        "opset": OPSET,
        "ptsed": __version__,
        "torch": torch.__version__,
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]
    return f"{model.arch}-{digest}"


def cached_export(
    model: SEDModel, *, window_s: float, outputs: tuple[str, ...], layer: int | None = None, int8: bool = False
) -> Path:
    """The cached ONNX file of ``model`` for these settings, exported (and quantised) when it is missing."""
    from ptsed.models.onnx_export import export_onnx, quantize_file

    folder = onnx_cache_dir()
    stem = cache_key(model, window_s=window_s, outputs=outputs, layer=layer)
    path = folder / f"{stem}.onnx"
    if not path.is_file():
        print(f"ptsed: exporting {model.name or model.arch} for ONNX Runtime (first use; cached in {folder})",
              file=sys.stderr)  # fmt: skip
        export_onnx(model, path, window_s=window_s, outputs=outputs, layer=layer)
    if not int8:
        return path
    quantized = folder / f"{stem}.int8.onnx"
    if not quantized.is_file():
        quantize_file(path, quantized)
    return quantized


def providers_for(device: torch.device) -> list[str]:
    """ONNX Runtime execution providers for a torch device (CUDA when asked for and available, else CPU)."""
    import onnxruntime as ort

    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ConfigError(f"the onnx backend runs on the CPU (or CUDA with onnxruntime-gpu), not on {device.type!r}")


class OnnxModel:
    """ONNX Runtime in place of a torch model's forward pass, for one model and one window length.

    Args:
        model: the torch model (exported on first use; its weights are not used for inference).
        window_s: the window length the graphs take (the predictor's).
        int8: run the dynamically quantised graph.
        device: ``cpu`` (or ``cuda`` with onnxruntime-gpu).
        threads: ONNX Runtime's intra-op threads (default: torch's thread count).

    Calls:
        ``runner(waveform)``: (B, N) windows -> strong logits (B, K, T) (probabilities for attention heads,
        as the torch model); ``runner.embed(waveform, layer)``: (B, N) -> embeddings (B, T, D).
    """

    def __init__(
        self,
        model: SEDModel,
        *,
        window_s: float | None = None,
        int8: bool = False,
        device: torch.device | str = "cpu",
        threads: int | None = None,
    ) -> None:
        from ptsed.extras import require

        require("onnx", what="the onnx backend")
        self.model = model
        self.window_s = float(window_s if window_s is not None else model.window_s)
        self.int8 = bool(int8)
        self.providers = providers_for(torch.device(device))
        self.threads = int(threads or torch.get_num_threads())
        self._sessions: dict[tuple, Any] = {}

    def session(self, outputs: tuple[str, ...], layer: int | None = None) -> Any:
        """The ``InferenceSession`` of the graph with ``outputs`` (exported into the cache on first use)."""
        key = (outputs, layer)
        if key not in self._sessions:
            import onnxruntime as ort

            path = cached_export(self.model, window_s=self.window_s, outputs=outputs, layer=layer, int8=self.int8)
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            self._sessions[key] = ort.InferenceSession(str(path), options, providers=self.providers)
        return self._sessions[key]

    def _run(self, outputs: tuple[str, ...], layer: int | None, waveform: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(waveform.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self.session(outputs, layer).run(None, {"waveform": x})[0])

    def __call__(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, N) windows -> strong logits (B, K, T)."""
        if not self.model.head.has_heads:
            raise ConfigError(f"model {self.model.name!r} has no classification head; use embeddings")
        return self._run(("strong_logits",), None, waveform)

    def embed(self, waveform: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """(B, N) windows -> frame embeddings (B, T, D) of ``layer`` (``None``: the head input)."""
        return self._run(("embeddings",), layer, waveform)


def window_outputs(runner: OnnxModel, x: torch.Tensor, task: str, layer: int | None) -> torch.Tensor:
    """What the predictor collects per model for a batch of windows: (B, T, K) probabilities for ``detect``
    (sigmoid of the logits; attention heads give probabilities already), (B, T, D) embeddings for ``embed``."""
    if task == "embed":
        return runner.embed(x, layer)
    y = runner(x)
    if runner.model.head_config.head_type != "attention":
        y = torch.sigmoid(y)
    return y.transpose(1, 2)


def check_backend(backend: str, precision: str) -> None:
    """Raise :class:`ConfigError` for an unknown backend, or a precision the onnx backend does not run."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "onnx":
        if precision != "fp32":
            raise ConfigError(f"the onnx backend computes in fp32 (or --int8), not {precision}")
        from ptsed.extras import require

        require("onnx", what="--backend onnx")


__all__ = [
    "BACKENDS",
    "OnnxModel",
    "cache_key",
    "cached_export",
    "check_backend",
    "onnx_cache_dir",
    "weights_digest",
    "window_outputs",
]
