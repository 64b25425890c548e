"""State is bounded and releasable: no reference to the user's weights or inputs outlives the
model, caches go with the model, with ``torch._dynamo.reset()`` and with ``remove``; memory is
flat over many generations; nothing of one generation leaks into the next; a compiled model and
a ``ToCa`` can be saved and copied."""
from __future__ import annotations

import copy
import gc
import io
import weakref

import pytest
import torch

from architectures import ArchSpec, TinyDiT, make_inputs, timesteps
from oracle import ReferenceToCa
from toca_compile import ToCa, ToCaConfig, default_toca, toca_backend

SPEC = ArchSpec(depth=2, width=16, heads=2, batch=2, tokens=12, cross_attn=True, text_tokens=3)
CONFIG = ToCaConfig(interval=3, ratio=0.4, score="random", spatial_bonus=0.0, compiler="eager")


def run(fast, spec=SPEC, steps=5, seed=0):
    x, text = make_inputs(spec, seed)
    with torch.no_grad():
        return [fast(x, t, text) for t in timesteps(spec, steps)]


@pytest.mark.parametrize("compiler, shared", [
    ("eager", False),
    pytest.param("inductor", False, marks=pytest.mark.inductor),
    pytest.param("inductor", True, marks=pytest.mark.inductor),  # the default ToCa compiles with Inductor
], ids=["own-ToCa-eager", "own-ToCa-inductor", "toca_backend"])
def test_weights_are_freed_with_the_model_and_caches_with_the_reset(compiler, shared):
    model = TinyDiT(SPEC)
    toca = default_toca() if shared else ToCa(CONFIG.replace(compiler=compiler))
    fast = torch.compile(model, backend=toca_backend if shared else toca.backend)
    run(fast)
    weight = weakref.ref(model.blocks[0].to_qkv.weight)
    assert toca.stats().cache_bytes > 0
    del model, fast
    gc.collect()
    assert weight() is None, "the model's weights outlived it"
    assert toca.stats().cache_bytes == 0, "caches of a freed model were kept"
    torch._dynamo.reset()
    gc.collect()
    assert toca.graphs == [] and toca.stats().shapes == 0


def test_memory_is_flat_over_200_generations():
    model = TinyDiT(SPEC)
    toca = ToCa(CONFIG)
    fast = torch.compile(model, backend=toca.backend)
    x, text = make_inputs(SPEC)
    ts = timesteps(SPEC, 4)

    def generations(n):
        with torch.no_grad():
            for _ in range(n):
                for t in ts:
                    fast(x, t, text)

    generations(10)
    gc.collect()
    before = toca.stats()
    tensors_before = sum(isinstance(o, torch.Tensor) for o in gc.get_objects())
    generations(190)
    gc.collect()
    after = toca.stats()
    tensors_after = sum(isinstance(o, torch.Tensor) for o in gc.get_objects())
    assert after.generations == 200 and after.partial_steps == 200 * 2
    assert after.cache_bytes == before.cache_bytes and after.shapes == before.shapes
    assert after.variants_compiled == before.variants_compiled
    assert tensors_after == tensors_before
    assert len(toca.summary().generations) == 16  # the summary keeps the latest 16


def test_taylorseer_carries_no_nan_or_inf_into_the_next_generation():
    """inf in one generation's caches times a zero difference weight gave NaN in the next."""
    config = CONFIG.replace(mode="taylorseer", taylor_order=2)
    model = TinyDiT(SPEC)
    toca = ToCa(config)
    fast = torch.compile(model, backend=toca.backend)
    x, text = make_inputs(SPEC)
    bad = x.clone()
    bad[0, 0, 0] = float("inf")
    with torch.no_grad():
        for t in timesteps(SPEC, 7):
            fast(bad, t, text)  # a generation that overflows
        oracle = ReferenceToCa(model, config)
        for i, t in enumerate(timesteps(SPEC, 7)):
            got = fast(x, t, text)
            assert torch.isfinite(got).all(), f"step {i}"
            torch.testing.assert_close(got, oracle(x, t, text), rtol=1e-6, atol=1e-6)


def test_a_compiled_model_and_a_toca_can_be_saved_and_copied_after_use():
    model = TinyDiT(SPEC)
    toca = ToCa(CONFIG)
    fast = torch.compile(model, backend=toca.backend)
    expected = run(fast)
    toca_copy = copy.deepcopy(toca)
    assert toca_copy.config == toca.config and toca_copy.stats().steps == 0
    buffer = io.BytesIO()
    torch.save(fast, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    for clone in (loaded, copy.deepcopy(fast)):
        torch._dynamo.reset()
        for got, want in zip(run(clone), expected):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_release_frees_every_cache_and_the_next_call_starts_afresh():
    model = TinyDiT(SPEC)
    toca = ToCa(CONFIG)
    fast = torch.compile(model, backend=toca.backend)
    expected = run(fast)
    toca.release()
    assert toca.stats().cache_bytes == 0 and toca.stats().shapes == 0
    oracle = ReferenceToCa(model, CONFIG)
    x, text = make_inputs(SPEC)
    with torch.no_grad():
        for got, t in zip(run(fast), timesteps(SPEC, 5)):
            torch.testing.assert_close(got, oracle(x, t, text), rtol=1e-6, atol=1e-6)
    assert len(expected) == 5
