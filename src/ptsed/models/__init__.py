"""ptsed.models."""
