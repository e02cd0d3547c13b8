"""ASiT in the zoo: released key prefixes and markers, licence, reference.

Builder and converter: :mod:`ptsed.backbones.asit`. No torch is imported here.
"""

from __future__ import annotations

from ptsed.backbones.family import ArchSpec

ASIT = ArchSpec(
    name="asit",
    upstream_name="ASIT",
    title="ASiT",
    builder="ptsed.backbones.asit:build",
    key_prefixes=(("model.", "backbone."),),
    convert_hook="ptsed.backbones.asit:convert_released",
    markers=("model.asit.", "model.pos_embed"),
    reference="Atito et al., ASiT: Local-Global Audio Spectrogram Vision Transformer for Event "
    "Classification, IEEE/ACM TASLP 2024 (arXiv:2211.13189)",
    backbone_license="see ASiT's repository (sara-atito/ASiT)",
)

ARCHS = (ASIT,)
