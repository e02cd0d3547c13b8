"""The zoo as a table (``ptsed models``): one row per checkpoint, with its cache state and measured cost.

Without profiling no torch is imported: the zoo table is torch-free and the shipped demo is described by its
card (:func:`ptsed.models.demo.demo_card`).
"""

from __future__ import annotations

from typing import Any


def zoo_table(profile: bool = True) -> list[dict[str, Any]]:
    """One dict per pretrained checkpoint: name, arch, tag, title, stage, classes, cached,
    params, macs_per_10s (``None`` when not measured), license, url, filename."""
    from ptsed.hub.fetch import checkpoint_path, is_cached
    from ptsed.models.zoo import PRETRAINED

    if profile:
        from ptsed.models import profile as prof

    rows = []
    for spec in PRETRAINED.values():
        row: dict[str, Any] = {
            "name": spec.name,
            "arch": spec.arch.name,
            "tag": spec.tag,
            "title": spec.arch.title,
            "stage": spec.stage,
            "classes": spec.head.n_strong,
            "cached": is_cached(spec),
            "params": None,
            "macs_per_10s": None,
            "license": spec.license,
            "url": spec.url,
            "filename": spec.filename,
            "path": str(checkpoint_path(spec)),
        }
        if profile:
            try:
                p = prof.profile_model(spec.name, 10.0)
            except Exception as err:  # a model under construction must not break the listing
                row["profile_error"] = f"{err.__class__.__name__}: {err}"
            else:
                row["params"], row["macs_per_10s"] = p.params, p.macs
        rows.append(row)
    demo = demo_row(profile)
    if demo is not None:
        rows.append(demo)
    return rows


def demo_row(profile: bool = True, input_s: float = 10.0) -> dict[str, Any] | None:
    """The :func:`zoo_table` row of the shipped ``demo`` model, measured on its checkpoint (``None`` when this
    installation lacks it)."""
    from ptsed.core.errors import CheckpointError
    from ptsed.models.demo import demo_card, demo_checkpoint_path

    try:
        path = demo_checkpoint_path()
    except CheckpointError:
        return None
    card = None if profile else demo_card(path)
    if card is None:  # no card for this file (or a measurement is asked for): load the model
        from ptsed.models.factory import create_model

        model = create_model("demo")
        card = {"arch": model.arch, "labels": list(model.labels or [])}
    row: dict[str, Any] = {
        "name": "demo",
        "arch": card["arch"],
        "tag": "",
        "title": f"{card['arch']} trained offline on synthetic soundscapes of {len(card['labels'])} classes",
        "stage": "demo",
        "classes": len(card["labels"]),
        "cached": True,  # ships inside the package
        "params": None,
        "macs_per_10s": None,
        "license": "see ATTRIBUTION.tsv",
        "url": "",
        "filename": path.name,
        "path": str(path),
    }
    if profile:
        import torch

        from ptsed.models import profile as prof

        wave = torch.zeros(1, round(input_s * model.sample_rate))
        row["params"], row["macs_per_10s"] = prof.count_parameters(model), prof.count_macs(model, wave)
    return row
