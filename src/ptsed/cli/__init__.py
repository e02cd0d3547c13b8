"""ptsed.cli."""
