"""A fixed set of architectures through real Inductor code generation, ``fullgraph=True``:
the cached path equals the eager reference over a generation with CFG branches, interval 1
equals plain ``torch.compile``, and nothing recompiles once both variants exist."""
import pytest
import torch

from architectures import ArchSpec, TinyDiT, make_inputs, timesteps
from oracle import ReferenceToCa
from checks import assert_caching_active
from toca_compile import ToCa, ToCaConfig


def oracle_config(**fields):
    """The settings the reference implements: random scores, no spatial bonus."""
    return ToCaConfig(score="random", spatial_bonus=0.0, **fields)

pytestmark = pytest.mark.inductor

BASE = dict(depth=2, width=16, heads=2, mlp="gelu_tanh", norm="layer", adaln=True, attention="sdpa",
            sdpa_kwargs=True, batch=2, tokens=12, text_tokens=4, explicit_shapes=True)
SPECS = {
    "dit": ArchSpec(**BASE),
    "pixart": ArchSpec(**{**BASE, "cross_attn": True, "mlp": "silu", "attention": "manual"}),
    # joint blocks with one MLP over cat(text, image), sliced back (CogVideoX): its rows path too
    "joint": ArchSpec(**{**BASE, "joint": True, "norm": "rms", "explicit_shapes": False, "shared_mlp": True}),
    "parallel": ArchSpec(**{**BASE, "parallel": True, "mlp": "swiglu", "adaln": False}),
}


def _generation(fn, spec, x, text, steps, branches=2):
    outs = []
    with torch.no_grad():
        for t in timesteps(spec, steps):
            for b in range(branches):
                outs.append(fn(x * (1 + b), t, text))  # sequential CFG: two branches per step
    return outs


@pytest.mark.parametrize("name", list(SPECS))
def test_inductor_matches_reference_and_never_recompiles(name):
    spec = SPECS[name]
    model = TinyDiT(spec)
    x, text = make_inputs(spec)
    config = oracle_config(interval=3, ratio=0.4, seed=1)
    toca = ToCa(config)
    fast = torch.compile(model, backend=toca.backend, fullgraph=True, dynamic=False)
    oracle = ReferenceToCa(model, config)
    got = _generation(fast, spec, x, text, steps=5)
    want = _generation(oracle, spec, x, text, steps=5)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    # full + partial; with cross-attention also the first full step, which fills the text K/V
    # cache that later full steps read (ToCaConfig.constant_kv; tests/test_constant_kv.py)
    variants = 2 + spec.cross_attn
    assert toca.stats().variants_compiled == variants
    torch.compiler.set_stance("fail_on_recompile")
    try:
        got = _generation(fast, spec, x, text, steps=5)  # a second generation, same shapes
    finally:
        torch.compiler.set_stance("default")
    oracle.reset()
    for g, w in zip(got, _generation(oracle, spec, x, text, steps=5)):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    assert toca.stats().variants_compiled == variants and toca.stats().generations == 2


def test_interval_one_equals_plain_torch_compile():
    spec = SPECS["dit"]
    model = TinyDiT(spec)
    x, text = make_inputs(spec)
    fast = torch.compile(model, backend=ToCa(oracle_config(interval=1)).backend, fullgraph=True, dynamic=False)
    plain = torch.compile(model, fullgraph=True, dynamic=False)
    for g, w in zip(_generation(fast, spec, x, text, 3, 1), _generation(plain, spec, x, text, 3, 1)):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fields", [dict(), dict(mode="taylorseer", taylor_order=2, forecast_refresh=0.3),
                                    dict(mode="duca", interval=4), dict(attention_projection="recompute")],
                         ids=["attention-score", "taylorseer-refresh", "duca", "authors-projection"])
def test_inductor_agrees_with_the_eager_executor(fields):
    """Default ToCa scores (attention received, spatial bonus) and the sibling modes compile
    with Inductor and give what the rewritten graphs give when run eagerly (TaylorSeer with
    forecast rows: attention regions forecast only, token-wise ones forecast then refresh; the
    authors' projection: reused attention branches project their cached input again)."""
    spec = SPECS["pixart"]
    model = TinyDiT(spec)
    x, text = make_inputs(spec)
    outs = {}
    for compiler in ("eager", "inductor"):
        torch._dynamo.reset()
        toca = ToCa(ToCaConfig(compiler=compiler, **{"interval": 3, "ratio": 0.3, **fields}))
        fast = torch.compile(model, backend=toca.backend, fullgraph=True, dynamic=False)
        outs[compiler] = _generation(fast, spec, x, text, steps=6, branches=1)
        assert_caching_active(toca, partial=True)
    for g, w in zip(outs["inductor"], outs["eager"]):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_apply_through_a_pipeline_with_inductor():
    """``toca_compile.apply`` with real Inductor code generation: interval 1 gives the plain
    pipeline's images (to Inductor's float tolerance), the defaults cache partial steps, and a
    second generation recompiles nothing."""
    import toca_compile
    from pipeline_zoo import PIPELINES, generate

    pipe, kwargs = PIPELINES["dit"].build()
    pipe.set_progress_bar_config(disable=True)
    untouched = generate(pipe, kwargs)
    toca_compile.apply(pipe, ToCaConfig(interval=1))
    torch.testing.assert_close(generate(pipe, kwargs), untouched, rtol=1e-4, atol=1e-4)
    toca_compile.remove(pipe)
    toca = toca_compile.apply(pipe)
    first = generate(pipe, kwargs)
    torch.compiler.set_stance("fail_on_recompile")
    try:
        second = generate(pipe, kwargs)
    finally:
        torch.compiler.set_stance("default")
    torch.testing.assert_close(first, second, rtol=1e-6, atol=1e-6)
    stats = toca.stats()
    assert stats.partial_steps == 2 * 4 and stats.uncached_calls == 0 and not toca.fallbacks


def _full_step_allocations(monkeypatch, reuse: bool) -> tuple[int, int]:
    """Fresh buffers and reused ones in the Inductor code of a full step (one call)."""
    import contextlib
    import re

    from torch._inductor.utils import run_and_get_code

    import toca_compile.compilers as compilers

    if not reuse:
        monkeypatch.setattr(compilers, "reuse_freed_buffers", contextlib.nullcontext)
    spec = ArchSpec(depth=3, width=32, heads=2, mlp="gelu", norm="layer", adaln=True, attention="sdpa",
                    sdpa_kwargs=False, batch=2, tokens=64, explicit_shapes=False)
    torch._dynamo.reset()
    model, (x, _) = TinyDiT(spec), make_inputs(spec)
    fast = torch.compile(model, backend=ToCa(ToCaConfig()).backend, fullgraph=True, dynamic=False)
    with torch.no_grad():
        _, code = run_and_get_code(fast, x, next(iter(timesteps(spec, 3))), None)
    source = "\n".join(code)
    monkeypatch.undo()
    return len(re.findall(r"= empty_strided_cpu\(", source)), len(re.findall(r"# reuse", source))


def test_cpu_full_steps_reuse_freed_buffers_instead_of_allocating_per_call(monkeypatch):
    """The exact token score keeps the attention map alive on full steps; Inductor would then
    allocate later blocks' activations afresh on every call (page faults on CPU). Compiled
    through toca-compile it reuses them, and its own behaviour is restored afterwards."""
    from torch._inductor.codegen.wrapper import AllocateLine

    before = AllocateLine.__dict__.get("should_reuse_buffer")
    fresh, reused = _full_step_allocations(monkeypatch, reuse=True)
    fresh_without, reused_without = _full_step_allocations(monkeypatch, reuse=False)
    assert fresh < fresh_without and reused > reused_without
    assert AllocateLine.__dict__.get("should_reuse_buffer") is before


def test_reuse_override_nests_and_restores_across_threads():
    import threading

    from torch._inductor.codegen.wrapper import AllocateLine

    from toca_compile.compilers import reuse_freed_buffers

    original = AllocateLine.__dict__["should_reuse_buffer"]
    entered, leave = threading.Barrier(3), threading.Event()

    def hold():
        with reuse_freed_buffers():
            entered.wait()
            leave.wait()

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for t in threads:
        t.start()
    entered.wait()
    assert AllocateLine.__dict__["should_reuse_buffer"] is not original
    with reuse_freed_buffers():
        pass
    assert AllocateLine.__dict__["should_reuse_buffer"] is not original  # the others still hold it
    leave.set()
    for t in threads:
        t.join()
    assert AllocateLine.__dict__["should_reuse_buffer"] is original
