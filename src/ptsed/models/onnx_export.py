"""ONNX export of a whole detector: waveform in, frame logits out, front-end inside the graph.

The exported graph (opset :data:`OPSET`) has one input and two or three outputs:

- ``waveform`` (batch, samples) float32, mono, at the model's sample rate; ``samples`` is fixed to one window
  (``window_s * sample_rate``, 160 000 for 10 s at 16 kHz), the batch size is dynamic;
- ``strong_logits`` (batch, classes, frames): frame logits on the 40 ms grid (250 frames per 10 s);
  probabilities for a head with attention pooling (``head_type="attention"``), as in torch;
- ``weak_logits`` (batch, classes_weak): clip logits;
- ``embeddings`` (batch, frames, dim), only when an embeddings layer is asked for.

The model's metadata properties (``onnx.ModelProto.metadata_props``, ``InferenceSession.get_modelmeta()
.custom_metadata_map`` in ONNX Runtime) describe it for a consumer without ptsed: ``labels`` (a JSON list of
class names in output order), ``sample_rate``, ``window_s``, ``frame_hop_s``, ``postprocess`` (JSON, the
per-class thresholds and median filters of a fine-tuned checkpoint; absent otherwise), ``ptsed_version``,
``source``, and ``arch``, ``head`` (student or teacher), ``embeddings_layer`` and ``outputs``.

Exactness: attention is exported as explicit matrix products and a softmax (the fused
``scaled_dot_product_attention`` has no exact ONNX counterpart for an additive mask such as BEATs' gated
relative position bias), and the STFT and FFT of the front-ends go through ONNX's ``STFT`` / ``DFT``.
``tests/test_onnx_parity.py`` checks ONNX Runtime's logits against upstream's reference arrays within the
tolerances of the torch parity tests.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ptsed.core.errors import ConfigError, PtsedError
from ptsed.models.sed_model import SEDModel

OPSET = 18
"""ONNX opset of the exported graphs (STFT since 17)."""

INPUT = "waveform"
OUTPUTS = ("strong_logits", "weak_logits")
EMBEDDINGS = "embeddings"


def parse_layer(value: str | int | None) -> int | None:
    """``--embeddings LAYER``: ``"head"`` (the head input, after the BiGRU of a teacher) -> ``None``, an
    integer (a backbone block, 0-based, negative from the top) -> that integer."""
    if value is None or isinstance(value, int):
        return value
    text = str(value).strip().lower()
    if text in ("head", "none", ""):
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--embeddings takes 'head' or a backbone block number, not {value!r}") from None


class ExportGraph(nn.Module):
    """The module that is exported: waveform (B, N) -> the tensors named in ``outputs``.

    Args:
        model: the detector (eval mode).
        num_frames: frames per window (250 for 10 s).
        outputs: names among ``strong_logits``, ``weak_logits``, ``embeddings``.
        layer: the embeddings layer (``None``: the head input).
    """

    def __init__(self, model: SEDModel, num_frames: int, outputs: Sequence[str], layer: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.num_frames = int(num_frames)
        self.outputs = tuple(outputs)
        self.layer = layer

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.model.features(waveform)
        tensors: dict[str, torch.Tensor] = {}
        if "strong_logits" in self.outputs or "weak_logits" in self.outputs:
            out = self.model.forward_features(feats, self.num_frames)
            assert out.strong_logits is not None and out.weak_logits is not None
            tensors.update(strong_logits=out.strong_logits, weak_logits=out.weak_logits)
        if EMBEDDINGS in self.outputs:
            tensors[EMBEDDINGS] = self.model.embed_features(feats, self.num_frames, self.layer)
        return tuple(tensors[name] for name in self.outputs)


def _math_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """``scaled_dot_product_attention`` (inference, no causal mask) as explicit products and a softmax, which
    export to plain ONNX ``MatMul`` / ``Softmax``: ``softmax(q k^T * scale + mask) v``."""
    if is_causal or enable_gqa:
        raise ConfigError("ONNX export supports non-causal attention without grouped queries only")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = torch.matmul(query * scale, key.transpose(-2, -1))
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    elif attn_mask is not None:
        scores = scores + attn_mask
    return torch.matmul(torch.softmax(scores, dim=-1), value)


@contextlib.contextmanager
def _exportable_ops() -> Iterator[None]:
    """Swap ``F.scaled_dot_product_attention`` for :func:`_math_attention` while tracing (the models call it
    as ``F.scaled_dot_product_attention``, looked up at call time)."""
    fn = torch.nn.functional
    saved = fn.scaled_dot_product_attention
    fn.scaled_dot_product_attention = _math_attention  # type: ignore[assignment]
    try:
        yield
    finally:
        fn.scaled_dot_product_attention = saved  # type: ignore[assignment]


def model_metadata(
    model: SEDModel,
    *,
    window_s: float,
    source: str,
    outputs: Sequence[str],
    layer: int | None,
    postprocess: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The metadata properties of an exported model (all values strings; lists and dicts as JSON)."""
    import ptsed

    meta = {
        "labels": json.dumps(model.labels if model.head.has_heads else []),
        "sample_rate": str(int(model.sample_rate)),
        "window_s": repr(float(window_s)),
        "frame_hop_s": repr(float(model.frame_hop_s)),
        "ptsed_version": ptsed.__version__,
        "source": source,
        "arch": model.arch,
        "head": "teacher" if model.head_config.is_teacher else "student",
        "head_type": str(model.head_config.head_type),
        "outputs": json.dumps(list(outputs)),
    }
    if EMBEDDINGS in outputs:
        meta["embeddings_layer"] = "head" if layer is None else str(layer)
    if postprocess:
        meta["postprocess"] = json.dumps(postprocess, sort_keys=True)
    return meta


def to_onnx(
    model: SEDModel,
    *,
    window_s: float | None = None,
    outputs: Sequence[str] = OUTPUTS,
    layer: int | None = None,
    metadata: dict[str, str] | None = None,
    opset: int = OPSET,
) -> Any:
    """Trace ``model`` into an ``onnx.ModelProto`` (see the module docstring for its inputs and outputs).

    Args:
        model: the detector, traced in eval mode on the CPU in float32 (a copy when it is elsewhere; its
            training mode is restored).
        window_s: window length in seconds (default: the model's, 10 s).
        outputs: output names, in order (``strong_logits``, ``weak_logits``, ``embeddings``).
        layer: the backbone block of ``embeddings`` (``None``: the head input).
        metadata: metadata properties to store.
        opset: ONNX opset (>= 17).
    """
    from ptsed.extras import require

    require("onnx", what="ONNX export")
    unknown = [o for o in outputs if o not in (*OUTPUTS, EMBEDDINGS)]
    if unknown or not outputs:
        raise ConfigError(f"unknown ONNX outputs {unknown}; choose from {', '.join((*OUTPUTS, EMBEDDINGS))}")
    if any(o in OUTPUTS for o in outputs) and not model.head.has_heads:
        raise ConfigError(
            f"model {model.name!r} has no classification heads (an ssl stage): export it with embeddings only"
        )
    if layer is not None:
        try:
            model.backbone.resolve_indices([layer], model.backbone.num_layers)
        except (IndexError, ValueError) as err:
            raise ConfigError(f"embeddings layer {layer}: {err}") from None
    window_s = float(window_s if window_s is not None else model.window_s)
    samples = int(round(window_s * model.sample_rate))
    num_frames = model.frames_for(samples)
    tensors = [*model.parameters(), *model.buffers()]
    if any(t.device.type != "cpu" or (t.is_floating_point() and t.dtype != torch.float32) for t in tensors):
        model = copy.deepcopy(model).float().cpu()  # the caller's model stays where and as it is
    training = model.training
    graph = ExportGraph(model, num_frames, outputs, layer).eval()
    example = torch.zeros(2, samples)
    with _exportable_ops(), torch.no_grad(), warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        try:
            program = _export(graph, example, outputs, opset)
        finally:
            model.train(training)
    proto = program.model_proto
    if metadata:
        import onnx

        onnx.helper.set_model_props(proto, metadata)
    return proto


def _export(graph: ExportGraph, example: torch.Tensor, outputs: Sequence[str], opset: int) -> Any:
    """``torch.onnx.export`` (dynamo) of ``graph`` with a dynamic batch; its ONNXProgram."""
    return torch.onnx.export(
        graph,
        (example,),
        input_names=[INPUT],
        output_names=list(outputs),
        opset_version=opset,
        dynamo=True,
        dynamic_shapes={"waveform": {0: torch.export.Dim("batch", min=1)}},
        external_data=False,
        verbose=False,
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's progress lines and the logger warnings of its registry."""
    import io
    import logging

    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.onnx._internal.exporter._registration")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export_onnx(
    model: SEDModel,
    path: str | Path,
    *,
    source: str = "",
    layer: int | None = None,
    embeddings: bool = False,
    window_s: float | None = None,
    postprocess: dict[str, Any] | None = None,
    outputs: Sequence[str] | None = None,
) -> Path:
    """Export ``model`` to the ONNX file ``path`` (written atomically) and return the path.

    Args:
        model: the detector.
        path: the ``.onnx`` file to write.
        source: what the model was loaded from, stored as the ``source`` property.
        layer: the backbone block of the ``embeddings`` output (``None``: the head input).
        embeddings: add the ``embeddings`` output.
        window_s: window length in seconds (default: the model's, 10 s).
        postprocess: per-class thresholds and median filters to store (default: the checkpoint's).
        outputs: the outputs to write (default: ``strong_logits``, ``weak_logits`` and, with
            ``embeddings``, ``embeddings``).
    """
    from ptsed.core.files import atomic_write

    if outputs is None:
        outputs = [*OUTPUTS, EMBEDDINGS] if embeddings else list(OUTPUTS)
    if postprocess is None:
        from ptsed.postprocess.pipeline import stored_postprocess

        postprocess = stored_postprocess([model])
    window = float(window_s if window_s is not None else model.window_s)
    meta = model_metadata(
        model, window_s=window, source=source or model.name, outputs=outputs, layer=layer, postprocess=postprocess
    )
    proto = to_onnx(model, window_s=window, outputs=outputs, layer=layer, metadata=meta)
    path = Path(path)
    with atomic_write(path) as tmp:
        tmp.write_bytes(proto.SerializeToString())
    return path


def quantize_file(src: str | Path, dst: str | Path) -> Path:
    """ONNX Runtime's dynamic int8 quantisation of ``src`` (weights of ``MatMul`` / ``Gemm`` int8, activations
    quantised per batch), written atomically to ``dst``; the metadata properties are kept."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from ptsed.core.files import atomic_write

    dst = Path(dst)
    meta = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    with atomic_write(dst) as tmp:
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
        proto = onnx.load(str(tmp))
        onnx.helper.set_model_props(proto, {**meta, "int8": "dynamic"})
        onnx.save(proto, str(tmp))
    return dst


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata properties of an ONNX file, as stored (strings)."""
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - ORT raises its own exception types
        raise PtsedError(f"{path}: not a readable ONNX model ({str(err).splitlines()[0]})") from None
    return dict(sess.get_modelmeta().custom_metadata_map)


__all__ = [
    "EMBEDDINGS",
    "INPUT",
    "OPSET",
    "OUTPUTS",
    "ExportGraph",
    "export_onnx",
    "model_metadata",
    "parse_layer",
    "quantize_file",
    "read_metadata",
    "to_onnx",
]
