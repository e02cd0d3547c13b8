"""``ptsed.detect``: the detection loop for the command line and for users.

The stages run in one direction::

    inputs --score source--> frame scores --PostProcessor--> events --writers--> files
            (Predictor, ScoreReplay, ...)                          (ptsed.io.results)

A score source (:class:`ptsed.inference.source.ScoreSource`) yields frame scores only; a
:class:`ptsed.postprocess.pipeline.PostProcessor`, decided once by :meth:`PostProcessor.for_model`, turns
them into events; the writers write both. ``ptsed detect`` only translates its flags into a call of
:func:`detect`.

Example::

    import ptsed
    summary = ptsed.detect("recordings/", models="beats", output="out/", writers="tsv,scores")
    summary = ptsed.detect("out/frames/", postprocess={"threshold": 0.3})   # saved scores, no model
    for result in summary.results:
        print(result.name, len(result.events))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ptsed.core.errors import ConfigError
from ptsed.inference.batch import RunSummary, file_identity, run_batch
from ptsed.inference.types import FileResult
from ptsed.io.audio import AudioSource, list_audio_files
from ptsed.postprocess.pipeline import PostProcessor
from ptsed.postprocess.profile import Profile, load_profile

PathLike = str | os.PathLike
_STORED = {"threshold": ("thresholds", "--threshold"), "median_filter_s": ("median filter lengths", "--median-filter")}


def _sources(
    inputs: PathLike | Sequence[PathLike | AudioSource], extensions: Iterable[str] | None, recursive: bool
) -> list[AudioSource]:
    """The inputs as :class:`AudioSource` items (given ones are kept, the rest found on disk)."""
    items = [inputs] if isinstance(inputs, (str, os.PathLike, AudioSource)) else list(inputs)
    if items and all(isinstance(x, AudioSource) for x in items):
        return items  # type: ignore[return-value]
    return list_audio_files(items, extensions=extensions, recursive=recursive)  # type: ignore[arg-type]


def _score_source(
    inputs: Any,
    models: Any,
    scores: Any,
    upstream_chunking: bool,
    extensions: Iterable[str] | None,
    recursive: bool,
    predictor_options: Mapping[str, Any],
) -> tuple[Any, list[AudioSource], dict[str, Any]]:
    """(score source, its inputs, settings that identify its checkpoints)."""
    from ptsed.inference.predictor import Predictor

    if scores is None and models is None:  # saved scores: the inputs are NPZ files
        from ptsed.inference.replay import ScoreReplay, find_score_files

        paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
        files = find_score_files(paths, recursive=recursive)
        if files is None:
            raise ConfigError("give a model with --model NAME (see `ptsed models`)")
        return ScoreReplay(files, upstream_chunking=upstream_chunking or None), files, {}
    if scores is not None and models is not None:
        raise ConfigError("give models= or scores=, not both")
    source = scores
    if source is None:
        source = Predictor(models, upstream_chunking=upstream_chunking, **predictor_options)
    extra: dict[str, Any] = {}
    if isinstance(source, Predictor):
        extra = {"checkpoints": [file_identity(c) for c in source._checkpoints]}
    return source, _sources(inputs, extensions, recursive), extra


def detect(
    inputs: PathLike | Sequence[PathLike | AudioSource],
    *,
    models: Any = None,
    scores: Any = None,
    postprocess: PostProcessor | Mapping[str, Any] | None = None,
    profile: Profile | PathLike | None = None,
    writers: str | Sequence[str] = ("tsv",),
    output: PathLike | None = None,
    per_file: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    plot: bool = False,
    plot_top: int = 10,
    progress: bool = False,
    upstream_chunking: bool = False,
    extensions: Iterable[str] | None = None,
    recursive: bool = True,
    on_result: Callable[[FileResult], None] | None = None,
    log: Callable[[str], None] | None = None,
    refine: Callable[[PostProcessor, list[str]], tuple[PostProcessor, list[str]]] | None = None,
    **predictor_options: Any,
) -> RunSummary:
    """Detect sound events in ``inputs``: score source -> post-processing -> writers.

    Args:
        inputs: audio files, folders, globs, list files (``@files.txt``) or :class:`AudioSource` items; or,
            with neither ``models`` nor ``scores``, NPZ score files (or folders of them) that
            ``ptsed detect --format npz`` saved.
        models: what :class:`ptsed.inference.predictor.Predictor` takes (a zoo name, ``(name, checkpoint)``,
            an :class:`SEDModel`, or a list of these: an ensemble); ``predictor_options`` (``batch_size``,
            ``device``, ``precision``, ``window_s``, ``hop_s``, ``overlap_s``, ``stitch``, ``int8``,
            ``channels``) go to it.
        scores: any score source instead (:class:`ptsed.inference.source.ScoreSource`: a ``Predictor``
            built beforehand, a :class:`~ptsed.inference.replay.ScoreReplay`, your own).
        postprocess: a :class:`PostProcessor` (used as given), or its fields: then
            :meth:`PostProcessor.for_model` fills in the profile, the checkpoint's stored values and the
            defaults.
        profile: a post-processing profile (``ptsed tune``) or its file; below ``postprocess``'s
            ``threshold``/``median_filter_s``, above the checkpoint's.
        writers: output formats, a list or ``"tsv,scores"`` (:data:`ptsed.io.results.DETECT_WRITERS`).
        output: output folder; ``None`` writes nothing (the events are in the summary and ``on_result``).
        per_file, resume, overwrite, plot, plot_top, progress: as in :func:`ptsed.inference.batch.run_batch`.
        upstream_chunking: upstream's ``inference.py`` chunking (and its event order); with saved scores,
            ``True`` overrides what the files record.
        extensions, recursive: which files folders and globs give (:func:`ptsed.io.audio.list_audio_files`).
        on_result: called with every :class:`FileResult` (frame scores and events) as it is done.
        log: receives the run's notices (e.g. which settings came from the checkpoint).
        refine: ``(post-processor, model classes) -> (post-processor, reported classes)``, applied once the
            post-processor is decided and before any inference: a score transform (``--rollup``,
            ``--class-map``) or another decoder (``--decoder csebb``) goes in here; ``profile`` and the class
            names are then checked against the reported classes.

    Returns:
        A :class:`ptsed.inference.batch.RunSummary`; ``results`` holds the events of every input.

    Raises:
        ConfigError: bad settings, a folder in use or holding other settings; AudioError: missing inputs.
    """
    from ptsed.extras import require_outputs
    from ptsed.io.results import DETECT_WRITERS, parse_formats

    formats = parse_formats(writers, DETECT_WRITERS)
    require_outputs(formats, plot=plot, what="ptsed detect")
    if plot and output is None:
        raise ConfigError("--plot needs --output DIR")
    profile_name = "post-processing profile"
    if profile is not None and not isinstance(profile, Profile):
        profile_name = f"profile {profile!r}" if isinstance(profile, str) else f"profile {os.fspath(profile)!r}"
        profile = load_profile(profile)
    if predictor_options and models is None:
        raise ConfigError(f"{', '.join(predictor_options)}: options of a model run; give models= with them")
    source, sources, extra = _score_source(
        inputs, models, scores, upstream_chunking, extensions, recursive, predictor_options
    )
    labels = list(source.labels)
    if not isinstance(postprocess, PostProcessor):
        postprocess = PostProcessor.for_model(
            getattr(source, "models", ()), postprocess, profile=profile, upstream=source.upstream_chunking
        )
    if refine is not None:
        postprocess, labels = refine(postprocess, labels)
    if profile is not None and labels:
        profile.check_labels(labels, profile_name)
    if labels:
        postprocess.class_indices(labels)  # unknown --include/--exclude or per-class names: before inference
    if postprocess.from_checkpoint and log is not None:
        used = [_STORED[f] for f in _STORED if f in postprocess.from_checkpoint]
        log(
            f"using the per-class {' and '.join(u[0] for u in used)} stored in the checkpoint "
            f"(give {' / '.join(u[1] for u in used)} to override)"
        )
    return run_batch(
        source,
        sources,
        postprocess=postprocess,
        output_dir=output,
        formats=formats,
        task="detect",
        per_file=per_file,
        resume=resume,
        overwrite=overwrite,
        plot=plot,
        plot_top=plot_top,
        progress=progress,
        extra_settings=extra,
        on_result=on_result,
    )


__all__ = ["detect"]
