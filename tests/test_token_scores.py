"""ToCa's token scores: the sampled attention-received estimate converges to the explicit map,
and the compiled path selects the tokens the explicit scores say it should."""
import math

import pytest
import torch
from hypothesis import given, strategies as st

from profiles import examples

from architectures import ArchSpec, TinyDiT, make_inputs, timesteps
from toca_compile import ToCa, ToCaConfig
from toca_compile.kernels.scores import (attention_received, cross_entropy, kv_norm, received_from_map, select_tokens,
                                       select_tokens_together, spatial_bonus)


def _explicit_received(q, k):
    probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    received = probs.sum(dim=-2).mean(dim=1)
    return received / received.norm(dim=-1, keepdim=True)


def _explicit_received_over_rows(q, k, rows):
    """The explicit map's column sums over the given query rows only."""
    probs = torch.softmax(q[..., rows, :] @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    received = probs.sum(dim=-2).mean(dim=1)
    return received / received.norm(dim=-1, keepdim=True)


def test_score_from_the_shared_attention_map_is_the_exact_score():
    """Full steps with every query row scored compute the attention from its map and read s1 from it."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 20, 8, generator=g), torch.randn(2, 3, 20, 8, generator=g)
    probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), dim=-1)
    assert torch.allclose(received_from_map(probs), attention_received(q, k, None, 20), atol=1e-6)
    assert torch.allclose(received_from_map(probs), _explicit_received(q, k), atol=1e-6)

@given(st.integers(1, 2), st.integers(1, 3), st.integers(8, 48), st.integers(0, 1000))
@examples(30)
def test_attention_received_estimate_is_the_explicit_map_over_strided_query_rows(batch, heads, n, seed):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(batch, heads, n, 8, generator=g), torch.randn(batch, heads, n, 8, generator=g)
    for m in (max(1, n // 8), n // 2):
        rows = [int(i * n / m) for i in range(m)]  # evenly strided, starting at row 0
        expected = _explicit_received_over_rows(q, k, rows)
        assert torch.allclose(attention_received(q, k, None, m), expected, atol=1e-6)
    assert (attention_received(q, k, None, n) - _explicit_received(q, k)).norm() < 1e-5  # exact with every row


@given(st.integers(1, 2), st.integers(1, 3), st.integers(2, 12), st.integers(4, 40), st.booleans(), st.integers(0, 1000))
@examples(30)
def test_joint_attention_score_is_the_streams_own_block_of_the_explicit_map(batch, heads, t, n, text_first, seed):
    """Joint attention over [text; image] (or [image; text]): the image score sums, over sampled
    image query rows, the softmax over every key at the image columns only."""
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(batch, heads, t + n, 8, generator=g), torch.randn(batch, heads, t + n, 8, generator=g)
    offset = t if text_first else 0
    for m in (max(1, n // 4), n):
        rows = [offset + int(i * n / m) for i in range(m)]
        probs = torch.softmax(q[..., rows, :] @ k.transpose(-1, -2) / math.sqrt(8), dim=-1)
        received = probs[..., offset:offset + n].sum(dim=-2).mean(dim=1)
        expected = received / received.norm(dim=-1, keepdim=True)
        got = attention_received(q, k, None, m, offset, n)
        assert got.shape == (batch, n)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("n", [8, 16, 48])
def test_attention_received_estimate_converges_on_average(n):
    # one draw can be luckier with fewer rows; the mean error over many draws falls with more rows
    g = torch.Generator().manual_seed(n)
    errors = torch.zeros(3)
    for _ in range(200):
        q, k = torch.randn(2, 3, n, 8, generator=g), torch.randn(2, 3, n, 8, generator=g)
        exact = _explicit_received(q, k)
        errors += torch.tensor([(attention_received(q, k, None, m) - exact).norm().item()
                                for m in (max(1, n // 8), n // 2, n)])
    errors /= 200
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-5


def test_cross_entropy_is_highest_for_spread_attention_and_shared_across_cfg_halves():
    q = torch.zeros(2, 1, 3, 4)
    q[:, :, 0] = 0.0   # token 0: uniform over text (max entropy)
    q[:, :, 1] = 5.0   # tokens 1, 2: peaked
    q[:, :, 2] = -5.0
    k = torch.eye(4)[None, None, :3].repeat(2, 1, 1, 1)
    score = cross_entropy(q, k, None, cfg_halves=True)
    assert score[0].argmax() == 0 and torch.allclose(score[0], score[1])


def test_kv_norm_matches_its_formula():
    v = torch.randn(2, 3, 5, 4)
    expect = (1 - v.norm(dim=-1)).sum(dim=1)
    torch.testing.assert_close(kv_norm(v), expect / expect.norm(dim=-1, keepdim=True))


@pytest.mark.parametrize("grid", [(4, 6), (2, 4, 4), ()])
def test_spatial_bonus_goes_to_one_token_per_cell(grid):
    n = math.prod(grid) if grid else 10
    score = torch.rand(2, n, generator=torch.Generator().manual_seed(0))
    boosted = spatial_bonus(score, grid, 2, 0.5)
    gained = boosted - score
    cells = n // 4 if grid else math.ceil(n / 4)
    assert ((gained > 0).sum(dim=1) == cells).all()
    assert torch.allclose(gained.amax(dim=1), 0.5 * score.amax(dim=1))


def test_shared_selection_gives_both_cfg_halves_the_same_tokens():
    base = torch.rand(4, 9, generator=torch.Generator().manual_seed(1))
    idx = select_tokens(base, torch.zeros(4, 9), 0.25, 9, 3, shared=True)
    assert torch.equal(idx[:2], idx[2:])


@given(st.integers(2, 5), st.sampled_from([2, 4, 6]), st.sampled_from([(4, 4), (2, 4, 4), ()]), st.integers(1, 8),
       st.booleans(), st.booleans(), st.integers(0, 1000))
@examples(30)
def test_one_top_k_for_several_regions_picks_each_regions_own_rows(regions, batch, grid, k, ties, shared, seed):
    """Selections stacked into one top-k (select_tokens_together, what a partial step runs) give
    every region exactly the indices, in the same order, that its own top-k gives, with the
    spatial bonus, shared CFG halves and tied scores (scores drawn from a few values)."""
    n = math.prod(grid) if grid else 13
    g = torch.Generator().manual_seed(seed)
    draw = (lambda: torch.randint(0, 3, (batch, n), generator=g).float()) if ties else (lambda: torch.rand(batch, n, generator=g))
    bases = tuple(draw() for _ in range(regions))
    stales = tuple(torch.randint(0, 4, (batch, n), generator=g).float() for _ in range(regions))
    together = select_tokens_together(bases, stales, 0.25, n, k, grid, 2, 0.6, shared)
    assert together.shape == (regions, batch, k)
    for r in range(regions):
        own = torch.topk(spatial_bonus(bases[r] + stales[r] * (0.25 / n), grid, 2, 0.6), k, dim=1).indices
        if shared:
            own = torch.cat([own[: batch // 2], own[: batch // 2]])
        assert torch.equal(together[r], own), r
        assert torch.equal(together[r], select_tokens(bases[r], stales[r], 0.25, n, k, grid, 2, 0.6, shared)), r


def test_compiled_selection_follows_the_attention_each_token_received(monkeypatch):
    spec = ArchSpec(depth=1, width=16, heads=2, mlp="gelu", norm="layer", adaln=True, attention="sdpa",
                    sdpa_kwargs=False, batch=2, tokens=16, text_tokens=2, explicit_shapes=False)
    model = TinyDiT(spec)
    x, text = make_inputs(spec)
    t0, t1 = timesteps(spec, 2)
    captured = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording(q, k, v, *args, **kwargs):
        captured.append((q.detach().clone(), k.detach().clone()))
        return sdpa(q, k, v, *args, **kwargs)

    with torch.no_grad():
        monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording)
        model(x, t0, text)
        monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", sdpa)
        exact = _explicit_received(*captured[0])
        k = 4
        config = ToCaConfig(interval=5, ratio=k / spec.tokens, score="attention", score_queries=spec.tokens,
                            staleness_weight=0.0, spatial_bonus=0.0, compiler="eager")
        toca = ToCa(config)
        fast = torch.compile(model, backend=toca.backend, fullgraph=True, dynamic=False)
        fast(x, t0, text)
        fast(x, t1, text)
    states = toca.region_states()
    mlp = next(v for name, v in states.items() if name.endswith(".mlp"))
    chosen = (mlp["stale"] == 0)
    expected = torch.zeros_like(chosen)
    expected.scatter_(1, exact.topk(k, dim=1).indices, True)
    assert torch.equal(chosen, expected)
    torch.testing.assert_close(mlp["base"], exact, rtol=1e-5, atol=1e-6)
