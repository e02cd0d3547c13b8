"""The published list of AudioSet-strong eval clips, and how a user's copy compares with it.

Users' copies of AudioSet differ (videos disappear from YouTube), and their numbers differ with them
(PretrainedSED issue #2: 16,903 of 16,996 clips). ptsed ships the published list of eval clip ids and
durations, 16,935 clips (``ptsed/assets/labels/audioset_strong_eval_durations.csv``: upstream's
``resources/eval_durations.csv`` at the pinned commit, ``Y<youtube id>,duration``), and
``ptsed evaluate --protocol audioset-strong`` reports which clips of it are missing from the ground truth or
the predictions, which clips are extra (not in the list, not scored), and scores the intersection.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

PUBLISHED_COUNT = 16935
"""Clips in the shipped list (upstream's ``eval_durations.csv``). PretrainedSED #2 speaks of 16,996 eval clips;
where the other 61 are (clips without a duration upstream?) has not been checked offline."""


@cache
def _published() -> dict[str, float]:
    from ptsed.hub.labels import EVAL_DURATIONS_FILE, shipped_file
    from ptsed.io.annotations import read_durations

    return read_durations(shipped_file(EVAL_DURATIONS_FILE))


def published_eval_clips() -> dict[str, float]:
    """The published AudioSet-strong eval clips: ``Y<youtube id>`` -> duration in seconds (16,935 clips)."""
    return dict(_published())


@dataclass
class ClipListReport:
    """A user's eval clips against the published list.

    Attributes:
        published: clips in the published list.
        scored_candidates: published clips that have both ground truth and predictions (the intersection).
        missing: published clips without ground truth or without predictions, sorted.
        extra: clips of the ground truth or of the predictions that are not in the published list (not
            scored), sorted.
    """

    published: int
    scored_candidates: int
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def applied(self) -> bool:
        """Whether the list applies: some clip of the user's is in it (else the data is not AudioSet eval, and
        every clip is scored as without the list)."""
        return self.scored_candidates > 0

    def summary(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "published": self.published,
            "intersection": self.scored_candidates,
            "missing": self.missing,
            "extra": self.extra,
        }

    def line(self) -> str:
        """One sentence for the console."""
        if not self.applied:
            return (
                f"no clip is in the published list of {self.published} AudioSet-strong eval clips: every clip is "
                "scored, and the numbers are not comparable with the paper's"
            )
        text = (
            f"{self.scored_candidates} of the {self.published} published eval clips have ground truth and predictions"
        )
        if self.missing:
            text += f"; {len(self.missing)} missing (e.g. {', '.join(self.missing[:3])})"
        if self.extra:
            text += f"; {len(self.extra)} not in the published list and not scored (e.g. {', '.join(self.extra[:3])})"
        if self.missing or self.extra:
            text += "; the numbers are those of the intersection (summary.json: clip_list)"
        return text


def compare(
    predicted: Iterable[str], ground_truth: Iterable[str], published: Mapping[str, float] | None = None
) -> ClipListReport:
    """Compare clip ids (``Y<id>``) with predictions and with ground truth against the published list."""
    pub = set(published if published is not None else _published())
    pred, gt = set(predicted), set(ground_truth)
    both = pub & pred & gt
    return ClipListReport(
        published=len(pub),
        scored_candidates=len(both),
        missing=sorted(pub - both),
        extra=sorted((pred | gt) - pub),
    )
