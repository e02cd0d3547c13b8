"""Optional dependencies ("extras" of ``pip install "ptsed[...]"``), checked before any work starts.

A command or API entry that needs an extra calls :func:`require` first; when a module of the extra is missing it
raises :class:`MissingExtraError`, whose message is one line naming the extra to install, e.g.::

    ptsed evaluate needs the "eval" extra (missing: sed_scores_eval): pip install "ptsed[eval]"

The check uses :func:`importlib.util.find_spec` only (nothing is imported, so it costs microseconds).
"""

from __future__ import annotations

import importlib.util

from ptsed.core.errors import PtsedError

EXTRAS: dict[str, tuple[str, ...]] = {
    "media": ("av",),
    "plot": ("matplotlib",),
    "hdf5": ("h5py",),
    "eval": ("sed_scores_eval", "pandas", "pkg_resources"),
    "train": ("lightning", "tensorboard", "yaml", "sed_scores_eval", "pandas", "pkg_resources"),
    "onnx": ("onnx", "onnxruntime", "onnxscript"),
    "live": ("sounddevice",),
}
"""Extra -> the top-level modules ptsed imports from it (``pkg_resources``: sed_scores_eval's dependency
dcase_util needs setuptools < 81, which the ``eval`` extra pins)."""


class MissingExtraError(PtsedError, ImportError):
    """An optional dependency of the requested feature is not installed."""

    def __init__(self, extra: str, missing: list[str], what: str) -> None:
        self.extra, self.missing = extra, missing
        super().__init__(
            f'{what} needs the "{extra}" extra (missing: {", ".join(missing)}): pip install "ptsed[{extra}]"'
        )


def missing_modules(extra: str) -> list[str]:
    """Modules of ``extra`` that are not installed (empty when all are)."""
    if extra not in EXTRAS:
        raise KeyError(f"unknown extra {extra!r}; extras: {', '.join(EXTRAS)}")
    missing = []
    for module in EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken or half-removed package
            found = False
        if not found:
            missing.append(module)
    return missing


def require(*extras: str, what: str = "this feature") -> None:
    """Raise :class:`MissingExtraError` for the first of ``extras`` with a module that is not installed.

    Args:
        extras: names of :data:`EXTRAS` (``"eval"``, ``"train"``, ``"hdf5"``, ``"plot"``, ``"media"``,
            ``"onnx"``, ``"live"``).
        what: the command or feature that needs them, for the message (``"ptsed evaluate"``).
    """
    for extra in extras:
        missing = missing_modules(extra)
        if missing:
            raise MissingExtraError(extra, missing, what)


FORMAT_EXTRAS: dict[str, str] = {"h5": "hdf5"}
"""Output format -> the extra its writer needs."""


def require_outputs(formats: list[str], *, plot: bool = False, what: str = "ptsed detect") -> None:
    """:func:`require` the extras of the output ``formats`` (``h5``: hdf5) and of ``plot`` (plot)."""
    for fmt in formats:
        if fmt in FORMAT_EXTRAS:
            require(FORMAT_EXTRAS[fmt], what=f"{what} --format {fmt}")
    if plot:
        require("plot", what=f"{what} --plot")


def has(extra: str) -> bool:
    """Whether every module of ``extra`` is installed."""
    return not missing_modules(extra)


__all__ = [
    "EXTRAS",
    "FORMAT_EXTRAS",
    "MissingExtraError",
    "has",
    "missing_modules",
    "require",
    "require_outputs",
]
