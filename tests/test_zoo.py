"""The zoo table: names, aliases, errors."""

from __future__ import annotations

import pytest

import ptsed
from ptsed.core.errors import ConfigError
from ptsed.models.zoo import ARCHS, PRETRAINED, get_pretrained_spec, split_name


def test_every_upstream_checkpoint_has_a_name() -> None:
    transformers = ["beats", "atst_frame", "fpasst", "asit", "m2d"]
    for arch in transformers:
        for tag in ("ssl", "as_weak", "as_strong"):
            assert f"{arch}.{tag}" in PRETRAINED
    for arch in ("frame_mn06", "frame_mn10"):
        assert f"{arch}.as_strong" in PRETRAINED and f"{arch}.ssl" not in PRETRAINED
    assert len(PRETRAINED) == 17
    assert set(ptsed.list_models()) == set(ARCHS)
    assert "demo" in ptsed.list_pretrained()


def test_bare_name_means_as_strong() -> None:
    assert split_name("beats") == ("beats", "as_strong")
    spec = get_pretrained_spec("fpasst")
    assert spec.name == "fpasst.as_strong" and spec.filename == "fpasst_strong_1.pt"
    assert spec.url.endswith("/v0.0.1/fpasst_strong_1.pt")
    assert get_pretrained_spec("atst_frame.as_weak").filename == "ATST-F_weak.pt"
    assert get_pretrained_spec("m2d.ssl").head.n_strong == 0
    assert get_pretrained_spec("beats.as_weak").head.n_strong == 527


def test_entries_carry_metadata() -> None:
    for spec in PRETRAINED.values():
        assert spec.url.startswith("https://") and spec.license and spec.arch.reference
        assert spec.arch.frontend and spec.stage


@pytest.mark.parametrize("name", ["resnet", "beats.imagenet", "frame_mn06.ssl"])
def test_unknown_names_are_clear_errors(name: str) -> None:
    with pytest.raises(ConfigError, match="model"):
        ptsed.create_model(name, pretrained=False)


def test_the_zoo_table_reads_without_torch() -> None:
    """``ptsed download`` / ``ptsed models --no-profile`` read the table: importing it must not load torch."""
    import subprocess
    import sys

    code = "import sys, ptsed.models.zoo as z; assert z.PRETRAINED and 'torch' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_listed_name_builds_or_resolves() -> None:
    """Every name of ``list_pretrained()`` resolves: zoo names to a spec, the ``demo`` alias to its shipped
    model (its module is imported by path in the factory, so moving it must not drop it silently)."""
    from ptsed.models.factory import create_model
    from ptsed.models.zoo import RESERVED_ALIASES, get_pretrained_spec

    names = ptsed.list_pretrained()
    assert "demo" in names
    for name in names:
        if name in RESERVED_ALIASES:
            assert create_model(name).num_classes > 0
        else:
            assert get_pretrained_spec(name).name == name


def test_front_end_description_is_the_front_ends_own() -> None:
    """The zoo's front-end text is not typed in: it is the front-end's class and ``extra_repr``."""
    arch = ARCHS["frame_mn06"]
    frontend, _ = arch.build_parts()
    assert arch.frontend == f"{type(frontend).__name__}({frontend.extra_repr()})"
    assert "n_mels=128" in arch.frontend and "preemphasis=0.97" in arch.frontend
