"""ptsed.heads."""
