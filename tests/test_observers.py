"""Call observers: the runtime hands every graph call to the observers registered on its ToCa,
and knows nothing else about measurement. FLOP counting is one such observer; it touches
torch's FLOP registry only while it counts."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch.utils import flop_counter

from architectures import ArchSpec, TinyDiT, make_inputs, timesteps
from toca_compile import ToCa, ToCaConfig, ToCaWarning
from toca_compile.flops import count_flops, counting, cpu_attention_formula
from toca_compile.observers import graph_callable

SPEC = ArchSpec(depth=2, width=16, heads=2, mlp="gelu", norm="layer", adaln=True, attention="sdpa",
                sdpa_kwargs=False, batch=2, tokens=12, text_tokens=2, explicit_shapes=False)
STEPS = 4
CPU_SDPA = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class WithHead(torch.nn.Module):
    """A tiny DiT, a graph break, then a graph ToCa cannot cache (runs as the plain graph)."""

    def __init__(self):
        super().__init__()
        self.dit = TinyDiT(SPEC)
        self.head = torch.nn.Linear(SPEC.width, 3)

    def forward(self, x, t, text):
        y = self.dit(x, t, text)
        torch._dynamo.graph_break()
        return self.head(y)


def run_fresh(code: str) -> None:
    """Run ``code`` in a new interpreter that imports this checkout."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr


def generate(fast, toca):
    x, text = make_inputs(SPEC)
    outs = []
    with torch.no_grad(), toca.generation(steps=STEPS):
        for step, t in enumerate(timesteps(SPEC, STEPS)):
            toca.step(step)
            outs.append(fast(x, t, text))
    return outs


@pytest.fixture
def compiled():
    """(model, toca, compiled model) for WithHead on the eager executor; compiled by one call."""
    torch.manual_seed(0)
    model = WithHead().eval()
    toca = ToCa(ToCaConfig(interval=2, ratio=0.3, compiler="eager"))
    fast = torch.compile(model, backend=toca.backend, dynamic=False)
    with pytest.warns(ToCaWarning, match="nothing cached"):
        generate(fast, toca)
    assert len(toca.graphs) == 2 and len(toca.fallbacks) == 1  # cached variants and a plain graph
    return model, toca, fast


# -- the core never imports measurement ---------------------------------------------------
def test_importing_the_package_imports_no_flop_counting():
    run_fresh("""
        import importlib, pkgutil, sys
        import toca_compile
        import toca_compile.passes
        core = ["backend", "clock", "compilers", "config", "decisions", "graph_inputs", "inspection", "kernels.rows",
                "kernels.scores", "observers", "ops", "pipelines", "presets", "regions", "runtime", "schedule",
                "stats", "validation"]
        for name in core:
            importlib.import_module(f"toca_compile.{name}")
        for info in pkgutil.iter_modules(toca_compile.passes.__path__):
            importlib.import_module(f"toca_compile.passes.{info.name}")
        assert not [m for m in sys.modules if m.startswith("toca_compile.flops")], sorted(sys.modules)
    """)


def test_importing_flops_leaves_torchs_flop_registry_unchanged():
    run_fresh("""
        import torch
        from torch.utils import flop_counter
        before = dict(flop_counter.flop_registry)
        import toca_compile.flops
        import toca_compile.flops.cli  # noqa: F401
        assert flop_counter.flop_registry == before
    """)


def test_the_cpu_attention_formula_is_registered_only_while_counting():
    before = dict(flop_counter.flop_registry)
    assert CPU_SDPA not in before  # else this test shows nothing
    with cpu_attention_formula():
        assert CPU_SDPA in flop_counter.flop_registry
        with cpu_attention_formula():  # re-entrant: the inner exit keeps it
            pass
        assert CPU_SDPA in flop_counter.flop_registry
    assert flop_counter.flop_registry == before
    with pytest.raises(RuntimeError), cpu_attention_formula():
        raise RuntimeError
    assert flop_counter.flop_registry == before


def test_counting_registers_the_formula_and_an_observer_and_removes_both(compiled):
    _, toca, fast = compiled
    before = dict(flop_counter.flop_registry)
    with counting(toca) as log:
        assert CPU_SDPA in flop_counter.flop_registry and len(toca.observers) == 1
        generate(fast, toca)
    assert flop_counter.flop_registry == before and toca.observers == ()
    assert len(log) == 2 * STEPS and all(flops > 0 for flops in log)


def test_attention_on_cpu_is_counted_without_any_import_side_effect():
    q = torch.randn(2, 2, 8, 4)
    expected = flop_counter.sdpa_flop_count(q.shape, q.shape, q.shape)
    assert count_flops(torch.nn.functional.scaled_dot_product_attention, q, q, q) == expected > 0


def test_a_formula_someone_else_registered_is_left_in_place(monkeypatch):
    def theirs(*args, **kwargs):
        return 1

    monkeypatch.setitem(flop_counter.flop_registry, CPU_SDPA, theirs)
    with cpu_attention_formula():
        assert flop_counter.flop_registry[CPU_SDPA] is theirs
    assert flop_counter.flop_registry[CPU_SDPA] is theirs


# -- observers ----------------------------------------------------------------------------
def test_an_observer_sees_every_graph_call_and_can_be_removed(compiled):
    model, toca, fast = compiled
    assert toca.observers == ()
    expected = generate(fast, toca)
    seen = []

    def observer(fn, args):
        out = fn(*args)
        seen.append((fn, len(args), out))
        return out

    handle = toca.observe(observer)
    assert toca.observers == (observer,)
    observed = generate(fast, toca)
    for a, b in zip(observed, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # observing changes nothing
    assert len(seen) == 2 * STEPS  # two graphs per call: the cached DiT and the plain head
    assert all(callable(fn) and n >= 1 for fn, n, _ in seen)
    assert seen[-1][2] is not None
    handle.remove()
    handle.remove()  # a second remove does nothing
    assert toca.observers == ()
    generate(fast, toca)
    assert len(seen) == 2 * STEPS


def test_observers_chain_first_registered_outermost(compiled):
    _, toca, fast = compiled
    events, inner_fns, outer_fns = [], [], []

    def outer(fn, args):
        events.append("outer in")
        outer_fns.append(graph_callable(fn))
        out = fn(*args)
        events.append("outer out")
        return out

    def inner(fn, args):
        events.append("inner in")
        inner_fns.append(fn)
        out = fn(*args)
        events.append("inner out")
        return out

    with toca.observe(outer), toca.observe(inner):
        assert toca.observers == (outer, inner)
        generate(fast, toca)
    assert toca.observers == ()
    assert events == ["outer in", "inner in", "inner out", "outer out"] * (2 * STEPS)
    assert outer_fns == inner_fns  # the outer observer can still reach the graph callable


def test_an_observer_can_count_flops_inside_another_observer(compiled):
    _, toca, fast = compiled
    calls = []
    with toca.observe(lambda fn, args: calls.append(1) or fn(*args)), counting(toca) as log:
        generate(fast, toca)
    with counting(toca) as alone:
        generate(fast, toca)
    assert len(calls) == len(log) == 2 * STEPS
    assert list(log) == list(alone)


def test_removing_one_of_two_registrations_of_the_same_observer_keeps_the_other(compiled):
    _, toca, _ = compiled

    def observer(fn, args):
        return fn(*args)

    first, second = toca.observe(observer), toca.observe(observer)
    first.remove()
    assert toca.observers == (observer,)
    second.remove()
    assert toca.observers == ()


def test_an_observer_must_be_callable():
    with pytest.raises(TypeError, match="observer"):
        ToCa().observe(42)
