"""The environment of a child Python process that must import this ptsed (and, optionally, test helpers)."""

from __future__ import annotations

import os
import site
import sysconfig
from pathlib import Path


def child_env(*extra: str | Path, **variables: str) -> dict[str, str]:
    """``os.environ`` with ``PYTHONPATH`` leading to the ptsed being tested.

    A source checkout (``src/``) goes first on the path. An installed ptsed needs no entry: putting
    site-packages on ``PYTHONPATH`` would place it before the standard library, where the old ``pathlib``
    backport that sed_scores_eval pulls in shadows the real ``pathlib``.
    """
    import ptsed

    root = Path(ptsed.__file__).resolve().parents[1]
    installed = {Path(p).resolve() for p in [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]}
    paths = [str(p) for p in extra]
    if root not in installed:
        paths.append(str(root))
    env = {**os.environ, **variables}
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return env
