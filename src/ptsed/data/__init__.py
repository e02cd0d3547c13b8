"""ptsed.data."""
