"""Presets drive the compiled model: the full steps are the preset's, k is bucketed so a
whole generation compiles only a handful of variants, and a second generation recompiles
nothing."""
import pytest
import torch

from architectures import ArchSpec, TinyDiT, make_inputs, timesteps
from toca_compile import ToCa, ToCaConfig
from toca_compile.presets import PRESETS

SPEC = ArchSpec(depth=3, width=16, heads=2, mlp="gelu", norm="layer", adaln=True, cross_attn=True,
                attention="sdpa", sdpa_kwargs=False, batch=2, tokens=16, text_tokens=3, explicit_shapes=False)


@pytest.mark.parametrize("preset", ["dit-ddim-50", "pixart-dpm-20", "opensora-rflow-30"])
def test_preset_full_steps_and_variant_budget(preset):
    schedule = PRESETS[preset]
    model = TinyDiT(SPEC)
    x, text = make_inputs(SPEC)
    torch._dynamo.reset()
    toca = ToCa(ToCaConfig(preset=preset, compiler="eager"))
    fast = torch.compile(model, backend=toca.backend, fullgraph=True, dynamic=False)
    steps = schedule.num_steps
    with torch.no_grad():
        for t in timesteps(SPEC, steps):
            fast(x, t, text)
    stats = toca.stats()
    assert stats.full_steps == len(schedule.full_steps())
    assert stats.partial_steps == steps - stats.full_steps
    # full + step-factor levels + module-full refresh + a step on which block 0 computes alone
    assert stats.variants_compiled <= 1 + 4 + 1 + len(schedule.first_block_steps())
    if preset != "dit-ddim-50":
        return
    torch.compiler.set_stance("fail_on_recompile")
    try:
        with torch.no_grad():
            for t in timesteps(SPEC, steps):
                fast(x, t, text)
    finally:
        torch.compiler.set_stance("default")
    assert toca.stats().variants_compiled == stats.variants_compiled
