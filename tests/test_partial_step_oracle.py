"""Every diffusers transformer of the test zoo against the model-agnostic partial-step oracle
(tests/graph_oracle.py): on each step the compiled model's output, and its caches, equal "run
the original graph, every token-wise branch for all tokens, keep the selected rows, cached
values elsewhere". Each region is refreshed per token or reused whole exactly as the model
source says (``ZooEntry.reused_kinds`` / ``reused_labels``), and a partial step costs fewer
FLOPs than a full one."""
from __future__ import annotations

import pytest
import torch

from checks import assert_caching_active
from diffusers_zoo import ZOO, expects_reuse, first_tensor, steps_of
from graph_oracle import GraphOracle
from toca_compile import ToCa, ToCaConfig
from toca_compile.flops import counting

CONFIG = ToCaConfig(interval=3, ratio=0.3, score="random", spatial_bonus=0.0, compiler="eager")
STEPS = 6  # full, partial, partial, full, partial, partial


@pytest.mark.parametrize("name", list(ZOO))
def test_partial_steps_equal_the_graph_oracle(name):
    entry = ZOO[name]
    model, args, kwargs = entry.build()
    calls = list(steps_of(entry, model, args, kwargs, STEPS))

    toca = ToCa(CONFIG)
    fast = torch.compile(model, backend=toca.backend)
    got, caches, flops = [], [], []
    with torch.no_grad(), toca.generation(steps=STEPS):
        for i, (a, kw) in enumerate(calls):
            toca.step(i)
            with counting(toca) as log:
                got.append(first_tensor(fast(*a, **kw)).clone())
            flops.append(sum(log))
            if len(toca.graphs) == 1:
                caches.append({int(k.split(":")[0]): v["slot0"].clone() for k, v in toca.region_states().items()})
    assert_caching_active(toca, partial=True)
    # steps 3 and 4: both variants compiled by now, the same graphs on both
    assert flops[4] < flops[3], f"{name}: partial step {flops[4]} FLOPs, full step {flops[3]}"

    # each region refreshed per token or reused whole, as the model source says
    for graph in toca.graphs:
        for spec in graph.specs.values():
            for plan in spec.analysis.plans if spec.analysis is not None else ():
                reuse = not plan.partial
                assert reuse == expects_reuse(entry, plan.region.kind, plan.region.label), (
                    f"{name}: {plan.region.label} is {'reused whole' if reuse else 'refreshed per token'}"
                    f" ({plan.region.note or 'no note'})")

    torch._dynamo.reset()
    oracle = GraphOracle(CONFIG, lambda kind, label: expects_reuse(entry, kind, label))
    reference = torch.compile(model, backend=oracle.backend)
    with torch.no_grad():
        for i, (a, kw) in enumerate(calls):
            oracle.begin(i, new_generation=i == 0)
            want = first_tensor(reference(*a, **kw))
            torch.testing.assert_close(got[i], want, rtol=1e-5, atol=1e-5, msg=lambda m: f"{name}, step {i}: {m}")
            if caches:
                for index, cache in oracle.region_caches().items():
                    torch.testing.assert_close(caches[i][index], cache, rtol=1e-5, atol=1e-5,
                                               msg=lambda m: f"{name}, step {i}, region {index}: {m}")
