"""``ptsed download``: fetch released checkpoints (and their label vocabularies) into the cache, verified."""

from __future__ import annotations

import argparse
import sys

EPILOG = """examples:
  ptsed download beats                   BEATs, AudioSet-strong stage (= beats.as_strong)
  ptsed download beats.ssl m2d.as_weak   several at once
  ptsed download all                     every checkpoint of the zoo
  ptsed download --verify                re-hash and re-check every cached checkpoint

Files go to $PTSED_HOME (else $XDG_CACHE_HOME/ptsed, else ~/.cache/ptsed). Mirrors:
$PTSED_CHECKPOINT_BASE_URL, $PTSED_LABELS_BASE_URL."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "download",
        help="download and verify checkpoints into the cache",
        description="Download released checkpoints and their label vocabularies into the cache, check their "
        "layout and record their sha256. Files already cached are reused.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="arch or arch.tag (see `ptsed models`), or 'all'")
    p.add_argument(
        "--verify",
        action="store_true",
        help="re-hash cached files and re-check their layout (corrupted ones are downloaded again); without "
        "NAME: every cached checkpoint",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptsed.core.errors import ConfigError
    from ptsed.hub.cache import cache_dir
    from ptsed.hub.fetch import is_cached
    from ptsed.models.zoo import PRETRAINED, resolve_names

    if args.names:
        specs = resolve_names(args.names)
    elif args.verify:
        specs = [s for s in PRETRAINED.values() if is_cached(s)]
        if not specs:
            print(f"no checkpoints in the cache ({cache_dir()})")
            return 0
    else:
        raise ConfigError("name at least one checkpoint (e.g. `ptsed download beats`) or 'all'; see `ptsed models`")
    print(f"cache: {cache_dir()}")
    from ptsed.models.layout import fetch_many  # torch: only to check the files' layouts

    results = fetch_many(specs, verify=args.verify, progress=not args.quiet)
    for res in results:
        if res.ok:
            line = f"{res.name}: {res.path}"
            if res.labels is not None:
                line += f" (labels: {res.labels})"
            print(line)
    failed = [r for r in results if not r.ok]
    for res in failed:
        print(f"{res.name}: FAILED: {res.error}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(results)} checkpoints failed", file=sys.stderr)
        return 1
    return 0
