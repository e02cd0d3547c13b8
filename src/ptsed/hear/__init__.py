"""ptsed.hear."""
