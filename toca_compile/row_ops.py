"""Row gather/scatter and selection helpers called from the rewritten graphs.

They are plain functions of torch ops, so Inductor traces through them and the eager
executor runs them as they are. Writes use ``index_put_`` (Inductor turns it into an in-place
store of only the selected rows; ``scatter_`` would copy the whole cache).
"""
from __future__ import annotations

import torch


def _index_layout(idx: torch.Tensor, ndim: int, batch_axis: int, token_axis: int) -> torch.Tensor:
    shape = [1] * ndim
    shape[batch_axis], shape[token_axis] = idx.shape[0], idx.shape[1]
    ordered = idx if batch_axis < token_axis else idx.t()
    return ordered.reshape(shape)


def take_rows(t: torch.Tensor, idx: torch.Tensor, batch_axis: int, token_axis: int) -> torch.Tensor:
    """Rows ``idx[b]`` of ``t`` along ``token_axis`` for each batch entry ``b``; [B, k] indices."""
    batch, k = idx.shape
    if t.shape[batch_axis] != batch:
        t = t.expand([batch if d == batch_axis else -1 for d in range(t.dim())])
    target = list(t.shape)
    target[token_axis] = k
    index = _index_layout(idx, t.dim(), batch_axis, token_axis).expand(target)
    return torch.gather(t, token_axis, index)


def put_rows(cache: torch.Tensor, idx: torch.Tensor, batch_axis: int, token_axis: int, rows: torch.Tensor) -> torch.Tensor:
    """Write ``rows`` into ``cache`` at ``idx`` in place and return the cache."""
    last = max(batch_axis, token_axis)
    batch, k = idx.shape
    indices = []
    for d in range(last + 1):
        shape = [1] * (last + 1)
        if d == token_axis:
            indices.append(_index_layout(idx, last + 1, batch_axis, token_axis))
            continue
        size = batch if d == batch_axis else cache.shape[d]
        shape[d] = size
        indices.append(torch.arange(size, device=cache.device).reshape(shape))
    return cache.index_put_(tuple(indices), rows.to(cache.dtype))


def select_tokens(noise: torch.Tensor, stale: torch.Tensor, weight: float, tokens: int, k: int) -> torch.Tensor:
    """Indices [B, k] of the highest ``noise + weight * stale / N`` per batch row."""
    score = noise + stale * (weight / tokens)
    return torch.topk(score, k, dim=1).indices


def refresh_staleness(stale: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """One more partial step for every token; the selected ones were just refreshed."""
    stale.add_(1.0)
    rows = torch.arange(idx.shape[0], device=idx.device)[:, None]
    return stale.index_put_((rows, idx), torch.zeros((), dtype=stale.dtype, device=stale.device))


def fill_cache(cache: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    return cache.copy_(value)


def clear_staleness(stale: torch.Tensor) -> torch.Tensor:
    return stale.zero_()
