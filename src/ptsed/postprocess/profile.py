"""Post-processing profiles: per-class thresholds and median filter lengths fitted on a development set.

A profile is written by ``ptsed tune`` (and stored by ``ptsed finetune`` in its checkpoint, as
``checkpoint_extra["postprocess"]``) and applied by ``ptsed detect --postprocess profile.json``. As JSON::

    {
      "format": "ptsed-postprocess", "format_version": 1, "ptsed_version": "0.1.0",
      "decoder": "median",                    # median filter -> threshold (strict >) -> contiguous regions
      "objective": {"name": "event_f1", "value": 0.61, "default_value": 0.42, "criterion": "..."},
      "fitted_on": {"clips": 150, "events": 485, "ground_truth": "...", "scores": "...", ...},
      "thresholds": {"Speech": 0.31, ...},    # a frame is active when its (filtered) score > threshold
      "median_filter_s": {"Speech": 0.44, ...},   # median filter length in seconds (0: none)
      "fitted": ["Speech", ...],              # classes whose values were fitted; the others keep the defaults
      ...
    }

Only ``thresholds`` and ``median_filter_s`` change what is detected; the other fields say where the values
come from. Precedence in ``ptsed detect``, highest first: ``--threshold`` / ``--median-filter``, then
``--postprocess FILE``, then the profile stored in the checkpoint, then the defaults.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptsed.core.errors import ConfigError

PROFILE_FORMAT = "ptsed-postprocess"
PROFILE_VERSION = 1
DECODERS = ("median", "csebb")
"""Decoders a profile can apply to: ``median`` is :class:`~ptsed.postprocess.pipeline.PostProcessor`'s
chain (median filter, threshold, contiguous regions); ``csebb`` is :class:`~ptsed.postprocess.sebb.CSEBB`
(thresholds on box confidences; its per-class ``step_filter_s`` and its ``merge_threshold`` and
``confidence`` are kept in :attr:`Profile.extra`)."""

MEDIAN_GRID_S = (0.0, 0.12, 0.28, 0.36, 0.44, 0.6, 0.84, 1.0)
"""Median filter lengths (seconds) tried per class by the fit (:mod:`ptsed.evaluation.tuning`)."""

MIN_THRESHOLD = 0.05
"""No fitted threshold is lower: a near-zero threshold marks almost every frame active."""

OBJECTIVES = {
    "event_f1": "collar-based event F1 (onset 0.2 s, offset max(0.2 s, 20 %))",
    "psds1": "intersection-based F1 at PSDS1's criteria (dtc = gtc = 0.7)",
}
"""What the fit can maximise, per class (see :mod:`ptsed.evaluation.tuning`)."""


@dataclass
class Profile:
    """Per-class post-processing settings and what they were fitted on (see the module docstring).

    Attributes:
        thresholds: label -> threshold in [0, 1].
        median_filter_s: label -> median filter length in seconds (>= 0).
        decoder: the decoder the values apply to (``"median"``).
        objective: ``{"name", "value", ...}``: what the fit maximised and the value reached.
        fitted_on: what the values were fitted on (paths, number of clips and events, window settings).
        fitted: the classes whose values were fitted (the others keep safe defaults).
        extra: any other fields of the file (kept when written back).
    """

    thresholds: dict[str, float] = field(default_factory=dict)
    median_filter_s: dict[str, float] = field(default_factory=dict)
    decoder: str = "median"
    objective: dict[str, Any] = field(default_factory=dict)
    fitted_on: dict[str, Any] = field(default_factory=dict)
    fitted: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        """Every class the profile sets a value for."""
        return list(dict.fromkeys([*self.thresholds, *self.median_filter_s]))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (the file's content and the checkpoint's ``postprocess`` entry)."""
        from ptsed._version import __version__

        return {
            "format": PROFILE_FORMAT,
            "format_version": PROFILE_VERSION,
            "ptsed_version": __version__,
            **self.extra,
            "decoder": self.decoder,
            "objective": dict(self.objective),
            "fitted_on": dict(self.fitted_on),
            "thresholds": {str(k): float(v) for k, v in self.thresholds.items()},
            "median_filter_s": {str(k): float(v) for k, v in self.median_filter_s.items()},
            "fitted": list(self.fitted),
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "post-processing profile") -> Profile:
        """A profile from plain data (a profile file's content, or a checkpoint's ``postprocess`` entry).

        Raises:
            ConfigError: not a mapping, an unknown decoder, no per-class values, or values out of range
                (thresholds in [0, 1], median filter lengths >= 0 s), naming ``source``.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        fmt = data.get("format", PROFILE_FORMAT)
        if fmt != PROFILE_FORMAT:
            raise ConfigError(f"{source}: not a post-processing profile (format {fmt!r}, expected {PROFILE_FORMAT!r})")
        decoder = data.get("decoder", "median")
        if decoder not in DECODERS:
            raise ConfigError(f"{source}: decoder {decoder!r} is not one ptsed applies ({', '.join(DECODERS)})")
        thresholds = _values(data.get("thresholds"), "thresholds", source, 0.0, 1.0)
        medians = _values(data.get("median_filter_s"), "median_filter_s", source, 0.0, math.inf)
        if not thresholds and not medians:
            raise ConfigError(f"{source}: no per-class 'thresholds' or 'median_filter_s'")
        known = {"format", "format_version", "ptsed_version", "decoder", "objective", "fitted_on", "fitted"}
        known |= {"thresholds", "median_filter_s"}
        objective = data.get("objective") or {}
        fitted_on = data.get("fitted_on") or {}
        return cls(
            thresholds,
            medians,
            decoder,
            dict(objective) if isinstance(objective, Mapping) else {"name": str(objective)},
            dict(fitted_on) if isinstance(fitted_on, Mapping) else {"description": str(fitted_on)},
            [str(c) for c in data.get("fitted") or []],
            {k: v for k, v in data.items() if k not in known},
        )

    def check_labels(self, labels: Sequence[str], source: str = "post-processing profile") -> None:
        """Raise ``ConfigError`` naming ``source`` when the profile sets classes that ``labels`` lack."""
        unknown = [c for c in self.labels if c not in set(labels)]
        if unknown:
            from ptsed.postprocess.decode import did_you_mean

            more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
            raise ConfigError(
                f"{source}: class {unknown[0]!r}{more} is not among the model's {len(labels)} classes"
                f"{did_you_mean(unknown[0], labels)}"
            )

    def apply(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """:class:`~ptsed.postprocess.pipeline.PostProcessor` fields with the profile's thresholds and median
        filters filled in where ``fields`` has none (explicit settings win); classes the profile leaves out
        use the defaults."""
        out = dict(fields)
        if self.thresholds and "threshold" not in out:
            out["threshold"] = dict(self.thresholds)
        if self.median_filter_s and "median_filter_s" not in out:
            out["median_filter_s"] = dict(self.median_filter_s)
        return out


def _values(data: Any, key: str, source: str, low: float, high: float) -> dict[str, float]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: {key!r} must map class names to numbers")
    out = {}
    for label, value in data.items():
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: {key!r} of class {label!r} is not a number: {value!r}") from None
        if not low <= v <= high:
            raise ConfigError(f"{source}: {key!r} of class {label!r} is {v}, outside [{low}, {high}]")
        out[str(label)] = v
    return out


def load_profile(path: str | Path) -> Profile:
    """Read a profile file (JSON, see the module docstring).

    Raises:
        ConfigError: a missing file, a file that is not JSON, or not a valid profile (one line naming it).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"post-processing profile {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"post-processing profile {str(path)!r} is not JSON ({err})") from None
    return Profile.from_dict(data, source=f"post-processing profile {str(path)!r}")


def save_profile(profile: Profile | Mapping[str, Any], path: str | Path) -> Path:
    """Write a profile as JSON, atomically (a crash never leaves half a file). Returns the path."""
    from ptsed.core.files import atomic_write_text

    data = profile.to_dict() if isinstance(profile, Profile) else dict(profile)
    path = Path(path)
    atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return path


__all__ = [
    "DECODERS",
    "MEDIAN_GRID_S",
    "MIN_THRESHOLD",
    "OBJECTIVES",
    "PROFILE_FORMAT",
    "Profile",
    "load_profile",
    "save_profile",
]
