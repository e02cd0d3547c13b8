"""The small offline ``demo`` model shipped with ptsed.

``create_model("demo")`` loads it; ``ptsed detect FILE --model demo`` runs it without any download. It is a
frame_mn06 trained from random initialisation on synthetic 10 s soundscapes of 10 classes (AudioSet-strong
names) built from Debian-packaged sounds, to show that the pipeline works and that ptsed's training path
learns. It is NOT an AudioSet model and detects only its 10 classes; use the zoo models for real work.

Files (``ptsed/assets/demo/``): the checkpoint (ptsed format, fp16 weights), ``ATTRIBUTION.tsv`` (every
sound clip in its training and validation data: Debian package, source file, licence) and ``README.md``.
Retrain it with ``INSTALL=1 bash recipes/demo_train.sh`` (see ``docs/training.md``).

``python -m ptsed.release.demo export MODEL DATA OUT`` (:mod:`ptsed.release.demo`) turns a trained checkpoint
into these files.
"""

from __future__ import annotations

from pathlib import Path

from ptsed.core.errors import CheckpointError

DEMO_FILENAME = "demo_frame_mn06_synthetic10.pt"
"""The checkpoint: a demo frame_mn06 trained on synthetic soundscapes of 10 classes."""

DEMO_NAME = "demo-frame_mn06-synthetic-10class"


DEMO_CARD = "demo.json"
"""What ``ptsed models`` lists about the demo without loading it: ``arch``, ``labels`` and the ``sha256`` of the
checkpoint it describes (written by :func:`ptsed.release.demo.export_demo`)."""


def demo_card(checkpoint: Path) -> dict | None:
    """The demo card beside ``checkpoint`` when it describes that very file (same sha256), else ``None``."""
    import json

    from ptsed.hub.download import sha256_file

    try:
        card = json.loads((checkpoint.parent / DEMO_CARD).read_text(encoding="utf-8"))
        digest = sha256_file(checkpoint)
    except (OSError, ValueError):
        return None
    ok = isinstance(card, dict) and card.get("sha256") == digest and isinstance(card.get("labels"), list)
    return card if ok and isinstance(card.get("arch"), str) else None


def write_demo_card(checkpoint: Path, arch: str, labels: list[str]) -> Path:
    """Write the card of ``checkpoint`` (see :data:`DEMO_CARD`) beside it."""
    import json

    from ptsed.core.files import atomic_write_text
    from ptsed.hub.download import sha256_file

    card = {"arch": arch, "labels": list(labels), "sha256": sha256_file(checkpoint)}
    path = checkpoint.parent / DEMO_CARD
    atomic_write_text(path, json.dumps(card, indent=1) + "\n")
    return path


def demo_dir() -> Path:
    """``ptsed/assets/demo`` inside the installed package."""
    return Path(__file__).resolve().parent.parent / "assets" / "demo"


def demo_checkpoint_path() -> Path:
    """Path of the shipped demo checkpoint.

    Raises:
        CheckpointError: the file is missing from this installation.
    """
    path = demo_dir() / DEMO_FILENAME
    if not path.is_file():
        raise CheckpointError(
            f"the demo model {path} is missing from this installation; rebuild it with "
            "`INSTALL=1 bash recipes/demo_train.sh` (docs/training.md)"
        )
    return path
