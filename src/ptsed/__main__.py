"""``python -m ptsed`` runs the command-line interface."""

import sys

from ptsed.cli.main import main

sys.exit(main())
