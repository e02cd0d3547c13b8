"""The AudioSet ontology: parents, children, ancestors, names and MIDs of AudioSet's classes.

The ontology is Google's ``ontology.json`` (GitHub audioset/ontology, commit d417d32, CC BY-SA 4.0), shipped
unmodified in ``ptsed/assets/labels`` (its README names source and licence). It has 632 classes; a class can
have several parents. Every function takes a class as its MID (``"/m/0bt9lr"``) or its name, matched exactly,
else case-insensitively (``"dog"``). Names are those of ptsed's label vocabularies where they name a class
(``ptsed.hub.labels``: the 447 strong, 527 weak and 416 eval classes), else the ontology's; the vocabularies'
MIDs are the link, so ``"Ducks, geese, waterfowl"`` (the strong name) and ``"Duck"`` (the ontology's) are
one class; ``"Brief tone"``, whose MID differs (``/t/dd00138`` in the vocabularies, ``/t/dd000138`` in the
ontology), is linked by its name. 30 of the 447 strong classes (e.g. ``"Alert"``, ``"Refrigerator"``) are
not in the ontology and have neither parents nor children.

Example::

    from ptsed import ontology

    ontology.ancestors("Bark")          # ['Dog', 'Domestic animals, pets', 'Animal']
    ontology.children("Dog")            # ['Bark', 'Yip', 'Howl', 'Bow-wow', 'Growling', 'Whimper (dog)', 'Bay']
    ontology.mid("Dog"), ontology.name("/m/0bt9lr")
    ontology.search("bell")             # every class whose name contains "bell"
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

from ptsed.core.errors import ConfigError

ONTOLOGY_FILE = "ontology.json"
SOURCE = "GitHub audioset/ontology, commit d417d32 (Google), CC BY-SA 4.0"


class Ontology:
    """Parent/child relations of AudioSet classes, by MID.

    Args:
        nodes: the entries of ``ontology.json`` (``id``, ``name``, ``child_ids``, optionally ``restrictions``).
        names: MID -> display name of extra classes or preferred names (a label vocabulary's); these win over
            the ontology's names, which stay accepted as input.
    """

    def __init__(self, nodes: Iterable[dict], names: dict[str, str] | None = None) -> None:
        nodes = list(nodes)
        self._name: dict[str, str] = {n["id"]: n["name"] for n in nodes}
        self._children: dict[str, list[str]] = {n["id"]: list(n.get("child_ids", [])) for n in nodes}
        self._restrictions: dict[str, list[str]] = {n["id"]: list(n.get("restrictions", [])) for n in nodes}
        self._parents: dict[str, list[str]] = {}
        for parent, kids in self._children.items():
            for kid in kids:
                self._parents.setdefault(kid, []).append(parent)
        lookup = {name: mid for mid, name in self._name.items()}
        folded = {name.casefold(): mid for name, mid in lookup.items()}
        self._alias: dict[str, str] = {}
        for mid, name in (names or {}).items():
            if mid not in self._children and name.casefold() in folded:  # one class, two MIDs ("Brief tone")
                self._alias[mid] = mid = folded[name.casefold()]
            self._name[mid] = name
            lookup[name] = mid
        self._by_name = lookup
        self._by_folded = {name.casefold(): mid for name, mid in lookup.items()}

    # -- names and MIDs ---------------------------------------------------------------------------------
    @property
    def mids(self) -> list[str]:
        """Every known MID (the ontology's and the vocabularies')."""
        return list(self._name)

    def find(self, cls: str) -> str | None:
        """The MID of a class given as MID or name (exact, else case-insensitive), or ``None``."""
        if cls in self._alias:
            return self._alias[cls]
        if cls in self._name:
            return cls
        return self._by_name.get(cls) or self._by_folded.get(cls.casefold())

    def mid(self, cls: str) -> str:
        """The MID of a class given as MID or name (the ontology's MID where it has the class).

        Raises:
            ConfigError: an unknown class (the message suggests the closest names).
        """
        found = self.find(cls)
        if found is None:
            from ptsed.core.names import did_you_mean

            raise ConfigError(f"unknown AudioSet class {cls!r}{did_you_mean(cls, list(self._by_name))}")
        return found

    def name(self, cls: str) -> str:
        """The display name of a class given as MID or name."""
        return self._name[self.mid(cls)]

    def in_ontology(self, cls: str) -> bool:
        """True when the class has a place in the ontology (31 strong classes have none)."""
        return self.mid(cls) in self._children

    def restrictions(self, cls: str) -> list[str]:
        """The ontology's restrictions of a class (``"abstract"``, ``"blacklist"``), or ``[]``."""
        return list(self._restrictions.get(self.mid(cls), []))

    # -- relations (names out) --------------------------------------------------------------------------
    def children(self, cls: str) -> list[str]:
        """Names of the direct children, in the ontology's order."""
        return [self._name[m] for m in self._children.get(self.mid(cls), [])]

    def parents(self, cls: str) -> list[str]:
        """Names of the direct parents (a class can have several)."""
        return [self._name[m] for m in self._parents.get(self.mid(cls), [])]

    def ancestors(self, cls: str) -> list[str]:
        """Names of all ancestors, nearest first (breadth-first over parents), each once."""
        return [self._name[m] for m in self.ancestor_mids(self.mid(cls))]

    def descendants(self, cls: str) -> list[str]:
        """Names of all descendants, nearest first, each once."""
        return [self._name[m] for m in self._walk(self.mid(cls), self._children)]

    def ancestor_mids(self, mid: str) -> list[str]:
        """MIDs of all ancestors of ``mid``, nearest first."""
        return self._walk(mid, self._parents)

    def search(self, text: str) -> list[str]:
        """Names of the classes whose name (or ontology name) contains ``text``, case-insensitive, sorted."""
        needle = text.casefold()
        hits = {self._name[mid] for name, mid in self._by_name.items() if needle in name.casefold()}
        return sorted(hits, key=str.casefold)

    @staticmethod
    def _walk(start: str, edges: dict[str, list[str]]) -> list[str]:
        out: list[str] = []
        seen = {start}
        frontier = [start]
        while frontier:
            nxt = []
            for node in frontier:
                for other in edges.get(node, []):
                    if other not in seen:
                        seen.add(other)
                        out.append(other)
                        nxt.append(other)
            frontier = nxt
        return out


def _vocabulary_names() -> dict[str, str]:
    """MID -> display name from the shipped vocabularies (strong names win over weak and eval names)."""
    from ptsed.core.assets import SHIPPED_DIR, VOCAB_FILES

    out: dict[str, str] = {}
    for key in ("audioset_strong_eval_416", "audioset_weak_527", "audioset_strong_447"):  # later ones win
        path = SHIPPED_DIR / VOCAB_FILES[key]
        if path.is_file():
            with open(path, newline="", encoding="utf-8") as fh:
                out.update({r["mid"]: r["display_name"] for r in csv.DictReader(fh, delimiter="\t")})
    return out


def load(path: str | Path | None = None) -> Ontology:
    """The ontology from ``path`` (an ``ontology.json``), by default the shipped one (read once)."""
    if path is None:
        return _default()
    return _read(Path(path), {})


@cache
def _default() -> Ontology:
    from ptsed.core.assets import shipped_file

    return _read(shipped_file(ONTOLOGY_FILE), _vocabulary_names())


def _read(path: Path, names: dict[str, str]) -> Ontology:
    try:
        nodes = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"the AudioSet ontology {str(path)!r} is missing (it ships with ptsed)") from None
    except ValueError as err:
        raise ConfigError(f"{str(path)!r} is not the AudioSet ontology's JSON ({err})") from None
    return Ontology(nodes, names)


def mid(cls: str) -> str:
    """The MID of a class (name or MID); see :meth:`Ontology.mid`."""
    return _default().mid(cls)


def name(cls: str) -> str:
    """The display name of a class (MID or name)."""
    return _default().name(cls)


def children(cls: str) -> list[str]:
    """Names of a class's direct children."""
    return _default().children(cls)


def parents(cls: str) -> list[str]:
    """Names of a class's direct parents."""
    return _default().parents(cls)


def ancestors(cls: str) -> list[str]:
    """Names of all of a class's ancestors, nearest first."""
    return _default().ancestors(cls)


def descendants(cls: str) -> list[str]:
    """Names of all of a class's descendants, nearest first."""
    return _default().descendants(cls)


def search(text: str) -> list[str]:
    """Names of the classes whose name contains ``text`` (case-insensitive)."""
    return _default().search(text)


__all__: Sequence[str] = [
    "Ontology",
    "ancestors",
    "children",
    "descendants",
    "load",
    "mid",
    "name",
    "parents",
    "search",
]
