"""The size-balanced split of inputs over ranks (ptsed.inference.distributed)."""

from __future__ import annotations

import pytest

from ptsed.core.errors import ConfigError
from ptsed.inference.distributed import env_rank_info, split_by_size


def test_every_item_goes_to_exactly_one_rank_and_loads_are_balanced() -> None:
    sizes = [600.0, 10, 10, 10, 300, 290, 5, 5]
    parts = split_by_size(sizes, 2)
    flat = sorted(i for p in parts for i in p)
    assert flat == list(range(len(sizes)))
    loads = [sum(sizes[i] for i in p) for p in parts]
    assert max(loads) - min(loads) <= 10.0  # within the largest of the small items
    assert parts == [sorted(p) for p in parts]


def test_one_long_file_does_not_share_a_rank_with_the_rest_when_that_balances() -> None:
    sizes = [100.0] + [10.0] * 10
    loads = [sum(sizes[i] for i in p) for p in split_by_size(sizes, 2)]
    assert sorted(loads) == [100.0, 100.0]


def test_more_ranks_than_items_leaves_ranks_empty() -> None:
    assert split_by_size([1.0, 2.0], 4) == [[1], [0], [], []]


def test_env_rank_info(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert env_rank_info() is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert env_rank_info() is None
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    info = env_rank_info()
    assert info is not None and (info.rank, info.world, info.local_rank, info.is_main) == (2, 4, 0, False)
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(ConfigError, match="outside WORLD_SIZE"):
        env_rank_info()
