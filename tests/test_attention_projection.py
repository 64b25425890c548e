"""``ToCaConfig(attention_projection="recompute")``: an attention region reused on a partial
step caches the attention output before its output projection and runs the projection again on
every token, as the authors' FLUX and FORA code does. The images are the same as with the whole
branch reused; the FLOPs grow by exactly those projections, which is how the published FLUX
figures count them."""
from __future__ import annotations

import pytest
import torch
from architectures import TinyDiT, arch_specs, make_inputs, timesteps
from checks import assert_caching_active
from diffusers_zoo import ZOO
from hypothesis import given
from hypothesis import strategies as st
from oracle import ReferenceToCa
from profiles import examples

from toca_compile import ToCa, ToCaConfig
from toca_compile.flops import generation_flops
from toca_compile.regions import MIXING_KINDS

TOL = dict(rtol=1e-6, atol=1e-6)


def _generation(model, config, call, steps):
    """Outputs of one generation of ``steps`` calls ``call(fast, i)``, and the ToCa object."""
    torch._dynamo.reset()
    toca = ToCa(config)
    fast = torch.compile(model, backend=toca.backend, dynamic=False)
    with torch.no_grad(), toca.generation(steps=steps):
        outs = []
        for i in range(steps):
            toca.step(i)
            outs.append(call(fast, i).clone())
    return outs, toca


def _plans(toca):
    return [p for entry in toca.graphs for spec in entry.specs.values() for p in spec.analysis.plans]


def _flux_call(kwargs, args, timesteps_):
    def call(fn, i):
        return fn(*args, **{**kwargs, "timestep": timesteps_[i].expand(args[0].shape[0])})[0]
    return call


@given(arch_specs(), st.integers(2, 4), st.sampled_from(["toca", "fora"]), st.integers(0, 3))
@examples(15)
def test_recomputed_projection_equals_the_reference_that_reuses_the_branch(spec, interval, mode, seed):
    """On generated transformers the outputs equal the eager reference (which reuses every
    attention branch whole) over a generation with partial steps; every attention region whose
    attention is visible in the graph (SDPA or softmax(QKᵀ)V) caches its output projection's input."""
    model = TinyDiT(spec)
    x, text = make_inputs(spec, seed)
    config = ToCaConfig(interval=interval, ratio=0.5, mode=mode, score="random", spatial_bonus=0.0, seed=seed,
                        compiler="eager", attention_projection="recompute")
    oracle = ReferenceToCa(model, config.replace(attention_projection="reuse"))
    steps = 2 * interval + 1
    ts = timesteps(spec, steps)
    got, toca = _generation(model, config, lambda fn, i: fn(x, ts[i], text), steps)
    with torch.no_grad():
        want = [oracle(x, t, text) for t in ts]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **TOL)
    assert_caching_active(toca, partial=True)
    attention = [p for p in _plans(toca) if p.region.kind in MIXING_KINDS]
    assert attention or spec.parallel  # parallel blocks (attention and MLP side by side) have none
    if spec.attention != "mha":  # nn.MultiheadAttention: one opaque node, projection inside
        assert all(p.reproject and len(p.slots) == 2 for p in attention)


def test_flux_outputs_equal_reuse_and_flops_grow_by_the_projections():
    """diffusers' FLUX (double- and single-stream blocks): with ToCa's interval schedule the
    generation equals the one that reuses the attention branches whole, to float tolerance, and
    costs exactly one output projection of every token of both streams more per double-stream
    block and reused step (2·B·N·C_in·C_out, from the modules' weights)."""
    model, args, kwargs = ZOO["FluxTransformer2DModel"].build()
    model.eval()
    steps, interval = 7, 3
    ts = torch.linspace(1.0, 0.1, steps)
    call = _flux_call(kwargs, args, ts)
    base = ToCaConfig(interval=interval, ratio=0.3, score="random", compiler="eager")
    reused, toca_reuse = _generation(model, base, call, steps)
    again, toca = _generation(model, base.replace(attention_projection="recompute"), call, steps)
    for g, w in zip(again, reused):
        torch.testing.assert_close(g, w, **TOL)
    assert_caching_active(toca, partial=True)
    reprojected = [p for p in _plans(toca) if p.reproject]
    assert len(reprojected) == 4  # two double-stream blocks, image and text stream each
    assert not any(p.reproject for p in _plans(toca_reuse))

    batch, image_tokens = args[0].shape[:2]
    text_tokens = kwargs["encoder_hidden_states"].shape[1]
    per_step = 0
    for block in model.transformer_blocks:
        for linear, tokens in ((block.attn.to_out[0], image_tokens), (block.attn.to_add_out, text_tokens)):
            per_step += 2 * batch * tokens * linear.in_features * linear.out_features
    partial_steps = steps - len(range(0, steps, interval))

    def inputs(i):
        return args, {**kwargs, "timestep": ts[i].expand(args[0].shape[0])}

    counts = {name: generation_flops(model, inputs, steps, base.replace(attention_projection=name), device="cpu")
              for name in ("reuse", "recompute")}
    assert counts["recompute"].uncached == counts["reuse"].uncached
    assert counts["recompute"].cached - counts["reuse"].cached == partial_steps * per_step


def test_interval_one_with_recomputed_projection_equals_the_plain_model():
    model, args, kwargs = ZOO["FluxTransformer2DModel"].build()
    model.eval()
    ts = torch.linspace(1.0, 0.5, 3)
    call = _flux_call(kwargs, args, ts)
    got, toca = _generation(model, ToCaConfig(interval=1, compiler="eager", attention_projection="recompute"),
                            call, 3)
    with torch.no_grad():
        want = [call(model, i) for i in range(3)]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **TOL)
    assert_caching_active(toca)


@pytest.mark.parametrize("value", ["all", True, None])
def test_attention_projection_takes_only_reuse_or_recompute(value):
    with pytest.raises(ValueError, match="attention_projection"):
        ToCaConfig(attention_projection=value)
