"""ptsed.layers."""
