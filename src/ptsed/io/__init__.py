"""ptsed.io."""
