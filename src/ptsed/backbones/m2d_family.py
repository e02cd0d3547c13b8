"""M2D in the zoo: released key prefixes and markers, licence, reference.

Builder and converter: :mod:`ptsed.backbones.m2d`. No torch is imported here.
"""

from __future__ import annotations

from ptsed.backbones.family import ArchSpec

M2D = ArchSpec(
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
    reference="Niizumi et al., M2D-CLAP: Masked Modeling Duo Meets CLAP, Interspeech 2024 (arXiv:2406.02032)",
    backbone_license="see nttcslab/m2d (NTT licence)",
)

ARCHS = (M2D,)
