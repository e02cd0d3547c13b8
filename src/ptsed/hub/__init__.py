"""ptsed.hub."""
