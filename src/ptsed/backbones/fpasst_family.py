"""frame-level PaSST in the zoo: released key prefixes and markers, licence, reference.

Builder and converter: :mod:`ptsed.backbones.fpasst`. No torch is imported here.
"""

from __future__ import annotations

from ptsed.backbones.family import ArchSpec

FPASST = ArchSpec(
    name="fpasst",
    upstream_name="fpasst",
    title="frame-level PaSST",
    builder="ptsed.backbones.fpasst:build",
    key_prefixes=(("model.", "backbone."), ("model.fpasst.", "backbone.")),
    markers=("model.fpasst.", "model.new_pos_embed", "model.freq_new_pos_embed", "model.time_new_pos_embed"),
    reference="Koutini et al., Efficient Training of Audio Transformers with Patchout, "
    "Interspeech 2022 (arXiv:2110.05069); Schmid et al., arXiv:2407.12997",
    backbone_license="Apache-2.0 (DeiT ImageNet weights for the ssl stage)",
)

ARCHS = (FPASST,)
