"""``ptsed models``: the model zoo with measured size and cost, stage, licence and cache state."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models",
        help="list the model zoo",
        description="List every pretrained checkpoint: parameters and MACs per 10 s (measured by building "
        "the model), training stage, whether its file is cached, and its licence.",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.add_argument("--no-profile", action="store_true", help="skip measuring parameters and MACs (faster)")
    p.set_defaults(func=run)


def _si(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`ptsed.models.table.zoo_table` as an aligned text table."""
    header = ["name", "params", "MACs/10s", "stage", "cached", "licence"]
    body = [
        [
            r["name"],
            _si(r["params"]),
            _si(r["macs_per_10s"]),
            r["stage"],
            "yes" if r["cached"] else "no",
            r["license"],
        ]
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=True)]
    right = {1, 2}
    lines = [
        "  ".join(
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in [header, *body]
    ]
    return "\n".join(line.rstrip() for line in lines)


def run(args: argparse.Namespace) -> int:
    import json

    from ptsed.models.table import zoo_table

    rows = zoo_table(profile=not args.no_profile)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(format_table(rows))
    print(
        "\nparams and MACs (multiply-accumulates of one 10 s clip) are measured from the code; "
        "`ptsed download NAME` caches a checkpoint"
    )
    return 0
