"""Closest class names, for the "did you mean" of every error about an unknown class (post-processing options,
class maps, the ontology)."""

from __future__ import annotations

from collections.abc import Sequence


def did_you_mean(name: str, labels: Sequence[str]) -> str:
    """`` (did you mean 'A', 'B'?)`` with the closest of ``labels`` (:func:`close_names`), or ``""``."""
    close = close_names(name, labels)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def close_names(name: str, labels: Sequence[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """The ``n`` labels closest to ``name`` (:mod:`difflib` ratio, case-insensitive, best first).

    A label is compared whole and by its comma-separated parts, so ``"Beep"`` finds ``"Beep, bleep"``, and
    a label containing ``name`` counts as close (0.8).
    """
    import difflib

    folded = name.casefold().strip()
    scored = []
    for i, label in enumerate(labels):
        low = label.casefold()
        parts = [low, *(p.strip() for p in low.split(",") if p.strip())]
        ratio = max(difflib.SequenceMatcher(None, folded, p).ratio() for p in parts)
        if len(folded) >= 3 and folded in low:
            ratio = max(ratio, 0.8)
        if ratio >= cutoff:
            scored.append((-ratio, i, label))
    return [label for _, _, label in sorted(scored)[:n]]


__all__ = ["close_names", "did_you_mean"]
