"""Evaluation of sound event detection: PSDS1/PSDS2, segment-based pAUROC and F1, collar-based F1, frame mAP.

- :mod:`ptsed.evaluation.protocol`: :func:`~ptsed.evaluation.protocol.evaluate` and the protocols
  (``audioset-strong``: upstream's, behind the paper's numbers).
- :mod:`ptsed.evaluation.sources`: where scores come from (score files, detections, a model on audio).
- :mod:`ptsed.evaluation.metrics`: the metrics on sed_scores_eval, streamed class by class.
- :mod:`ptsed.evaluation.scores`: the class-major score store (memory-mapped when large).
- :mod:`ptsed.io.annotations`: readers of strong labels, detections and durations; clip-name rules.
- :mod:`ptsed.evaluation.report`: ``summary.json``, ``per_class.csv``, ``psd_roc.png``.
- :mod:`ptsed.evaluation.synthetic`: a synthetic evaluation set (``python -m ptsed.evaluation.synthetic``).

The command line is ``ptsed evaluate`` (see ``docs/evaluation.md``).
"""
