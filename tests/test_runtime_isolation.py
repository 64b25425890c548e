"""Caches belong to the call that made them: to the weights a graph runs with, its position in
the step and the thread, never to a Dynamo graph object alone. One graph reused by every block
after a graph break, two models of one class on one backend, and threads sampling one compiled
model all give the eager rule's outputs."""
from __future__ import annotations

import threading

import torch
from hypothesis import given
from hypothesis import strategies as st

from profiles import examples

from architectures import ArchSpec, TinyDiT, arch_specs, make_inputs, timesteps
from oracle import ReferenceToCa
from toca_compile import ToCa, ToCaConfig, default_toca, toca_backend

CONFIG = ToCaConfig(interval=3, ratio=0.4, score="random", spatial_bonus=0.0, compiler="eager")
TOL = dict(rtol=1e-6, atol=1e-6)


def generation(fast, oracle, spec, inputs, steps=7, start=999.0):
    outs = []
    with torch.no_grad():
        for t in timesteps(spec, steps, start=start):
            x, text = inputs
            outs.append((fast(x, t, text), oracle(x, t, text)))
    return outs


@given(st.sampled_from(["inside", "between"]).flatmap(lambda where: arch_specs(depth=3, graph_break=where)),
       st.integers(0, 2**16))
@examples(10)
def test_graph_breaks_inside_and_between_blocks_follow_the_eager_rule(spec, seed):
    """"inside": Dynamo compiles the block once and calls that graph for every block with the
    block's own weights; each block must keep its own caches."""
    torch._dynamo.reset()
    model = TinyDiT(spec, seed=seed)
    toca = ToCa(CONFIG)
    fast = torch.compile(model, backend=toca.backend)
    inputs = make_inputs(spec, seed)
    for g in range(2):
        oracle = ReferenceToCa(model, CONFIG)
        for i, (got, want) in enumerate(generation(fast, oracle, spec, inputs)):
            torch.testing.assert_close(got, want, **TOL, msg=lambda m: f"generation {g} step {i}: {m}")
    assert len(toca.graphs) >= 2  # the break really split the model
    stats = toca.stats()
    assert stats.partial_steps == 2 * 4 and stats.generations == 2
    reasons = set(stats.uncached)
    assert reasons <= {"no residual attention or MLP branch was found in this graph"}, reasons
    # same inputs twice, same outputs
    again = generation(fast, ReferenceToCa(model, CONFIG), spec, inputs)
    first = generation(fast, ReferenceToCa(model, CONFIG), spec, inputs)
    for (a, _), (b, _) in zip(again, first):
        assert torch.equal(a, b)


def test_two_models_of_one_class_on_the_default_backend_keep_separate_caches():
    """Both compile to the same Dynamo graph (their weights are its inputs); interleaved calls
    must give what each model gives when it runs alone on a ToCa of its own."""
    spec = ArchSpec(depth=2, width=16, heads=2, batch=2, tokens=12, cross_attn=True)
    models = [TinyDiT(spec, seed=1), TinyDiT(spec, seed=2)]
    inputs = [make_inputs(spec), make_inputs(spec, 5)]
    ts = timesteps(spec, 7)
    alone = []
    with torch.no_grad():
        for model, (x, text) in zip(models, inputs):
            torch._dynamo.reset()
            fast = torch.compile(model, backend=ToCa(default_toca().config.replace(compiler="eager")).backend)
            alone.append([fast(x, t, text) for t in ts])
        torch._dynamo.reset()
        fast = [torch.compile(model, backend=toca_backend) for model in models]
        for i, t in enumerate(ts):
            for m, (x, text) in enumerate(inputs):
                torch.testing.assert_close(fast[m](x, t, text), alone[m][i], rtol=1e-5, atol=1e-5,  # Inductor
                                           msg=lambda msg: f"model {m}, step {i}: {msg}")
    assert len(default_toca().graphs) == 1  # one graph served both models
    assert default_toca().stats().partial_steps >= 4


def test_threads_sampling_one_compiled_model_match_single_threaded_runs():
    """Each thread has its own generations and caches (state per thread)."""
    spec = ArchSpec(depth=2, width=16, heads=2, batch=2, tokens=12)
    model = TinyDiT(spec)
    toca = ToCa(CONFIG)
    fast = torch.compile(model, backend=toca.backend)
    expected = {}
    for seed in range(4):
        oracle = ReferenceToCa(model, CONFIG)
        x, text = make_inputs(spec, seed)
        expected[seed] = [oracle(x, t, text) for _ in range(2) for t in timesteps(spec, 10)]
    with torch.no_grad():  # compile before the threads start, as a server would warm up
        fast(*make_inputs(spec)[:1], timesteps(spec, 1)[0], None)
    toca.reset()
    results: dict[int, list[torch.Tensor]] = {s: [] for s in range(4)}
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def sample(seed: int) -> None:
        try:
            x, text = make_inputs(spec, seed)
            barrier.wait()
            with torch.no_grad():
                for _ in range(2):
                    for t in timesteps(spec, 10):
                        results[seed].append(fast(x, t, text))
        except BaseException as error:  # noqa: BLE001  reported below
            errors.append(error)

    threads = [threading.Thread(target=sample, args=(s,)) for s in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for seed in range(4):
        assert len(results[seed]) == 20
        for i, (got, want) in enumerate(zip(results[seed], expected[seed])):
            torch.testing.assert_close(got, want, **TOL, msg=lambda m: f"thread {seed} call {i}: {m}")
    assert toca.stats().partial_steps >= 4 * 2 * 6
