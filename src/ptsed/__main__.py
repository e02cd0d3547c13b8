"""``python -m ptsed`` runs the command-line interface."""

from ptsed.cli.main import cli

cli()
