"""Assertions shared by tests that claim caching happened."""
from __future__ import annotations

from toca_compile import ToCa

#: the one reason a graph may run uncached in a cached model: it holds no transformer block
NOTHING_TO_CACHE = "no residual attention or MLP branch was found in this graph"


def assert_caching_active(toca: ToCa, *, partial: bool = False) -> None:
    """The graphs really ran through the rewritten variants: no graph broken by an internal
    error, no uncached call except graphs with nothing to cache, at least one cached call (and
    with ``partial``, at least one partial step)."""
    broken = [(entry.index, entry.broken) for entry in toca.graphs if entry.broken]
    assert not broken, f"caching disabled after an internal error: {broken}"
    stats = toca.stats()
    assert set(stats.uncached) <= {NOTHING_TO_CACHE}, f"uncached calls: {stats.uncached}"
    assert stats.calls > 0, "no call ran a cached variant"
    if partial:
        assert stats.partial_steps > 0, "no partial step ran"
