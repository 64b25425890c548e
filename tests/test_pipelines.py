"""``toca_compile.apply(pipe)`` end to end through ``pipe(...)``: the pipeline says where each
generation and step begins (no timestep is read), ``interval=1`` gives the untouched pipeline's
images, the defaults cache partial steps, and ``remove`` restores the pipeline exactly.

Pipelines are diffusers' own classes with tiny random-weight components (tests/pipeline_zoo.py):
DiT (DDIM, and Heun, a second-order sampler), PixArt-α, SD3, FLUX with true CFG (two calls per
step under ``cache_context``), Lumina2 (rising timesteps) and Wan (video, sequential CFG).
"""
from __future__ import annotations

import pytest
import torch

import toca_compile
from pipeline_zoo import PIPELINES, generate
from toca_compile import ToCaConfig

NOTHING_TO_CACHE = "no residual attention or MLP branch was found in this graph"


def built(name: str):
    pipe, kwargs = PIPELINES[name].build()
    pipe.set_progress_bar_config(disable=True)
    return pipe, kwargs


def snapshot(obj) -> dict:
    return dict(vars(obj))


@pytest.mark.parametrize("name", list(PIPELINES))
def test_apply_caches_the_pipeline_and_remove_restores_it(name):
    case = PIPELINES[name]
    pipe, kwargs = built(name)
    untouched = generate(pipe, kwargs)
    transformer, scheduler = pipe.transformer, pipe.scheduler
    before = (snapshot(transformer), snapshot(scheduler), dict(pipe.components))

    # interval=1: every step computes everything, through the rewritten graphs
    toca = toca_compile.apply(pipe, ToCaConfig(interval=1, compiler="eager"))
    assert toca_compile.is_applied(pipe) and pipe.transformer is transformer
    torch.testing.assert_close(generate(pipe, kwargs), untouched, rtol=1e-6, atol=1e-6)
    stats = toca.stats()
    assert stats.calls > 0 and stats.partial_steps == 0
    assert set(stats.uncached) <= {NOTHING_TO_CACHE}, stats.uncached
    toca_compile.remove(pipe)
    after = (snapshot(transformer), snapshot(scheduler), dict(pipe.components))
    assert after[0].keys() == before[0].keys() and all(after[0][k] is v for k, v in before[0].items())
    assert after[1].keys() == before[1].keys() and after[2] == before[2]
    assert not toca_compile.is_applied(pipe) and toca.stats().cache_bytes == 0
    torch.testing.assert_close(generate(pipe, kwargs), untouched, rtol=0, atol=0)

    # defaults: partial steps, images close to the untouched ones, the same twice
    toca = toca_compile.apply(pipe, ToCaConfig(compiler="eager"))
    first = generate(pipe, kwargs)
    second = generate(pipe, kwargs)
    assert torch.equal(first, second)
    assert torch.isfinite(first).all()
    relative = ((first - untouched).norm() / untouched.norm()).item()
    assert 0 < relative < 0.5, relative
    steps = len(pipe.scheduler.timesteps)
    stats = toca.stats()
    assert stats.generations == 2 and stats.steps == 2 * steps and stats.partial_steps >= 2 * (steps // 3)
    assert set(stats.uncached) <= {NOTHING_TO_CACHE}, stats.uncached
    summary = toca_compile.summary(pipe)["transformer"]
    assert [(log.source, log.planned_steps, len(log.steps)) for log in summary.generations] == [("pipeline", steps, steps)] * 2
    counts = {marks.full + marks.partial for marks in summary.generations[0].steps.values()}
    assert len(counts) == 1  # every step placed the same calls
    if case.name != "lumina2":  # (Lumina2 runs three graphs with regions per call)
        assert counts == {2 if case.sequential_cfg else 1}
    assert "FPP" in str(toca_compile.summary(pipe))
    toca_compile.remove(pipe)


def test_the_runtime_reads_no_timestep_under_a_pipeline(monkeypatch):
    """Under apply(), the steps come from the scheduler: the timestep reader is never called."""
    from toca_compile import backend

    calls = []
    monkeypatch.setattr(backend, "read_timestep", lambda value: calls.append(value))
    pipe, kwargs = built("dit")
    toca_compile.apply(pipe, ToCaConfig(compiler="eager"))
    generate(pipe, kwargs)
    generate(pipe, kwargs)
    assert calls == []
    assert toca_compile.applied(pipe)["transformer"].stats().partial_steps == 8


def test_an_aborted_generation_is_followed_by_a_fresh_one():
    """A pipeline call interrupted mid-loop leaves its generation open; the next call starts its
    own and gives the same images as an uninterrupted run."""
    pipe, kwargs = built("sd3")
    toca_compile.apply(pipe, ToCaConfig(compiler="eager"))
    expected = generate(pipe, kwargs)

    def stop_at_step_3(pipeline, step, timestep, callback_kwargs):
        if step == 3:
            raise KeyboardInterrupt
        return callback_kwargs

    with pytest.raises(KeyboardInterrupt):
        generate(pipe, {**kwargs, "callback_on_step_end": stop_at_step_3})
    assert torch.equal(generate(pipe, kwargs), expected)


def test_apply_refuses_what_it_cannot_follow():
    pipe, _ = built("dit")
    toca_compile.apply(pipe)
    with pytest.raises(ValueError, match="already applied"):
        toca_compile.apply(pipe)
    toca_compile.remove(pipe)
    with pytest.raises(ValueError, match="not applied"):
        toca_compile.remove(pipe)
    with pytest.raises(ValueError, match="backend"):
        toca_compile.apply(pipe, backend="inductor")
    pipe.transformer.compile(backend="eager")
    with pytest.raises(ValueError, match="already compiled"):
        toca_compile.apply(pipe)
    with pytest.raises(TypeError, match="diffusers pipeline"):
        toca_compile.apply(torch.nn.Linear(2, 2))


def test_a_preset_tuned_for_another_step_count_warns():
    pipe, kwargs = built("dit")
    toca_compile.apply(pipe, ToCaConfig(preset="dit-ddim-50", compiler="eager"))
    with pytest.warns(toca_compile.ToCaWarning, match="tuned for 50 steps but the pipeline runs 6"):
        generate(pipe, kwargs)


@pytest.mark.parametrize("how", ["apply", "quick-start"])
def test_resolution_and_cfg_changes_keep_caching(how):
    """The same pipeline at another resolution and with CFG off (batch 1 instead of 2): Dynamo
    recompiles with symbolic sizes, and every shape must still cache. "quick-start" is the bare
    line ``pipe.transformer = torch.compile(pipe.transformer, backend=toca.backend)``, which
    infers the steps from the timestep."""
    pipe, kwargs = built("pixart-alpha")
    settings = [dict(), dict(height=32, width=32), dict(guidance_scale=1.0), dict()]
    untouched = [generate(pipe, {**kwargs, **change}) for change in settings]
    config = ToCaConfig(interval=1, compiler="eager")
    if how == "apply":
        toca = toca_compile.apply(pipe, config)
    else:
        toca = toca_compile.ToCa(config)
        pipe.transformer = torch.compile(pipe.transformer, backend=toca.backend)
    for change, want in zip(settings, untouched):
        torch.testing.assert_close(generate(pipe, {**kwargs, **change}), want, rtol=1e-6, atol=1e-6)
    toca.schedule = toca_compile.ToCaConfig().schedule()  # now cache: interval 3
    for change in settings:
        before = toca.stats().partial_steps
        generate(pipe, {**kwargs, **change})
        assert toca.stats().partial_steps - before >= 3, change
    assert any(entry.symbolic for entry in toca.graphs)
    assert set(toca.stats().uncached) <= {NOTHING_TO_CACHE}
