"""The backend owns shape handling: a graph Dynamo traced with symbolic sizes is specialised per
concrete shape, so the quick-start line (no ``dynamic=False``) keeps caching through batch,
resolution and CFG changes; the live shapes per compiled code are bounded (least recently used
freed first); and ``stats()`` says how many shapes live and what ran uncached and why."""
from __future__ import annotations

import warnings

import pytest
import torch

from architectures import ArchSpec, TinyDiT, timesteps
from oracle import ReferenceToCa
from toca_compile import ToCa, ToCaConfig, ToCaWarning

SPEC = ArchSpec(depth=2, width=16, heads=2, batch=2, tokens=12, cross_attn=True, text_tokens=3)
CONFIG = ToCaConfig(interval=3, ratio=0.4, score="random", spatial_bonus=0.0, compiler="eager")
TOL = dict(rtol=1e-6, atol=1e-6)
STEPS = 7


def inputs(batch: int, tokens: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, tokens, SPEC.width, generator=g), torch.randn(batch, SPEC.text_tokens, SPEC.width,
                                                                            generator=g)


def check_generation(fast, model, batch: int, tokens: int) -> None:
    oracle = ReferenceToCa(model, CONFIG)
    x, text = inputs(batch, tokens)
    with torch.no_grad():
        for i, t in enumerate(timesteps(SPEC, STEPS)):
            t = t[:1].expand(batch).contiguous()
            torch.testing.assert_close(fast(x, t, text), oracle(x, t, text), **TOL,
                                       msg=lambda m: f"batch {batch}, {tokens} tokens, step {i}: {m}")


SHAPES = [(2, 12), (3, 12), (1, 12), (2, 16), (2, 12), (3, 20)]  # CFG off (batch 1), resolutions


@pytest.mark.parametrize("dynamic", [None, True])
def test_the_quick_start_line_keeps_caching_through_shape_changes(dynamic):
    """``torch.compile(model, backend=toca.backend)``: Dynamo recompiles with symbolic sizes at the
    first change; every shape must still cache, match the eager rule, and recompile nothing once
    each shape has been seen."""
    model = TinyDiT(SPEC)
    toca = ToCa(CONFIG)
    fast = torch.compile(model, backend=toca.backend, dynamic=dynamic)
    for batch, tokens in SHAPES:
        before = toca.stats().partial_steps
        check_generation(fast, model, batch, tokens)
        assert toca.stats().partial_steps - before == 4, (batch, tokens)
    assert any(entry.symbolic for entry in toca.graphs)
    assert not toca.fallbacks and toca.stats().uncached_calls == 0
    torch.compiler.set_stance("fail_on_recompile")
    try:
        for batch, tokens in SHAPES:
            check_generation(fast, model, batch, tokens)
    finally:
        torch.compiler.set_stance("default")


def test_live_shapes_are_bounded_least_recently_used_first():
    model = TinyDiT(SPEC)
    toca = ToCa(CONFIG.replace(max_shapes=2))
    fast = torch.compile(model, backend=toca.backend, dynamic=True)
    sizes = {}
    for tokens in (12, 16, 20):
        check_generation(fast, model, 2, tokens)
        sizes[tokens] = toca.stats().cache_bytes
    stats = toca.stats()
    assert stats.shapes == 2 and stats.shapes_evicted == 1
    one_shape_12 = sizes[12]
    assert stats.cache_bytes < sizes[12] + sizes[16] + sizes[20] - one_shape_12  # 12 tokens were freed
    check_generation(fast, model, 2, 12)  # comes back: specialised again, correct again
    stats = toca.stats()
    assert stats.shapes == 2 and stats.shapes_evicted == 2


def test_static_recompiles_share_the_bound_and_warn_before_dynamos_limit():
    """With ``dynamic=False`` each shape is a new Dynamo graph of the same code: they share the
    max_shapes budget, and one warning says what happens at Dynamo's recompile limit."""
    model = TinyDiT(SPEC)
    toca = ToCa(CONFIG.replace(max_shapes=2))
    fast = torch.compile(model, backend=toca.backend, dynamic=False)
    with warnings.catch_warnings(record=True) as caught, torch._dynamo.config.patch(recompile_limit=4):
        warnings.simplefilter("always")
        for tokens in (12, 13, 14, 15):
            check_generation(fast, model, 2, tokens)
    ours = [str(w.message) for w in caught if issubclass(w.category, ToCaWarning)]
    assert len(ours) == 1 and "recompile limit (4)" in ours[0] and "dynamic=None" in ours[0]
    stats = toca.stats()
    assert len(toca.graphs) == 4 and stats.shapes == 2 and stats.shapes_evicted == 2


def test_uncached_calls_are_counted_with_their_reason():
    model = TinyDiT(SPEC)
    toca = ToCa(CONFIG)
    fast = torch.compile(model, backend=toca.backend)
    x, text = inputs(2, 12)
    t = timesteps(SPEC, 2)
    with pytest.warns(ToCaWarning, match="gradients are enabled"):
        out = fast(x, t[0], text)  # grad mode: a plain graph
    out.sum().backward()
    with torch.no_grad():
        fast(x, t[0], text)
        fast(x, t[1], text)
    stats = toca.stats()
    assert stats.uncached == {"gradients are enabled; caching is for inference (run under torch.no_grad())": 1}
    assert stats.uncached_calls == 1 and stats.calls == 2 and stats.partial_steps == 1
    assert "uncached x1: gradients are enabled" in str(stats)
