"""ptsed.train."""
