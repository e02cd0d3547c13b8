"""ptsed.recipes."""
