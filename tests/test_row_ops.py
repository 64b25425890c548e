"""Row gather/scatter helpers agree with a per-element Python loop for any axis layout."""
import torch
from hypothesis import given, strategies as st

from profiles import examples

from toca_compile.kernels.rows import put_rows, refresh_staleness, take_rows
from toca_compile.kernels.scores import select_tokens


@st.composite
def layouts(draw):
    ndim = draw(st.integers(2, 4))
    batch_axis, token_axis = draw(st.permutations(range(ndim)))[:2]
    shape = [draw(st.integers(1, 4)) for _ in range(ndim)]
    shape[batch_axis] = draw(st.integers(1, 3))
    shape[token_axis] = draw(st.integers(1, 6))
    k = draw(st.integers(1, shape[token_axis]))
    seed = draw(st.integers(0, 2**16))
    return shape, batch_axis, token_axis, k, seed


def _indices(shape, batch_axis, token_axis, k, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(shape[token_axis], generator=g)[:k] for _ in range(shape[batch_axis])])


@given(layouts())
@examples(60)
def test_take_rows_matches_loop(layout):
    shape, b_ax, t_ax, k, seed = layout
    t = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    idx = _indices(shape, b_ax, t_ax, k, seed)
    out = take_rows(t, idx, b_ax, t_ax)
    for b in range(shape[b_ax]):
        for j in range(k):
            expect = t.select(b_ax, b).select(t_ax - (t_ax > b_ax), int(idx[b, j]))
            got = out.select(b_ax, b).select(t_ax - (t_ax > b_ax), j)
            assert torch.equal(expect, got)


@given(layouts())
@examples(60)
def test_put_rows_writes_exactly_the_selected_rows(layout):
    shape, b_ax, t_ax, k, seed = layout
    cache = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    before = cache.clone()
    idx = _indices(shape, b_ax, t_ax, k, seed)
    rows_shape = list(shape)
    rows_shape[t_ax] = k
    rows = torch.randn(rows_shape, generator=torch.Generator().manual_seed(seed + 1))
    result = put_rows(cache, idx, b_ax, t_ax, rows)
    assert result.data_ptr() == cache.data_ptr()
    assert torch.equal(take_rows(cache, idx, b_ax, t_ax), rows)
    touched = torch.zeros(shape, dtype=torch.bool)
    put_rows(touched, idx, b_ax, t_ax, torch.ones(rows_shape, dtype=torch.bool))
    assert torch.equal(cache[~touched], before[~touched])


def test_selection_prefers_stale_tokens_and_staleness_resets():
    noise = torch.zeros(2, 5)
    stale = torch.tensor([[0.0, 3, 1, 0, 2], [4.0, 0, 0, 0, 0]])
    idx = select_tokens(noise, stale, weight=1.0, tokens=5, k=2)
    assert sorted(idx[0].tolist()) == [1, 4] and idx[1, 0].item() == 0
    refresh_staleness(stale, idx)
    assert stale[0].tolist() == [1.0, 0.0, 2.0, 1.0, 0.0]
