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


def refresh_staleness(stale: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """One more partial step for every token; the selected ones were just refreshed."""
    stale.add_(1.0)
    rows = torch.arange(idx.shape[0], device=idx.device)[:, None]
    return stale.index_put_((rows, idx), torch.zeros((), dtype=stale.dtype, device=stale.device))


def fill_cache(cache: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    return cache.copy_(value)


def clear_staleness(stale: torch.Tensor) -> torch.Tensor:
    return stale.zero_()


def taylor_update(d0: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor | None, value: torch.Tensor,
                  inv1: torch.Tensor, inv2: torch.Tensor) -> torch.Tensor:
    """TaylorSeer on a full step: finite differences of the branch output over full steps."""
    new_d1 = (value - d0) * inv1
    if d2 is not None:
        d2.copy_((new_d1 - d1) * inv2)
    d1.copy_(new_d1)
    return d0.copy_(value)


def taylor_forecast(d0: torch.Tensor, d1: torch.Tensor, d2: torch.Tensor | None, k: torch.Tensor) -> torch.Tensor:
    """TaylorSeer on a partial step ``k`` steps after the last full one: Σ dᵢ kⁱ / i!."""
    out = d0 + d1 * k
    if d2 is not None:
        out = out + d2 * (k * k * 0.5)
    return out
