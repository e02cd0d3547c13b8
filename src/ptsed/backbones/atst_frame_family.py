"""ATST-Frame in the zoo: released key prefixes and markers, licence, reference.

Builder and converter: :mod:`ptsed.backbones.atst_frame`. No torch is imported here.
"""

from __future__ import annotations

from ptsed.backbones.family import ArchSpec

ATST_FRAME = ArchSpec(
    name="atst_frame",
    upstream_name="ATST-F",
    title="ATST-Frame",
    builder="ptsed.backbones.atst_frame:build",
    key_prefixes=(("model.atst_mel.", "frontend."), ("model.atst.", "backbone.")),
    ignore_released=("model.atst_mel.",),
    markers=("model.atst.",),
    reference="Li et al., Self-supervised Audio Teacher-Student Transformer for Both Clip-level "
    "and Frame-level Tasks, IEEE/ACM TASLP 2024 (arXiv:2306.04186)",
    backbone_license="MIT (Audio-WestlakeU/audiossl)",
)

ARCHS = (ATST_FRAME,)
