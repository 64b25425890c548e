"""Real diffusers transformers at tiny random-weight configs: every block's regions are
found and ``interval=1`` reproduces the model through the rewritten graphs. (Partial steps,
their FLOPs and their outputs are checked against the graph oracle in
test_partial_step_oracle.py.)"""
import warnings

import pytest
import torch

import toca_compile
from checks import assert_caching_active
from diffusers_zoo import ZOO, first_tensor, steps_of
from toca_compile import ToCa, ToCaConfig

REQUIRED = ["DiTTransformer2DModel", "PixArtTransformer2DModel", "SD3Transformer2DModel",
            "FluxTransformer2DModel", "LatteTransformer3DModel"]
OTHERS = [name for name in ZOO if name not in REQUIRED]


# Models whose graph breaks split blocks across graphs: what is found there is pinned so that
# a change either way is noticed. Everything found is still cached correctly.
KNOWN_GAPS = {
    "MochiTransformer3DModel": ({"mlp": 3}, "its attention keeps only the valid tokens of each sample "
                                "(torch.nonzero): graph breaks split each attention residual across graphs"),
    "HiDreamImageTransformer2DModel": ({"joint_attn": 2, "attn": 1}, "mixture-of-experts MLPs break the "
                                       "graph (bincount().cpu(), a Python loop over experts)"),
    "WanAnimate2Transformer3DModel": ({"cross_attn": 2, "mlp": 2}, "graph breaks (.item(), a Python loop "
                                      "over samples for RoPE) split each self-attention residual across graphs"),
    "NucleusMoEImageTransformer2DModel[moe]": ({"joint_attn": 2}, "the expert loop breaks the graph "
                                               "(.tolist()) inside every MoE MLP residual"),
    "ZImageTransformer2DModel": ({"attn": 3, "mlp": 3}, "the caption refiner runs on per-sample 2-D tensors, "
                                 "not a [B, N, C] stream, so it is computed every step (it is constant anyway)"),
}


def _check_model(name):
    entry = ZOO[name]
    model, args, kwargs = entry.build()
    report = toca_compile.inspect(model, *args, **kwargs)
    expected = {kind: n for kind, n in entry.num_blocks.items() if n}
    if name in KNOWN_GAPS:
        expected = KNOWN_GAPS[name][0]
    assert report.kinds() == expected, f"{name}: found {report.kinds()}, expected {expected}\n{report}"

    torch._dynamo.reset()
    toca = ToCa(ToCaConfig(interval=1, compiler="eager"))
    fast = torch.compile(model, backend=toca.backend, fullgraph=entry.fullgraph_ok and entry.graphs == 1, dynamic=False)
    with torch.no_grad():
        for a, kw in steps_of(entry, model, args, kwargs, 2):
            torch.testing.assert_close(first_tensor(fast(*a, **kw)), first_tensor(model(*a, **kw)), rtol=1e-5, atol=1e-5)
    assert_caching_active(toca)  # interval 1 through the rewritten graphs, not a fallback


@pytest.mark.parametrize("name", REQUIRED)
def test_required_models(name):
    _check_model(name)


@pytest.mark.parametrize("name", OTHERS)
def test_more_diffusers_transformers(name):
    _check_model(name)


@pytest.mark.parametrize("name", ["Lumina2Transformer2DModel", "MochiTransformer3DModel", "HiDreamImageTransformer2DModel"])
def test_models_with_graph_breaks_give_the_same_generation_twice(name):
    """Their graphs serve several blocks (or parts of them): the same inputs must give the same
    outputs, generation after generation, with partial steps in each."""
    entry = ZOO[name]
    model, args, kwargs = entry.build()
    toca = ToCa(ToCaConfig(interval=3, ratio=0.25, compiler="eager"))
    fast = torch.compile(model, backend=toca.backend)
    runs = []
    with torch.no_grad():
        for _ in range(3):
            runs.append([first_tensor(fast(*a, **kw)) for a, kw in steps_of(entry, model, args, kwargs, 5)])
    for a, b in zip(runs[1], runs[2]):
        assert torch.equal(a, b)
    for a, b in zip(runs[0], runs[1]):
        assert torch.equal(a, b)
    stats = toca.stats()
    assert stats.generations == 3 and stats.partial_steps == 3 * 3 and stats.full_steps == 3 * 2


def test_the_zoo_covers_every_transformer_class_diffusers_ships():
    """A class added to diffusers fails this until the zoo builds it (ZOO for denoisers, EXTRA
    for transformers that are not DiT denoisers, each with its reason in the notes)."""
    from diffusers_zoo import EXTRA, transformer_classes

    covered = {name.split("[")[0] for name in [*ZOO, *EXTRA]}
    missing = [name for name in transformer_classes() if name not in covered]
    assert not missing, f"diffusers transformer classes without a zoo entry: {missing}"


@pytest.mark.parametrize("name, image_first", [("SD3Transformer2DModel", True), ("FluxTransformer2DModel", False)])
def test_joint_attention_scores_follow_each_models_token_order(name, image_first):
    """SD3's joint attention puts the image tokens first, FLUX's puts the text first (diffusers'
    attention processors): each MLP's score reads its own stream's rows and columns."""
    model, args, kwargs = ZOO[name].build()
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = toca_compile.inspect(model, *args, **kwargs)
    text = kwargs["encoder_hidden_states"].shape[1]
    joint = [p for g in report.graphs for p in g.plans
             if p.partial and p.region.block_name.startswith("transformer_blocks.")]
    assert joint and all(p.score.kind == "attention" for p in joint), report
    for plan in joint:
        is_text = plan.region.tokens == text
        image = [p.region.tokens for p in joint if p.region.tokens != text][0]
        expected = (image if is_text else 0) if image_first else (0 if is_text else text)
        assert (plan.score.offset, plan.score.span) == (expected, plan.region.tokens), plan.region.label
