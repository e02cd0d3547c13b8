"""Release tooling: writing models out (ptsed format, upstream's released layout) and building the shipped demo."""
