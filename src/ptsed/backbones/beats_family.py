"""BEATs in the zoo: released key prefixes and markers, licence, reference.

Builder and converter: :mod:`ptsed.backbones.beats`. No torch is imported here.
"""

from __future__ import annotations

from ptsed.backbones.family import ArchSpec

BEATS = ArchSpec(
    name="beats",
    upstream_name="BEATs",
    title="BEATs",
    builder="ptsed.backbones.beats:build",
    key_prefixes=(("model.model.", "backbone."), ("model.beats.", "backbone.")),
    convert_hook="ptsed.backbones.beats:convert_released",
    markers=("model.model.", "model.beats."),
    reference="Chen et al., BEATs: Audio Pre-Training with Acoustic Tokenizers, ICML 2023 (arXiv:2212.09058)",
    backbone_license="MIT (microsoft/unilm)",
)

ARCHS = (BEATS,)
