"""ptsed.inference."""
