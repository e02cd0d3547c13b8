"""ptsed.backbones."""
