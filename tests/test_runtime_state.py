"""State follows the inputs: a new batch size, token count or dtype gets its own graph and
fresh caches that start with a full step, while the first shape's caches stay intact."""
import torch

from architectures import ArchSpec, TinyDiT, make_inputs, timesteps
from oracle import ReferenceToCa
from toca_compile import ToCa, ToCaConfig, runtime

SPEC = ArchSpec(depth=2, width=16, heads=2, mlp="gelu", norm="layer", adaln=True, attention="sdpa",
                sdpa_kwargs=False, batch=2, tokens=12, text_tokens=2, explicit_shapes=False)


def test_new_shapes_and_dtypes_get_fresh_state_starting_with_a_full_step():
    model = TinyDiT(SPEC)
    toca = ToCa(ToCaConfig(interval=3, ratio=0.3, compiler="eager"))
    fast = torch.compile(model, backend=toca.backend, fullgraph=True, dynamic=False)
    x, text = make_inputs(SPEC)
    ts = timesteps(SPEC, 3)
    with torch.no_grad():
        fast(x, ts[0], text)
        fast(x, ts[1], text)  # partial step of the first shape
        before = {k: {n: t.clone() for n, t in v.items()} for k, v in toca.region_states(0).items()}
        for other in (x[:1], torch.cat([x, x[:, :4]], dim=1)):  # batch 1; 16 tokens
            t = ts[2][: other.shape[0]]
            torch.testing.assert_close(fast(other, t, text), model(other, t, text))  # full: exact
        double = model.double()
        t = ts[2].double()
        torch.testing.assert_close(fast(x.double(), t, text), double(x.double(), t, text))
        model.float()
    assert len(toca.graphs) == 4 and not toca.fallbacks
    for key, state in toca.region_states(0).items():  # the first graph's caches are untouched
        for name, tensor in state.items():
            assert torch.equal(tensor, before[key][name]), (key, name)


def test_switching_batch_size_between_generations_keeps_stepping_correctly():
    """A second shape has its own graph and step clock: its generation must step (and match the
    reference) even though the first graph is no longer called."""
    model = TinyDiT(SPEC)
    config = ToCaConfig(interval=2, ratio=0.4, score="random", spatial_bonus=0.0, compiler="eager")
    toca = ToCa(config)
    fast = torch.compile(model, backend=toca.backend, fullgraph=True, dynamic=False)
    x, text = make_inputs(SPEC)
    with torch.no_grad():
        for batch in (2, 1, 2):
            oracle = ReferenceToCa(model, config)
            for t in timesteps(SPEC, 5):
                xb, tb = x[:batch], t[:batch]
                torch.testing.assert_close(fast(xb, tb, text), oracle(xb, tb, text), rtol=1e-6, atol=1e-6)
    assert toca.stats().partial_steps >= 6


def _generation(toca: ToCa, fast, x, text, steps: int) -> None:
    with toca.generation(steps):
        for i, t in enumerate(timesteps(SPEC, steps)):
            toca.step(i)
            fast(x, t, text)


def _region_counts(toca: ToCa) -> list[tuple[str, int, int]]:
    return [(r.label, r.partial_calls, r.tokens_refreshed) for r in toca.stats().regions]


def test_region_counters_add_up_across_a_schedule_change():
    """Counters are kept per region over every generation, also when the schedule is replaced
    in between: they equal the sums of two runs that each used one of the schedules."""
    model = TinyDiT(SPEC)
    first, second = ToCaConfig(interval=3, ratio=0.25, compiler="eager"), ToCaConfig(interval=2, ratio=0.5)
    x, text = make_inputs(SPEC)
    with torch.no_grad():
        both = ToCa(first)
        fast = torch.compile(model, backend=both.backend, fullgraph=True, dynamic=False)
        _generation(both, fast, x, text, 7)
        both.schedule = second.schedule()
        _generation(both, fast, x, text, 6)
        parts = []
        for config, steps in ((first, 7), (second, 6)):
            alone = ToCa(first)
            alone.schedule = config.schedule()
            torch._dynamo.reset()
            _generation(alone, torch.compile(model, backend=alone.backend, fullgraph=True, dynamic=False), x, text, steps)
            parts.append(_region_counts(alone))
    counts = _region_counts(both)
    assert any(calls for _, calls, _ in counts) and any(rows for _, _, rows in counts)  # caching ran
    assert counts == [(label, a + b, c + d) for (label, a, c), (_, b, d) in zip(*parts)]


def test_each_kind_of_step_is_decided_once_not_on_every_call():
    """The host works out a step kind's decisions and variant on its first call only: later
    calls and later generations reuse them (a call's Python runs right after the previous call's
    kernels, where every lookup is slow)."""
    model = TinyDiT(SPEC)
    toca = ToCa(ToCaConfig(interval=3, ratio=0.25, compiler="eager"))
    fast = torch.compile(model, backend=toca.backend, fullgraph=True, dynamic=False)
    x, text = make_inputs(SPEC)
    decided: list[tuple[int, bool]] = []
    original = runtime.Specialization._decide

    def spy(self, step: int, full: bool):
        decided.append((step, full))
        return original(self, step, full)

    runtime.Specialization._decide = spy
    try:
        with torch.no_grad():
            for _ in range(3):
                _generation(toca, fast, x, text, 7)
    finally:
        runtime.Specialization._decide = original
    assert toca.stats().partial_steps == 3 * 4
    assert sorted(decided) == sorted({(i, i % 3 == 0) for i in range(7)})
