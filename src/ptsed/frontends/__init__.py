"""ptsed.frontends."""
