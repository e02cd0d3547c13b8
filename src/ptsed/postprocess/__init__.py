"""ptsed.postprocess."""
