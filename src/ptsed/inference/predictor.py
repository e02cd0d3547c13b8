"""The inference engine: audio of any length -> frame scores (and embeddings), batched.

:class:`Predictor` wraps one model or an ensemble. Files are decoded in blocks on a background thread
(:mod:`ptsed.io.audio`), cut into overlapping windows (:mod:`ptsed.inference.windows`), and windows of
one file and of many files are stacked into batches. Window outputs are stitched back on the 40 ms frame
grid; an ensemble averages the frame probabilities of its models. A Predictor is a score source
(:class:`ptsed.inference.source.ScoreSource`, :meth:`Predictor.score_many`): post-processing
(:class:`ptsed.postprocess.pipeline.PostProcessor`) turns its scores into events afterwards, in
:func:`ptsed.detect`. :meth:`Predictor.predict` and :meth:`Predictor.predict_many` are the convenience path
that applies a :class:`PostProcessor` too (the one given as ``postprocess=``, else
:meth:`PostProcessor.for_model`).

Example::

    from ptsed import Predictor
    predictor = Predictor("beats", batch_size=16, device="auto")
    result = predictor.predict("recording.flac")      # FileResult: scores, filtered, events
    for event in result.events:
        print(event.onset, event.offset, event.label)
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptsed.core.errors import AudioError, CheckpointError, ConfigError
from ptsed.core.frames import frame_times
from ptsed.core.types import Event, FrameScores
from ptsed.inference.types import Embeddings, FileResult
from ptsed.inference.windows import STITCH_MODES, Stitcher, WindowCutter, default_hop_frames
from ptsed.io.audio import DEFAULT_BLOCK_S, ArrayStream, AudioSource, stream_audio
from ptsed.models.sed_model import SEDModel
from ptsed.postprocess.pipeline import PostProcessor
from ptsed.postprocess.pipeline import stored_postprocess as stored_postprocess  # its old home

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
AUTO_BATCH = {"cpu": 4, "cuda": 16, "mps": 16}
"""Windows per forward pass when none is given, per device type."""
CHANNEL_MODES = ("mix", "each")

ModelLike = SEDModel | str | tuple[str, "str | os.PathLike | None"]
AudioLike = str | os.PathLike | AudioSource | np.ndarray | torch.Tensor


# ----------------------------------------------------------------------------------------------------
# models and devices
# ----------------------------------------------------------------------------------------------------
def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or ``None``) -> CUDA if available, else MPS, else CPU; other names as given."""
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for, but CUDA is not available")
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError("device 'mps' was asked for, but MPS is not available")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from err


def resolve_model_name(name: str) -> str:
    """Accept ptsed names (``beats``, ``atst_frame.as_strong``) and upstream's (``BEATs``, ``ATST-F``)."""
    from ptsed.models.zoo import ARCHS

    arch, dot, tag = name.partition(".")
    if arch in ARCHS or arch == "demo":
        return name
    for spec in ARCHS.values():
        if arch.casefold() in (spec.upstream_name.casefold(), spec.name.casefold()):
            return spec.name + dot + tag
    return name


def load_model(spec: ModelLike, device: torch.device | None = None) -> SEDModel:
    """A model from an :class:`SEDModel`, a zoo name, or ``(name, checkpoint_path)``."""
    if isinstance(spec, SEDModel):
        model = spec
    else:
        from ptsed.models.factory import create_model

        name, checkpoint = (spec, None) if isinstance(spec, str) else spec
        name = resolve_model_name(name) if name else name
        model = create_model(name, checkpoint_path=checkpoint)
    check_finite_weights(model, None if isinstance(spec, (SEDModel, str)) else spec[1])
    model.eval()
    if device is not None:
        model.to(device)
    return model


def model_description(model: SEDModel, source: str | os.PathLike | None = None) -> str:
    """``'name'``, with its checkpoint file (``source``, else the one a released model records), for
    messages."""
    source = str(source or model.checkpoint_extra.get("source", "") or "")
    return repr(model.name) + (f" (checkpoint {source!r})" if source and source != model.name else "")


def check_finite_weights(model: SEDModel, source: str | os.PathLike | None = None) -> None:
    """Refuse a model with NaN or infinite parameters (a damaged checkpoint gives NaN scores everywhere).

    Args:
        model: the loaded model.
        source: its checkpoint file, named in the message.

    Raises:
        CheckpointError: naming the model, its checkpoint file and the first bad parameter.
    """
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.is_floating_point() and not bool(torch.isfinite(param).all()):
                bad = int((~torch.isfinite(param)).sum())
                raise CheckpointError(
                    f"model {model_description(model, source)} holds NaN or infinite weights ({bad} of {param.numel()} "
                    f"values of {name!r}): the checkpoint is damaged; fetch or train it again"
                )


def quantize_int8(model: SEDModel) -> SEDModel:
    """A copy of ``model`` whose ``nn.Linear`` layers compute in int8 (dynamic quantisation, CPU only);
    the front-end has none and stays float32."""
    import warnings

    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError as err:  # pragma: no cover - depends on the torch build
        raise ConfigError(f"int8 needs torch.ao.quantization, which this torch does not have ({err})") from err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        quantized = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=False)
    return quantized.eval()


# ----------------------------------------------------------------------------------------------------
# the engine
# ----------------------------------------------------------------------------------------------------
@dataclass
class _Job:
    """One input in flight."""

    index: int
    source: str
    name: str
    streams: int = 1
    stitchers: list[Stitcher] = field(default_factory=list)
    pending: int = 0
    windows: int = 0
    ended: bool = False
    num_samples: int = 0
    sample_rate: int | None = None
    channels: int | None = None
    error: str | None = None
    started: float = field(default_factory=time.perf_counter)


class Predictor:
    """Runs one model, or an ensemble, over audio of any length.

    Args:
        model_or_models: an :class:`SEDModel`, a zoo name (``"beats"``, ``"atst_frame"``, upstream names
            such as ``"BEATs"`` work too), a tuple ``(name, checkpoint_path)``, or a list of these (an
            ensemble: frame probabilities are averaged; embeddings are concatenated).
        batch_size: windows per forward pass; windows of one file and of consecutive files share batches.
            ``None``: :data:`AUTO_BATCH` for the device (16 on GPUs; 4 on CPUs, where larger batches
            measured slower in ``benchmarks/inference.py``: frame_mn10 at 16 took 1.6x the time of 4).
        device: ``"auto"`` (CUDA, else MPS, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``: autocast of the backbone and head (the
            front-end always runs in float32).
        window_s: window length in seconds (default: the model's, 10 s).
        hop_s: hop between windows in seconds, rounded to whole frames (default: half the window,
            :func:`~ptsed.inference.windows.default_hop_frames`).
        overlap_s: alternatively, the overlap of consecutive windows (``hop = window - overlap``).
        stitch: ``"centre"`` (each frame from the window whose centre is nearest) or ``"mean"`` (average
            of all windows holding the frame). See :mod:`ptsed.inference.windows`.
        int8: CPU only, off by default: dynamic int8 quantisation of the backbone's and head's linear
            layers (``torch.ao.quantization.quantize_dynamic``; weights int8, activations quantised per
            batch). Faster on CPUs, not exact: see ``benchmarks/inference.py --int8`` for the speed and the
            largest change of a frame probability. With ``backend="onnx"``: ONNX Runtime's dynamic quantisation.
        backend: ``"torch"`` (default) or ``"onnx"``: the same windows and stitching, each batch of windows run
            by ONNX Runtime on a graph exported on first use into ``$PTSED_HOME/onnx`` (fp32 only; needs the
            "onnx" extra; :mod:`ptsed.inference.onnx_backend`).
        upstream_chunking: reproduce upstream ``inference.py``: non-overlapping windows, last one
            zero-padded, the padded frames kept (timestamps clipped to the audio length) and median-filtered
            with the rest, events in upstream's order (class, then onset).
        channels: ``"mix"`` (mono mix, the channel mean) or ``"each"`` (every channel on its own; results
            carry ``channel``).
        postprocess: used only by the convenience methods :meth:`predict`, :meth:`events` and
            :meth:`predict_many` (the scores never depend on it): a :class:`PostProcessor`, used as given;
            or a dict of its fields, or ``None``: then :meth:`PostProcessor.for_model` fills what the dict
            leaves out (the checkpoint's stored per-class values, then the defaults).
        block_s: seconds of audio decoded at a time.
        prefetch_windows: windows decoded ahead of the model (bounded queue).

    Attributes:
        models: the loaded models (eval mode, on ``device``).
        labels: class names of the outputs.
        sample_rate: input rate of the models (audio is resampled to it).
    """

    def __init__(
        self,
        model_or_models: ModelLike | Sequence[ModelLike],
        *,
        batch_size: int | None = None,
        device: str | torch.device | None = "auto",
        precision: str = "fp32",
        window_s: float | None = None,
        hop_s: float | None = None,
        overlap_s: float | None = None,
        stitch: str = "centre",
        upstream_chunking: bool = False,
        int8: bool = False,
        channels: str = "mix",
        postprocess: PostProcessor | dict | None = None,
        block_s: float = DEFAULT_BLOCK_S,
        prefetch_windows: int | None = None,
        backend: str = "torch",
    ) -> None:
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, not {batch_size}")
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        if stitch not in STITCH_MODES:
            raise ConfigError(f"stitch must be one of {', '.join(STITCH_MODES)}, not {stitch!r}")
        if channels not in CHANNEL_MODES:
            raise ConfigError(f"channels must be one of {', '.join(CHANNEL_MODES)}, not {channels!r}")
        if hop_s is not None and overlap_s is not None:
            raise ConfigError("give hop_s or overlap_s, not both")
        self.device = resolve_device(device)
        self.precision = precision
        self.batch_size = int(batch_size or AUTO_BATCH.get(self.device.type, AUTO_BATCH["cuda"]))
        specs = list(model_or_models) if isinstance(model_or_models, list) else [model_or_models]
        if not specs:
            raise ConfigError("no model given")
        self.models: list[SEDModel] = [load_model(s, self.device) for s in specs]  # type: ignore[arg-type]
        self._checkpoints = [s[1] if isinstance(s, tuple) else None for s in specs]
        self.int8 = bool(int8)
        from ptsed.inference.onnx_backend import check_backend

        check_backend(backend, precision)
        self.backend = backend
        if self.int8 and backend == "torch":
            if self.device.type != "cpu":
                raise ConfigError(f"int8 quantisation runs on the CPU only, not on {self.device.type!r}")
            self.models = [quantize_int8(m) for m in self.models]
        first = self.models[0]
        for m in self.models[1:]:
            if (m.sample_rate, m.frame_hop_s) != (first.sample_rate, first.frame_hop_s):
                raise ConfigError(f"models {first.name!r} and {m.name!r} differ in sample rate or frame hop")
        self.sample_rate = int(first.sample_rate)
        self.frame_hop_s = float(first.frame_hop_s)
        self.frame_samples = int(round(self.frame_hop_s * self.sample_rate))
        if abs(self.frame_samples - self.frame_hop_s * self.sample_rate) > 1e-6:
            raise ConfigError(f"a {self.frame_hop_s} s frame is not a whole number of samples at {self.sample_rate} Hz")
        self.window_s = float(window_s if window_s is not None else first.window_s)
        self.window_frames = max(1, int(round(self.window_s / self.frame_hop_s)))
        self.window_samples = self.window_frames * self.frame_samples
        self.upstream_chunking = bool(upstream_chunking)
        if self.upstream_chunking:
            hop_frames = self.window_frames
        elif overlap_s is not None:
            hop_frames = self.window_frames - int(round(overlap_s / self.frame_hop_s))
        elif hop_s is not None:
            hop_frames = int(round(hop_s / self.frame_hop_s))
        else:
            hop_frames = default_hop_frames(self.window_frames)
        if not 1 <= hop_frames <= self.window_frames:
            raise ConfigError(
                f"the hop between windows must be between {self.frame_hop_s} s and the window ({self.window_s} s)"
            )
        self.hop_frames = hop_frames
        self._onnx: list = []
        if backend == "onnx":  # ONNX Runtime in place of the models' forward passes (exported on first use)
            from ptsed.inference.onnx_backend import OnnxModel

            self._onnx = [OnnxModel(m, window_s=self.window_s, int8=self.int8, device=self.device) for m in self.models]
        self.stitch = stitch
        self.channels = channels
        self.block_s = float(block_s)
        self.prefetch_windows = int(prefetch_windows or max(8, 4 * self.batch_size))
        self._postprocess = postprocess
        self._labels = first.labels if first.head.has_heads else []
        for m in self.models[1:]:
            if m.head.has_heads and m.labels != self._labels:
                raise ConfigError(f"models {first.name!r} and {m.name!r} have different classes; cannot ensemble")

    # -- metadata ---------------------------------------------------------------------------------------
    @property
    def postprocess(self) -> PostProcessor:
        """The :class:`PostProcessor` of the convenience methods (built on first use by
        :meth:`PostProcessor.for_model` from the ``postprocess`` argument)."""
        if not isinstance(self._postprocess, PostProcessor):
            self._postprocess = PostProcessor.for_model(self.models, self._postprocess, upstream=self.upstream_chunking)
        return self._postprocess

    @postprocess.setter
    def postprocess(self, value: PostProcessor | dict | None) -> None:
        self._postprocess = value

    @property
    def postprocess_from_checkpoint(self) -> list[str]:
        """The :class:`PostProcessor` fields of :attr:`postprocess` taken from the checkpoint."""
        return list(self.postprocess.from_checkpoint)

    @property
    def labels(self) -> list[str]:
        return list(self._labels)

    @property
    def hop_s(self) -> float:
        """Hop between window starts in seconds."""
        return self.hop_frames * self.frame_hop_s

    def settings(self) -> dict[str, Any]:
        """What determines the frame scores (plain JSON values; hashed by ``ptsed detect --resume``)."""
        return {
            "models": [
                {"name": m.name, "arch": m.arch, "source": str(m.checkpoint_extra.get("source", ""))}
                for m in self.models
            ],
            "sample_rate": self.sample_rate,
            "window_s": self.window_s,
            "hop_s": self.hop_s,
            "stitch": self.stitch,
            "upstream_chunking": self.upstream_chunking,
            "channels": self.channels,
            "precision": self.precision,
            "int8": self.int8,
            **({"backend": self.backend} if self.backend != "torch" else {}),
        }

    # -- single inputs ----------------------------------------------------------------------------------
    def _score_one(self, audio: AudioLike, sample_rate: int | None, name: str | None = None) -> FileResult:
        result = next(self._run([self._item(audio, sample_rate, name)], task="detect"))
        if result.error is not None:
            raise AudioError(result.error)
        return result

    def predict(self, audio: AudioLike, sample_rate: int | None = None, *, name: str | None = None) -> FileResult:
        """Frame scores, filtered scores and events of one input (a path, or an array at ``sample_rate``,
        default the model's rate), post-processed by :attr:`postprocess`. Raises :class:`AudioError` for
        unusable audio."""
        return self._score_one(audio, sample_rate, name).add_events(self.postprocess)

    def frame_scores(
        self, audio: AudioLike, sample_rate: int | None = None, *, name: str | None = None
    ) -> FrameScores | list[FrameScores]:
        """Frame probabilities (T, K) of one input (``name``: what messages and ``FrameScores.source``
        call it); a list (one per channel) when ``channels="each"``. No post-processing."""
        result = self._score_one(audio, sample_rate, name)
        return result.scores if self.channels == "each" else result.scores[0]

    def events(self, audio: AudioLike, sample_rate: int | None = None) -> list[Event]:
        """Detected events of one input."""
        return self.predict(audio, sample_rate).events

    def embed(
        self, audio: AudioLike, sample_rate: int | None = None, *, layer: int | None = None
    ) -> Embeddings | list[Embeddings]:
        """Frame embeddings (T, D) of one input from ``layer`` (``None``: the head input; an int: that
        backbone block, negative counts from the top); a list when ``channels="each"``."""
        result = next(self._run([self._item(audio, sample_rate, None)], task="embed", layer=layer))
        if result.error is not None:
            raise AudioError(result.error)
        return result.embeddings if self.channels == "each" else result.embeddings[0]

    # -- many inputs ------------------------------------------------------------------------------------
    def score_many(
        self, inputs: Iterable[AudioLike], *, progress: Callable[[float], None] | None = None
    ) -> Iterator[FileResult]:
        """The score-source method (:class:`ptsed.inference.source.ScoreSource`): one :class:`FileResult`
        per input, in order, with frame scores and no events; windows of many inputs share batches.

        A file that cannot be used gives a result with ``error`` set; the others go on.

        Args:
            inputs: paths, :class:`AudioSource` items, or ``(array, sample_rate)`` pairs.
            progress: called with the seconds of audio completed, after every batch.
        """
        yield from self._run(self._items(inputs), task="detect", progress=progress)

    def predict_many(
        self,
        inputs: Iterable[AudioLike],
        *,
        embed: bool = False,
        layer: int | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> Iterator[FileResult]:
        """Process many inputs with shared batches; yields one :class:`FileResult` per input, in order.

        A file that cannot be used gives a result with ``error`` set; the others go on.

        Args:
            inputs: paths, :class:`AudioSource` items, or ``(array, sample_rate)`` pairs.
            embed: compute embeddings (from ``layer``) instead of scores and events.
            progress: called with the seconds of audio completed, after every batch.

        Without ``embed`` this is :meth:`score_many` followed by :attr:`postprocess`.
        """
        if embed:
            yield from self._run(self._items(inputs), task="embed", layer=layer, progress=progress)
            return
        postprocess = self.postprocess
        for result in self.score_many(inputs, progress=progress):
            yield result.add_events(postprocess)

    # -- internals --------------------------------------------------------------------------------------
    def _items(self, inputs: Iterable[AudioLike]) -> list[tuple[Any, str, str, int | None]]:
        items = []
        for x in inputs:
            if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], (np.ndarray, torch.Tensor)):
                items.append(self._item(x[0], x[1], None))
            else:
                items.append(self._item(x, None, None))  # type: ignore[arg-type]
        return items

    def _item(self, audio: AudioLike, sample_rate: int | None, name: str | None) -> tuple[Any, str, str, int | None]:
        if isinstance(audio, AudioSource):
            return audio.path, str(audio.path), name or audio.name, None
        if isinstance(audio, (str, os.PathLike)):
            p = Path(audio)
            return p, str(p), name or p.name, None
        if isinstance(audio, torch.Tensor):
            audio = audio.detach().cpu().numpy()
        if isinstance(audio, np.ndarray):
            return audio, "<array>", name or "<array>", int(sample_rate or self.sample_rate)
        raise TypeError(f"cannot read audio from a {type(audio).__name__}")

    def _produce(self, items: list, q: queue.Queue, stop: threading.Event) -> None:
        """Decode inputs and cut windows (background thread)."""

        def put(msg: tuple) -> bool:
            while not stop.is_set():
                try:
                    q.put(msg, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        mono = self.channels == "mix"
        try:
            for index, (src, source, name, sr_in) in enumerate(items):
                if stop.is_set():
                    return
                try:
                    if sr_in is None:
                        stream: Any = stream_audio(src, self.sample_rate, mono=mono, block_s=self.block_s)
                        file_sr, file_ch = stream.info.sample_rate, stream.info.channels
                        declared = stream.info.num_samples or 0
                        expected = math.ceil(declared * self.sample_rate / file_sr) if file_sr else 0
                    else:
                        stream = ArrayStream(src, sr_in, self.sample_rate, mono, name, self.block_s)
                        file_sr, file_ch = sr_in, stream.channels_in
                        expected = stream.num_samples
                    streams = 1 if mono else file_ch
                    if not put(("start", index, source, name, streams, file_sr, file_ch, expected)):
                        return
                    cutter = WindowCutter(
                        self.window_samples,
                        self.hop_frames * self.frame_samples,
                        self.frame_samples,
                        upstream=self.upstream_chunking,
                    )
                    covered = 0
                    for block in stream:
                        for start, window in cutter.feed(block):
                            end = start + self.window_samples
                            if not self._put_windows(put, index, start, window, (end - covered) / self.sample_rate):
                                return
                            covered = end
                    total = int(stream.num_samples)
                    for start, window in cutter.finish(total):
                        end = min(start + self.window_samples, total)
                        credit = max(0, end - covered) / self.sample_rate
                        if not self._put_windows(put, index, start, window, credit):
                            return
                        covered = max(covered, end)
                    if not put(("end", index, total)):
                        return
                except Exception as err:  # a bad file must not stop the run
                    msg = str(err) if isinstance(err, AudioError) else f"{source}: {type(err).__name__}: {err}"
                    if not put(("error", index, msg)):
                        return
        finally:
            put(("done",))

    def _put_windows(self, put: Callable, index: int, start: int, window: np.ndarray, credit: float) -> bool:
        start_frame = start // self.frame_samples
        if window.ndim == 1:
            return put(("win", index, 0, start_frame, window, credit))
        share = credit / window.shape[0]
        return all(put(("win", index, c, start_frame, window[c], share)) for c in range(window.shape[0]))

    def _forward(self, batch: np.ndarray, task: str, layer: int | None) -> np.ndarray:
        """(B, W) windows -> (B, F, K) probabilities (ensemble mean) or (B, F, D) embeddings."""
        x = torch.from_numpy(batch)
        cuda = self.device.type == "cuda"
        x = (x.pin_memory() if cuda else x).to(self.device, non_blocking=cuda)
        dtype = PRECISIONS[self.precision]
        outs = []
        with torch.inference_mode():
            for i, m in enumerate(self.models):
                if self._onnx:
                    from ptsed.inference.onnx_backend import window_outputs

                    outs.append(window_outputs(self._onnx[i], x, task, layer))
                    continue
                feats = m.features(x)
                with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    if task == "embed":
                        y = m.embed_features(feats, self.window_frames, layer).float()
                    else:
                        out = m.forward_features(feats, self.window_frames)
                        if out.strong_logits is None:
                            raise ConfigError(f"model {m.name!r} has no classification head; use embeddings")
                        y = out.strong_logits.float()
                        if m.head_config.head_type != "attention":
                            y = torch.sigmoid(y)
                        y = y.transpose(1, 2)
                outs.append(y)
            if task == "embed":
                y = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)
            else:
                y = outs[0] if len(outs) == 1 else torch.stack(outs).mean(0)
            return y.cpu().numpy()

    def _non_finite_error(self, job: _Job, start_frame: int, task: str) -> str:
        """The message of a file for which the model gave NaN or infinite outputs."""
        what = "embeddings" if task == "embed" else "scores"
        models = ", ".join(model_description(m, c) for m, c in zip(self.models, self._checkpoints, strict=True))
        return (
            f"{job.source}: the model {models} gave NaN or infinite {what} (window at "
            f"{start_frame * self.frame_hop_s:.2f} s, precision {self.precision}); the checkpoint may be damaged"
        )

    def _frames_of(self, num_samples: int) -> int:
        """Frames of the stitched output for ``num_samples`` samples (upstream mode keeps padded frames)."""
        if self.upstream_chunking:
            return math.ceil(num_samples / self.window_samples) * self.window_frames
        return math.ceil(num_samples / self.frame_samples)

    def _finalize(self, job: _Job, task: str, layer: int | None) -> FileResult:
        result = FileResult(
            source=job.source,
            name=job.name,
            sample_rate=job.sample_rate,
            channels=job.channels,
        )
        result.elapsed_s = time.perf_counter() - job.started
        if job.error is not None:
            result.error = job.error
            return result
        duration = job.num_samples / self.sample_rate
        result.duration_s = duration
        valid = math.ceil(job.num_samples / self.frame_samples)
        frames = self._frames_of(job.num_samples)
        timestamps = frame_times(frames + 1, self.frame_hop_s, duration)
        for c, stitcher in enumerate(job.stitchers):
            values = stitcher.finish(frames)
            channel = c if self.channels == "each" else None
            if task == "embed":
                result.embeddings.append(
                    Embeddings(values, timestamps, job.name, layer, [m.name for m in self.models], channel)
                )
                continue
            fs = FrameScores(
                values,
                timestamps,
                self.labels,
                source=job.name,
                channel=channel,
                meta={"hop_s": self.frame_hop_s, "duration_s": duration, "valid_frames": valid},
            )
            result.scores.append(fs)
        return result

    def _run(
        self,
        items: list,
        *,
        task: str,
        layer: int | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> Iterator[FileResult]:
        if task == "detect" and not self._labels:
            raise ConfigError(f"model {self.models[0].name!r} has no classification head; use embeddings")
        q: queue.Queue = queue.Queue(maxsize=self.prefetch_windows)
        stop = threading.Event()
        thread = threading.Thread(target=self._produce, args=(items, q, stop), daemon=True, name="ptsed-decode")
        thread.start()
        jobs: dict[int, _Job] = {}
        ready: dict[int, FileResult] = {}
        next_out = 0
        batch: list[tuple[int, int, int]] = []
        arrays: list[np.ndarray] = []
        credit = 0.0

        def run_batch() -> None:
            nonlocal credit
            if not batch:
                return
            out = self._forward(np.stack(arrays), task, layer)
            finite = np.isfinite(out).reshape(len(out), -1).all(axis=1)
            for (index, stream, start_frame), values, ok in zip(batch, out, finite, strict=True):
                job = jobs[index]
                job.pending -= 1
                if job.error is None and not ok:
                    job.error = self._non_finite_error(job, start_frame, task)
                if job.error is None:
                    job.stitchers[stream].add(start_frame, values)
            batch.clear()
            arrays.clear()
            if progress is not None and credit:
                progress(credit)
            credit = 0.0

        def collect() -> None:
            for index in sorted(jobs):
                job = jobs[index]
                if (job.ended or job.error is not None) and job.pending == 0:
                    ready[index] = self._finalize(job, task, layer)
                    del jobs[index]

        try:
            while True:
                msg = q.get()
                kind = msg[0]
                if kind == "done":
                    break
                if kind == "win":
                    _, index, stream, start_frame, window, share = msg
                    job = jobs.get(index)
                    if job is None or job.error is not None:  # None: failed in the model, already out
                        continue
                    job.pending += 1
                    job.windows += 1
                    batch.append((index, stream, start_frame))
                    arrays.append(window)
                    credit += share
                    if len(batch) >= self.batch_size:
                        run_batch()
                        collect()
                elif kind == "start":
                    _, index, source, name, streams, file_sr, file_ch, expected = msg
                    frames = self._frames_of(expected)
                    jobs[index] = _Job(
                        index,
                        source,
                        name,
                        streams=streams,
                        stitchers=[Stitcher(self.window_frames, self.stitch, frames) for _ in range(streams)],
                        sample_rate=file_sr,
                        channels=file_ch,
                    )
                elif kind == "end":
                    _, index, total = msg
                    if index not in jobs:  # failed in the model, already out
                        continue
                    jobs[index].ended = True
                    jobs[index].num_samples = total
                    collect()
                elif kind == "error":
                    _, index, err = msg
                    src, source, name, _sr = items[index]
                    job = jobs.setdefault(index, _Job(index, source, name))
                    job.error = err
                    collect()
                while next_out in ready:
                    yield ready.pop(next_out)
                    next_out += 1
            run_batch()
            collect()
            while next_out in ready:
                yield ready.pop(next_out)
                next_out += 1
        finally:
            stop.set()
            thread.join(timeout=5)
