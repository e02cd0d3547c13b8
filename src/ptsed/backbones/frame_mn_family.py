"""The frame-level MobileNetV3s (widths 0.6 and 1.0) in the zoo: released key prefixes and markers, licence, reference.

Builder and converter: :mod:`ptsed.backbones.frame_mn`. No torch is imported here.
"""

from __future__ import annotations

from dataclasses import replace

from ptsed.backbones.family import ArchSpec

FRAME_MN06 = ArchSpec(
    name="frame_mn06",
    upstream_name="frame_mn06",
    title="frame-level MobileNetV3, width 0.6",
    builder="ptsed.backbones.frame_mn:build",
    builder_kwargs={"width_mult": 0.6},
    key_prefixes=(("model.frame_mn.", "backbone."),),
    markers=("model.frame_mn.",),
    reference="Schmid et al., Efficient Large-Scale Audio Tagging via Transformer-to-CNN Knowledge "
    "Distillation, ICASSP 2023; PretrainedSED release",
    backbone_license="MIT",
    tags=("as_strong",),
)

FRAME_MN10 = replace(
    FRAME_MN06,
    name="frame_mn10",
    upstream_name="frame_mn10",
    title="frame-level MobileNetV3, width 1.0",
    builder_kwargs={"width_mult": 1.0},
)

ARCHS = (
    FRAME_MN06,
    FRAME_MN10,
)
