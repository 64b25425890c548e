"""Text keys/values cached per generation (``ToCaConfig.constant_kv``): cross-attention's
keys and values, computed from the text only, are read from a cache while the text is provably
the same tensor, unchanged, in the same generation and branch; else recomputed and the cache
refilled. Exact: every output equals the model's without the cache (and, at interval 1, the
plain model's)."""
from __future__ import annotations

import torch

from architectures import ArchSpec, TinyDiT, make_inputs, timesteps
from host_reads import host_reads
from toca_compile import ToCa, ToCaConfig

SPEC = ArchSpec(depth=2, width=16, heads=2, batch=2, tokens=12, cross_attn=True, text_tokens=3)
CONFIG = ToCaConfig(interval=3, ratio=0.4, score="random", spatial_bonus=0.0, compiler="eager")
TOL = dict(rtol=1e-6, atol=1e-6)
STEPS = 6


def run(model, config, x, texts, steps=STEPS, generations=1, between=None, reads=None):
    """Outputs of ``generations`` generations of ``steps`` steps; the text of step i is
    ``texts(i)``; ``between(i)`` runs before step i (in-place changes). Returns (outs, stats).
    ``reads``: a list that gets the host reads of tensor data of the last generation, which
    must run without a Dynamo recompile."""
    toca = ToCa(config)
    fast = torch.compile(model, backend=toca.backend)
    ts = timesteps(SPEC, steps)
    outs = []
    with torch.no_grad():
        for g in range(generations):
            strict = reads is not None and g == generations - 1
            if strict:
                torch.compiler.set_stance("fail_on_recompile")
            try:
                with host_reads() as seen, toca.generation(steps=steps):
                    for i, t in enumerate(ts):
                        if between is not None:
                            between(i)
                        toca.step(i)
                        outs.append(fast(x, t, texts(i)).clone())
            finally:
                if strict:
                    torch.compiler.set_stance("default")
            if strict:
                reads.extend(seen)
    return outs, toca.stats()


def plain(model, x, texts, steps=STEPS):
    with torch.no_grad():
        return [model(x, t, texts(i)) for i, t in enumerate(timesteps(SPEC, steps))]


def test_same_text_reads_the_cache_at_interval_one_and_equals_the_plain_model():
    """(a) The same text tensor every step, every step full: the first step of each generation
    fills the cache, every later one reads it (once compiled: no host read of tensor data), and
    each output equals the plain model's."""
    model = TinyDiT(SPEC).eval()
    x, text = make_inputs(SPEC)
    reads: list = []
    outs, stats = run(model, CONFIG.replace(interval=1), x, lambda i: text, generations=2, reads=reads)
    assert reads == []
    assert stats.constants_filled == 2 and stats.constants_read == 2 * (STEPS - 1)
    for got, want in zip(outs, 2 * plain(model, x, lambda i: text)):
        torch.testing.assert_close(got, want, **TOL)


def test_same_text_with_partial_steps_equals_the_uncached_kv():
    """(a) With partial steps (rows of the cross-attention recomputed), reading the cached
    keys/values gives the outputs of the same schedule with ``constant_kv=False``."""
    model = TinyDiT(SPEC).eval()
    x, text = make_inputs(SPEC)
    outs, stats = run(model, CONFIG, x, lambda i: text)
    off, off_stats = run(model, CONFIG.replace(constant_kv=False), x, lambda i: text)
    assert stats.constants_filled == 1 and stats.constants_read == STEPS - 1
    assert off_stats.constants_filled == off_stats.constants_read == 0
    for got, want in zip(outs, off):
        torch.testing.assert_close(got, want, **TOL)


def test_equal_text_in_a_new_tensor_recomputes():
    """(b) A different tensor object with the same values each step: never provably the same
    tensor, so every step recomputes the keys/values and refills the cache."""
    model = TinyDiT(SPEC).eval()
    x, text = make_inputs(SPEC)
    outs, stats = run(model, CONFIG.replace(interval=1), x, lambda i: text.clone())
    assert stats.constants_read == 0 and stats.constants_filled == STEPS
    for got, want in zip(outs, plain(model, x, lambda i: text)):
        torch.testing.assert_close(got, want, **TOL)


def test_text_changed_in_place_recomputes():
    """(c) The same tensor changed in place between steps (its version counter moves): the
    step after each change recomputes; the others read. Outputs follow the changed text."""
    model = TinyDiT(SPEC).eval()
    x, text = make_inputs(SPEC)
    mutated = text.clone()

    def between(i):
        if i in (2, 4):
            mutated.add_(1)

    outs, stats = run(model, CONFIG.replace(interval=1), x, lambda i: mutated, between=between)
    assert stats.constants_filled == 3 and stats.constants_read == STEPS - 3
    ref = text.clone()
    expected = []
    with torch.no_grad():
        for i, t in enumerate(timesteps(SPEC, STEPS)):
            if i in (2, 4):
                ref.add_(1)
            expected.append(model(x, t, ref))
    for got, want in zip(outs, expected):
        torch.testing.assert_close(got, want, **TOL)


def test_new_generation_refills_and_partial_steps_match():
    """(d) A new generation refills the cache even with the same text tensor; with partial
    steps both generations equal the schedule without the cache."""
    model = TinyDiT(SPEC).eval()
    x, text = make_inputs(SPEC)
    outs, stats = run(model, CONFIG, x, lambda i: text, generations=2)
    off, _ = run(model, CONFIG.replace(constant_kv=False), x, lambda i: text, generations=2)
    assert stats.constants_filled == 2 and stats.constants_read == 2 * (STEPS - 1)
    for got, want in zip(outs, off):
        torch.testing.assert_close(got, want, **TOL)


def test_text_swapped_for_another_tensor_mid_generation():
    """A different text from step 3 on (a new prompt without a new generation): recomputed at
    step 3, then read again; outputs equal the schedule without the cache."""
    model = TinyDiT(SPEC).eval()
    x, text = make_inputs(SPEC)
    other = make_inputs(SPEC, seed=1)[1]
    texts = lambda i: text if i < 3 else other  # noqa: E731
    outs, stats = run(model, CONFIG, x, texts)
    off, _ = run(model, CONFIG.replace(constant_kv=False), x, texts)
    assert stats.constants_filled == 2 and stats.constants_read == STEPS - 2
    for got, want in zip(outs, off):
        torch.testing.assert_close(got, want, **TOL)


def test_tensor_identity_rules():
    """What proves "the same tensor, unchanged" on the host: the object itself (a new tensor at a
    freed one's address does not pass), and no in-place write through it or a view of it, no
    swapped storage. Inference tensors keep no version counter: no identity at all."""
    from toca_compile.runtime import same_tensor, tensor_identity

    t = torch.randn(4, 4)
    ident = tensor_identity(t)
    assert same_tensor(ident, t)
    assert not same_tensor(ident, t.clone())
    assert not same_tensor(ident, t.view(4, 4))      # another object, same storage
    t.view(16).mul_(2)                               # a write through a view
    assert not same_tensor(ident, t)
    ident = tensor_identity(t)
    t.data = torch.randn(4, 4)                       # storage swapped, no version bump
    assert not same_tensor(ident, t)
    gone = torch.randn(4, 4)
    ident = tensor_identity(gone)
    del gone
    assert not same_tensor(ident, torch.randn(4, 4))
    with torch.inference_mode():
        frozen = torch.randn(4, 4)
    assert tensor_identity(frozen) is None
    assert tensor_identity(3.0) is None


def test_inference_mode_text_is_recomputed_every_step():
    """Text made under ``torch.inference_mode()`` cannot be proven unchanged: the keys/values are
    computed every step (no cache read, no fill), outputs as without the cache."""
    model = TinyDiT(SPEC).eval()
    x, text = make_inputs(SPEC)
    with torch.inference_mode():
        frozen = text.clone()
    outs, stats = run(model, CONFIG.replace(interval=1), x, lambda i: frozen)
    assert stats.constants_read == stats.constants_filled == 0
    for got, want in zip(outs, plain(model, x, lambda i: text)):
        torch.testing.assert_close(got, want, **TOL)
