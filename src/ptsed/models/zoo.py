"""The model zoo: one table of architectures and one of pretrained checkpoints.

Names follow timm's ``arch.tag`` scheme. The archs are ``beats``, ``atst_frame``, ``fpasst``, ``asit``,
``m2d``, ``frame_mn06`` and ``frame_mn10``; the tags are ``ssl``, ``as_weak`` and ``as_strong`` (the
MobileNets have ``as_strong`` only). A bare arch name means its ``as_strong`` tag. ``demo`` is a
reserved alias for the small offline model shipped with the package.

Each architecture names a builder (``"module:function"``, imported only when the model is built) that
returns ``(frontend, backbone)``, and the key renaming between upstream's released files and ptsed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ptsed.core.errors import ConfigError
from ptsed.heads.config import HeadConfig
from ptsed.hub.labels import UPSTREAM_COMMIT, UPSTREAM_REPO  # noqa: F401  (where labels are read)

RELEASE_URL = "https://github.com/fschmid56/PretrainedSED/releases/download/v0.0.1/"
PAPER = "Schmid et al., Effective Pre-Training of Audio Transformers for Sound Event Detection, ICASSP 2025"

STRONG_VOCAB = "audioset_strong_447"
WEAK_VOCAB = "audioset_weak_527"


@dataclass(frozen=True)
class ArchSpec:
    """One model family.

    Attributes:
        name: ptsed arch name (``"beats"``).
        upstream_name: the name upstream uses in file names and ``inference.py`` (``"BEATs"``).
        title: human-readable name.
        builder: ``"module:function"``; the function takes ``**kwargs`` and returns (frontend, backbone).
        key_prefixes: (released prefix, ptsed prefix) pairs. On load the longest matching released
            prefix is replaced (so ``model.fpasst.`` wins over ``model.``); on export the first pair
            listed for a ptsed prefix gives the spelling of upstream's released files. Head keys
            (``strong_head``, ``weak_head``, ``seq_model``) map to ``head.*`` for every arch.
        ignore_released: released-key prefixes that are dropped on load (buffers ptsed computes
            itself, e.g. nnAudio STFT kernels); export writes them back from the model when it has them.
        convert_hook: optional ``"module:function"`` applied to the renamed state dict on load, for
            what a prefix cannot express (legacy spellings, shared tensors).
        markers: released-key prefixes that only files of this family hold (one present is enough):
            they tell which architecture a file given without a model name is. Families that share
            markers (the two MobileNet widths) are told apart by the shapes of their layouts.
        frontend: short description of the front-end.
        reference: paper of the backbone.
        backbone_license: licence of the external pre-trained weights (ssl/weak stages).
        tags: the checkpoint stages that exist upstream.
        builder_kwargs: default keyword arguments of the builder.
    """

    name: str
    upstream_name: str
    title: str
    builder: str
    key_prefixes: tuple[tuple[str, str], ...]
    frontend: str
    reference: str
    backbone_license: str
    tags: tuple[str, ...] = ("ssl", "as_weak", "as_strong")
    builder_kwargs: dict[str, Any] = field(default_factory=dict)
    ignore_released: tuple[str, ...] = ()
    convert_hook: str | None = None
    markers: tuple[str, ...] = ()

    implemented: ClassVar[bool] = True
    """Every listed family is implemented (kept: the parity and conformance tests filter on it)."""

    def build_parts(self, **overrides: Any) -> tuple[Any, Any]:
        """Import the builder and return (frontend, backbone)."""
        module, func = self.builder.split(":")
        fn: Callable[..., tuple[Any, Any]] = getattr(importlib.import_module(module), func)
        return fn(**{**self.builder_kwargs, **overrides})


@dataclass(frozen=True)
class PretrainedSpec:
    """One pretrained checkpoint.

    Attributes:
        name: ``arch.tag``.
        arch: the :class:`ArchSpec`.
        tag: ``ssl``, ``as_weak`` or ``as_strong``.
        stage: human-readable training stage.
        url: download URL of the released file.
        filename: file name in the cache.
        head: the head the released file carries (n_strong 0: no heads).
        vocabulary: label vocabulary of the heads (``None`` without heads).
        license: licence of the checkpoint.
        sha256: the file's pinned hash, checked on download and on use. Upstream publishes none and the
            files cannot be hashed offline, so none is pinned yet: the first download's record is the
            reference (docs/checkpoints.md).
    """

    name: str
    arch: ArchSpec
    tag: str
    stage: str
    url: str
    filename: str
    head: HeadConfig
    vocabulary: str | None
    license: str = "MIT"
    sha256: str | None = None


_TRANSFORMER_TAGS = ("ssl", "as_weak", "as_strong")

ARCHS: dict[str, ArchSpec] = {
    a.name: a
    for a in [
        ArchSpec(
            name="atst_frame",
            upstream_name="ATST-F",
            title="ATST-Frame",
            builder="ptsed.backbones.atst_frame:build",
            key_prefixes=(("model.atst_mel.", "frontend."), ("model.atst.", "backbone.")),
            ignore_released=("model.atst_mel.",),
            markers=("model.atst.",),
            frontend="64-bin mel (1024-pt STFT, hop 10 ms), dB, min-max scaling",
            reference="Li et al., Self-supervised Audio Teacher-Student Transformer for Both Clip-level "
            "and Frame-level Tasks, IEEE/ACM TASLP 2024 (arXiv:2306.04186)",
            backbone_license="MIT (Audio-WestlakeU/audiossl)",
        ),
        ArchSpec(
            name="beats",
            upstream_name="BEATs",
            title="BEATs",
            builder="ptsed.backbones.beats:build",
            key_prefixes=(("model.model.", "backbone."), ("model.beats.", "backbone.")),
            convert_hook="ptsed.backbones.beats:convert_released",
            markers=("model.model.", "model.beats."),
            frontend="Kaldi fbank, 128 bins, fixed mean/std normalisation",
            reference="Chen et al., BEATs: Audio Pre-Training with Acoustic Tokenizers, ICML 2023 (arXiv:2212.09058)",
            backbone_license="MIT (microsoft/unilm)",
        ),
        ArchSpec(
            name="fpasst",
            upstream_name="fpasst",
            title="frame-level PaSST",
            builder="ptsed.backbones.fpasst:build",
            key_prefixes=(("model.", "backbone."), ("model.fpasst.", "backbone.")),
            markers=("model.fpasst.", "model.new_pos_embed", "model.freq_new_pos_embed", "model.time_new_pos_embed"),
            frontend="pre-emphasis, 128-bin log-mel (STFT 512/400, hop 10 ms), fast normalisation",
            reference="Koutini et al., Efficient Training of Audio Transformers with Patchout, "
            "Interspeech 2022 (arXiv:2110.05069); Schmid et al., arXiv:2407.12997",
            backbone_license="Apache-2.0 (DeiT ImageNet weights for the ssl stage)",
        ),
        ArchSpec(
            name="asit",
            upstream_name="ASIT",
            title="ASiT",
            builder="ptsed.backbones.asit:build",
            key_prefixes=(("model.", "backbone."),),
            convert_hook="ptsed.backbones.asit:convert_released",
            markers=("model.asit.", "model.pos_embed"),
            frontend="Kaldi fbank, 128 bins, fixed mean/std normalisation",
            reference="Atito et al., ASiT: Local-Global Audio Spectrogram Vision Transformer for Event "
            "Classification, IEEE/ACM TASLP 2024 (arXiv:2211.13189)",
            backbone_license="see ASiT's repository (sara-atito/ASiT)",
        ),
        ArchSpec(
            name="m2d",
            upstream_name="M2D",
            title="M2D",
            builder="ptsed.backbones.m2d:build",
            key_prefixes=(
                ("model.backbone.", "backbone."),
                ("model.m2d.backbone.", "backbone."),
                ("model.to_spec.", "frontend.to_spec."),
                ("model.m2d.to_spec.", "frontend.to_spec."),
            ),
            ignore_released=("model.to_spec.", "model.m2d.to_spec."),
            markers=("model.backbone.", "model.m2d."),
            frontend="80-bin log-mel (400-pt STFT, hop 10 ms), fixed normalisation -7.1 / 4.2",
            reference="Niizumi et al., M2D-CLAP: Masked Modeling Duo Meets CLAP, Interspeech 2024 (arXiv:2406.02032)",
            backbone_license="see nttcslab/m2d (NTT licence)",
        ),
        ArchSpec(
            name="frame_mn06",
            upstream_name="frame_mn06",
            title="frame-level MobileNetV3, width 0.6",
            builder="ptsed.backbones.frame_mn:build",
            builder_kwargs={"width_mult": 0.6},
            key_prefixes=(("model.frame_mn.", "backbone."),),
            markers=("model.frame_mn.",),
            frontend="pre-emphasis, 128-bin log-mel (STFT 512/400, hop 10 ms), fast normalisation",
            reference="Schmid et al., Efficient Large-Scale Audio Tagging via Transformer-to-CNN Knowledge "
            "Distillation, ICASSP 2023; PretrainedSED release",
            backbone_license="MIT",
            tags=("as_strong",),
        ),
        ArchSpec(
            name="frame_mn10",
            upstream_name="frame_mn10",
            title="frame-level MobileNetV3, width 1.0",
            builder="ptsed.backbones.frame_mn:build",
            builder_kwargs={"width_mult": 1.0},
            key_prefixes=(("model.frame_mn.", "backbone."),),
            markers=("model.frame_mn.",),
            frontend="pre-emphasis, 128-bin log-mel (STFT 512/400, hop 10 ms), fast normalisation",
            reference="Schmid et al., Efficient Large-Scale Audio Tagging via Transformer-to-CNN Knowledge "
            "Distillation, ICASSP 2023; PretrainedSED release",
            backbone_license="MIT",
            tags=("as_strong",),
        ),
    ]
}

_STAGES = {
    "ssl": "self-supervised (external)",
    "as_weak": "AudioSet weak (clip labels)",
    "as_strong": "AudioSet strong (frame labels, ensemble KD)",
}


def _release_filename(arch: ArchSpec, tag: str) -> str:
    if tag == "as_strong":
        return f"{arch.upstream_name}_strong_1.pt"
    return f"{arch.upstream_name}_{'weak' if tag == 'as_weak' else 'ssl'}.pt"


def _make_pretrained() -> dict[str, PretrainedSpec]:
    table: dict[str, PretrainedSpec] = {}
    for arch in ARCHS.values():
        for tag in arch.tags:
            filename = _release_filename(arch, tag)
            if tag == "as_strong":
                head, vocab = HeadConfig(n_strong=447), STRONG_VOCAB
            elif tag == "as_weak":
                head, vocab = HeadConfig(n_strong=527), WEAK_VOCAB
            else:
                head, vocab = HeadConfig(n_strong=0), None
            table[f"{arch.name}.{tag}"] = PretrainedSpec(
                name=f"{arch.name}.{tag}",
                arch=arch,
                tag=tag,
                stage=_STAGES[tag],
                url=RELEASE_URL + filename,
                filename=filename,
                head=head,
                vocabulary=vocab,
                license="MIT" if tag == "as_strong" else arch.backbone_license,
            )
    return table


PRETRAINED: dict[str, PretrainedSpec] = _make_pretrained()

RESERVED_ALIASES = ("demo",)


def list_models() -> list[str]:
    """Names of all architectures (``["atst_frame", "beats", ...]``)."""
    return list(ARCHS)


def list_pretrained() -> list[str]:
    """Names of all pretrained checkpoints (``arch.tag``) plus the reserved aliases (``demo``)."""
    return [*PRETRAINED, *RESERVED_ALIASES]


def split_name(name: str) -> tuple[str, str]:
    """``"beats"`` -> ``("beats", "as_strong")``; ``"beats.ssl"`` -> ``("beats", "ssl")``."""
    arch, _, tag = name.partition(".")
    return arch, tag or "as_strong"


def get_arch(name: str) -> ArchSpec:
    """The :class:`ArchSpec` of an arch name or an ``arch.tag`` name; a clear error for unknown names."""
    arch = split_name(name)[0]
    if arch not in ARCHS:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join([*ARCHS, *RESERVED_ALIASES])}")
    return ARCHS[arch]


def find_arch(name: str | None) -> ArchSpec | None:
    """The :class:`ArchSpec` of a ptsed or upstream name (``"beats.ssl"``, ``"ATST-F"``), else ``None``."""
    arch = split_name(name or "")[0].casefold()
    return next((a for a in ARCHS.values() if arch in (a.name.casefold(), a.upstream_name.casefold())), None)


def tag_for_heads(arch: ArchSpec, n_strong: int) -> str:
    """The stage a released file of ``arch`` with heads of ``n_strong`` classes is: no heads ``ssl``,
    527 ``as_weak``, otherwise (447, or a fine-tuned vocabulary) ``as_strong``."""
    tag = "ssl" if n_strong == 0 else "as_weak" if n_strong == 527 else "as_strong"
    return tag if tag in arch.tags else "as_strong"


def get_pretrained_spec(name: str) -> PretrainedSpec:
    """The :class:`PretrainedSpec` of ``arch`` or ``arch.tag``."""
    arch, tag = split_name(name)
    get_arch(arch)
    key = f"{arch}.{tag}"
    if key not in PRETRAINED:
        tags = ", ".join(ARCHS[arch].tags)
        raise ConfigError(f"model {arch!r} has no checkpoint tagged {tag!r}; its tags are: {tags}")
    return PRETRAINED[key]


def resolve_names(names: Iterable[str]) -> list[PretrainedSpec]:
    """Zoo entries for ``names``; ``"all"`` means every checkpoint.

    Raises:
        ConfigError: an unknown name.
    """
    specs: list[PretrainedSpec] = []
    for name in names:
        found = list(PRETRAINED.values()) if name == "all" else [get_pretrained_spec(name)]
        specs.extend(s for s in found if s not in specs)
    return specs
