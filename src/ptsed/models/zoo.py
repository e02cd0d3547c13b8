"""The model zoo: one table of architectures and one of pretrained checkpoints.

Names follow timm's ``arch.tag`` scheme. The archs are ``beats``, ``atst_frame``, ``fpasst``, ``asit``,
``m2d``, ``frame_mn06`` and ``frame_mn10``; the tags are ``ssl``, ``as_weak`` and ``as_strong`` (the
MobileNets have ``as_strong`` only). A bare arch name means its ``as_strong`` tag. ``demo`` is a
reserved alias for the small offline model shipped with the package.

Each architecture (:class:`~ptsed.backbones.family.ArchSpec`) is stated in its family's own file next to its
builder and converter (``ptsed/backbones/<family>_family.py``): the builder (``"module:function"``, imported
only when the model is built) that returns ``(frontend, backbone)``, the key renaming between upstream's
released files and ptsed, licence and reference. Reading this table imports no torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ptsed.backbones import asit_family, atst_frame_family, beats_family, fpasst_family, frame_mn_family, m2d_family
from ptsed.backbones.family import ArchSpec
from ptsed.core.errors import ConfigError
from ptsed.heads.config import HeadConfig
from ptsed.hub.labels import UPSTREAM_COMMIT, UPSTREAM_REPO  # noqa: F401  (where labels are read)

RELEASE_URL = "https://github.com/fschmid56/PretrainedSED/releases/download/v0.0.1/"
PAPER = "Schmid et al., Effective Pre-Training of Audio Transformers for Sound Event Detection, ICASSP 2025"

STRONG_VOCAB = "audioset_strong_447"
WEAK_VOCAB = "audioset_weak_527"


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
    for a in (
        *atst_frame_family.ARCHS,
        *beats_family.ARCHS,
        *fpasst_family.ARCHS,
        *asit_family.ARCHS,
        *m2d_family.ARCHS,
        *frame_mn_family.ARCHS,
    )
}
"""Every family of the zoo, by ptsed name; each family file (``ptsed/backbones/<family>_family.py``) says what
is known about its released files."""

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
