"""Where a call's generation, step and branch come from: the user's loop (explicit, no tensor
read), or the timestep sequence (inferred: falling or rising, turn-backs and jumps start a new
generation, repeated timesteps are bounded branches). Every compiled run is checked against the
eager oracle placed at the steps the test knows to be right."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from architectures import ArchSpec, TinyDiT, make_inputs, timesteps
from oracle import ReferenceToCa
from diffusers_zoo import ZOO
from host_reads import host_reads
from toca_compile import ToCa, ToCaConfig, ToCaWarning

SPEC = ArchSpec(depth=2, width=16, heads=2, batch=2, tokens=12, cross_attn=True, text_tokens=3)
CONFIG = ToCaConfig(interval=3, ratio=0.4, score="random", spatial_bonus=0.0, compiler="eager")
TOL = dict(rtol=1e-6, atol=1e-6)


def compiled(model, config=CONFIG, **compile_kwargs):
    toca = ToCa(config)
    return toca, torch.compile(model, backend=toca.backend, **compile_kwargs)


def at(spec: ArchSpec, value: float) -> torch.Tensor:
    return torch.full((spec.batch,), float(value))


def test_explicit_steps_follow_the_loop_and_never_read_the_timestep():
    model = TinyDiT(SPEC)
    toca, fast = compiled(model)
    oracle = ReferenceToCa(model, CONFIG)
    x, text = make_inputs(SPEC)
    ts = timesteps(SPEC, 7)
    with torch.no_grad():
        with toca.generation(steps=7):  # warm-up: compiles both variants
            for i, t in enumerate(ts):
                toca.step(i)
                fast(x, t, text)
        # whatever the timesteps say (constant here), the loop's step indices decide
        t = at(SPEC, 500.0)
        outs = []
        with host_reads() as reads, toca.generation(steps=7):
            for i in range(7):
                toca.step(i)
                outs.append(fast(x, t, text))
        for i, got in enumerate(outs):
            torch.testing.assert_close(got, oracle(x, t, text, step=i, new_generation=i == 0), **TOL)
    assert reads == []
    stats = toca.stats()
    assert stats.generations == 2 and stats.partial_steps == 2 * 4 and stats.uncached_calls == 0
    assert [log.strip for log in toca.summary().generations] == ["FPPFPPF"] * 2


def test_step_outside_a_generation_is_an_error():
    toca = ToCa(CONFIG)
    with pytest.raises(RuntimeError, match="toca.generation"):
        toca.step(0)
    with toca.generation():
        with pytest.raises(ValueError, match="step index"):
            toca.step(-1)
    with pytest.raises(ValueError, match="steps"):
        with toca.generation(steps=0):
            pass


def test_named_branches_keep_their_caches_whatever_the_call_order():
    """Sequential CFG under names (what diffusers' cache_context gives): the order of the two
    calls changes from step to step, the caches follow the names."""
    model = TinyDiT(SPEC)
    toca, fast = compiled(model)
    oracle = ReferenceToCa(model, CONFIG)
    inputs = {"cond": make_inputs(SPEC, 1), "uncond": make_inputs(SPEC, 2)}
    index = {"cond": 0, "uncond": 1}
    with torch.no_grad(), toca.generation(steps=7):
        for i, t in enumerate(timesteps(SPEC, 7)):
            toca.step(i)
            for name in (("cond", "uncond") if i % 2 == 0 else ("uncond", "cond")):
                x, text = inputs[name]
                with toca.branch(name):
                    got = fast(x, t, text)
                want = oracle(x, t, text, step=i, branch=index[name], new_generation=i == 0 and index[name] == 0)
                torch.testing.assert_close(got, want, **TOL, msg=lambda m: f"step {i} {name}: {m}")
    assert toca.stats().partial_steps == 4


@pytest.mark.parametrize("direction", ["falling", "rising"])
def test_inferred_steps_in_either_direction(direction):
    """Samplers counting t from 0 up to 1 (Lumina2, Z-Image, flow matching) cache like falling ones;
    a turn back starts the next generation."""
    model = TinyDiT(SPEC)
    toca, fast = compiled(model)
    oracle = ReferenceToCa(model, CONFIG)
    x, text = make_inputs(SPEC)
    values = torch.linspace(0.05, 0.95, 7) if direction == "rising" else torch.linspace(0.95, 0.05, 7)
    with torch.no_grad():
        for generation in range(2):
            for i, v in enumerate(values):
                got = fast(x, at(SPEC, v), text)
                want = oracle(x, at(SPEC, v), text, step=i, new_generation=i == 0)
                torch.testing.assert_close(got, want, **TOL, msg=lambda m: f"generation {generation} step {i}: {m}")
    stats = toca.stats()
    assert stats.generations == 2 and stats.partial_steps == 8 and stats.uncached_calls == 0


def test_a_lower_start_after_an_aborted_generation_is_a_new_generation():
    """img2img with strength < 1 after a generation cut short: the timestep keeps falling, but
    jumps; the new generation must not run on the old one's caches."""
    model = TinyDiT(SPEC)
    toca, fast = compiled(model)
    oracle = ReferenceToCa(model, CONFIG)
    x, text = make_inputs(SPEC)
    aborted = torch.linspace(999, 0, 50)[:5]          # steps of ~20, stopped at t ~ 918
    img2img = torch.linspace(600, 0, 30)              # a new schedule starting lower
    with torch.no_grad():
        for i, v in enumerate(aborted):
            torch.testing.assert_close(fast(x, at(SPEC, v), text),
                                       oracle(x, at(SPEC, v), text, step=i, new_generation=i == 0), **TOL)
        for i, v in enumerate(img2img[:7]):
            torch.testing.assert_close(fast(x, at(SPEC, v), text),
                                       oracle(x, at(SPEC, v), text, step=i, new_generation=i == 0), **TOL,
                                       msg=lambda m: f"img2img step {i}: {m}")
    assert toca.stats().generations == 2


def test_reset_starts_a_new_generation_at_the_next_call():
    model = TinyDiT(SPEC)
    toca, fast = compiled(model)
    oracle = ReferenceToCa(model, CONFIG)
    x, text = make_inputs(SPEC)
    values = torch.linspace(999, 0, 12)
    with torch.no_grad():
        for i, v in enumerate(values):
            if i == 5:
                toca.reset()  # continues falling, by an ordinary step: only reset() tells
            step = i if i < 5 else i - 5
            torch.testing.assert_close(fast(x, at(SPEC, v), text),
                                       oracle(x, at(SPEC, v), text, step=step, new_generation=step == 0), **TOL)


def test_a_repeated_timestep_is_bounded_and_warns_once():
    """A benchmark loop (or a 1-step model) calling at one timestep: at most max_branches cache
    sets, then every call computes everything, with one warning."""
    model = TinyDiT(SPEC)
    config = CONFIG.replace(max_branches=3)
    toca, fast = compiled(model, config)
    x, text = make_inputs(SPEC)
    t = at(SPEC, 999.0)
    with torch.no_grad():
        want = model(x, t, text)
        fast(x, t, text)
        one_state = toca.stats().cache_bytes
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            outs = [fast(x, t, text) for _ in range(60)]
    for out in outs:
        torch.testing.assert_close(out, want, **TOL)
    ours = [w for w in caught if issubclass(w.category, ToCaWarning)]
    assert len(ours) == 1 and "calls at one timestep" in str(ours[0].message)
    stats = toca.stats()
    assert stats.cache_bytes == 3 * one_state + one_state  # 3 branches + one scratch state
    assert stats.uncached_calls == 61 - 3
    assert stats.uncached == {next(iter(stats.uncached)): 58} and "max_branches" in next(iter(stats.uncached))


class FloatTime(nn.Module):
    """A model whose timestep is a Python number (custom flow-matching loops)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x, t: float, text=None):
        return self.inner(x, torch.full((x.shape[0],), t), text)


def test_a_python_number_timestep_caches_without_recompiles_or_device_reads():
    """Dynamo compiles the first call with the number as a constant, then passes it as a 0-d CPU
    tensor: reading that costs no device sync. From the second generation on every step is placed
    as the rule says, and nothing recompiles."""
    inner = TinyDiT(SPEC)
    model = FloatTime(inner)
    toca, fast = compiled(model)
    x, text = make_inputs(SPEC)
    values = torch.linspace(999, 0, 7).tolist()
    with torch.no_grad():
        for v in values:  # first generation: warm-up (the first call is compiled with t constant)
            fast(x, v, text)
        torch.compiler.set_stance("fail_on_recompile")
        for generation in range(2):
            oracle = ReferenceToCa(inner, CONFIG)
            with host_reads() as reads:
                outs = [fast(x, v, text) for v in values]
            for i, (v, got) in enumerate(zip(values, outs)):
                torch.testing.assert_close(got, oracle(x, at(SPEC, v), text, step=i, new_generation=i == 0), **TOL)
    torch.compiler.set_stance("default")
    # ours, one per call, plus the graph's own .item() of the number; never a model tensor
    assert sum(name == "__float__" for name, *_ in reads) == len(values)
    assert {(device.type, dtype, shape) for _, device, dtype, shape in reads} == {("cpu", torch.float64, ())}
    assert toca.stats().partial_steps >= 8


def test_without_any_timestep_every_call_computes_everything_unless_steps_are_given():
    class NoTime(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, text=None):
            return self.inner(x, torch.full((x.shape[0],), 500.0), text)

    inner = TinyDiT(SPEC)
    model = NoTime(inner)
    toca, fast = compiled(model)
    x, text = make_inputs(SPEC)
    with torch.no_grad():
        want = model(x, text)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            outs = [fast(x, text) for _ in range(5)]
        for out in outs:
            torch.testing.assert_close(out, want, **TOL)
        ours = [str(w.message) for w in caught if issubclass(w.category, ToCaWarning)]
        assert len(ours) == 1 and "no step information" in ours[0]
        assert toca.stats().calls == 0
        with toca.generation():
            oracle = ReferenceToCa(inner, CONFIG)
            for i in range(4):
                toca.step(i)
                torch.testing.assert_close(fast(x, text), oracle(x, at(SPEC, 500.0), text, step=i,
                                                                 new_generation=i == 0), **TOL)
    assert toca.stats().partial_steps == 2


def test_flux_steps_follow_its_timestep_not_its_guidance():
    """FLUX embeds both the timestep and the guidance scale sinusoidally; only the timestep may
    drive the steps."""
    entry = ZOO["FluxTransformer2DModel"]
    model, args, kwargs = entry.build()
    toca, fast = compiled(model, ToCaConfig(interval=3, ratio=0.25, compiler="eager"))
    with torch.no_grad():
        for i, v in enumerate(torch.linspace(1.0, 0.1, 7)):
            guidance = torch.full_like(kwargs["guidance"], 3.5 + i)  # a changing guidance must not matter
            fast(*args, **{**kwargs, "timestep": torch.full_like(kwargs["timestep"], float(v)), "guidance": guidance})
    (entry,) = toca.graphs
    (spec,) = entry.specs.values()
    placeholders = [n for n in spec.gm.graph.nodes if n.op == "placeholder"]
    assert "timestep" in placeholders[spec.timestep_index].name
    stats = toca.stats()
    assert stats.generations == 1 and stats.partial_steps == 4 and stats.uncached_calls == 0
