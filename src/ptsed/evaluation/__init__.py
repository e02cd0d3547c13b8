"""ptsed.evaluation."""
