"""ToCa's token scores, computed inside the compiled graphs (no host syncs, no graph breaks).

On full steps each token-wise region stores a base score per token from its block's
attention (``attention_received``, s1), cross-attention entropy (``cross_entropy``, s2) or
value norms (``kv_norm``, DuCa). On partial steps ``select_tokens`` adds the staleness term
(s3) and the spatial-spread bonus (s4) and takes the top-k rows. The ``random`` score is drawn
on the host (``random_scores``) from a seeded CPU generator, so that every executor (Inductor,
eager, the tests' reference implementation) sees the same numbers.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _l2(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, p=2.0, dim=-1)


def _sample_rows(n: int, m: int) -> list[int] | None:
    """Evenly strided query rows; ``None`` means all of them (exact)."""
    if m <= 0 or m >= n:
        return None
    step = n / m
    return [int(i * step) for i in range(m)]


def attention_received(q: torch.Tensor, k: torch.Tensor, scale: float | None, samples: int,
                       offset: int = 0, span: int | None = None) -> torch.Tensor:
    """s1: l2-normalised head-mean column sums of softmax(q kᵀ·scale), [B, N] for q, k [B, H, N, D].

    Fused attention never materialises the map, so the column sums are estimated from
    ``samples`` strided query rows (exact when ``samples >= N``); only on full steps. Joint
    attention (text and image tokens in one sequence): ``span`` tokens from ``offset`` are this
    stream's; its query rows are sampled, the softmax runs over every key as the attention's
    does, and the stream's own columns are summed.
    """
    scale = (1.0 / math.sqrt(q.shape[-1])) if scale is None else scale
    if span is not None:
        q = q[..., offset:offset + span, :]
    rows = _sample_rows(q.shape[-2], samples)
    if rows is not None:
        q = q[..., rows, :]
    probs = torch.softmax((q.float() @ k.float().transpose(-1, -2)) * scale, dim=-1)  # [B, H, m, L]
    if span is not None:
        probs = probs[..., offset:offset + span]
    received = probs.sum(dim=-2).mean(dim=1) * (probs.shape[-1] / q.shape[-2])
    return _l2(received)


def received_from_map(probs: torch.Tensor) -> torch.Tensor:
    """s1 from the whole attention map ``probs`` [B, H, N, N] (exact ``attention_received``).

    Used on full steps when every query row is scored: the rewritten graph then computes the
    self-attention from that map itself (softmax(q kᵀ·scale) v) instead of a fused attention
    kernel computing it a second time.
    """
    return _l2(probs.float().sum(dim=-2).mean(dim=1))


def cross_entropy(q: torch.Tensor, k: torch.Tensor, scale: float | None, cfg_halves: bool) -> torch.Tensor:
    """s2: l2-normalised ``1 + H`` of each image token's head-mean cross-attention map, [B, N]."""
    scale = (1.0 / math.sqrt(q.shape[-1])) if scale is None else scale
    probs = torch.softmax((q.float() @ k.float().transpose(-1, -2)) * scale, dim=-1).mean(dim=1)  # [B, N, T]
    entropy = -(probs * torch.log(probs + 1e-7)).sum(dim=-1)
    if cfg_halves and entropy.shape[0] % 2 == 0:
        half = entropy.shape[0] // 2
        mean = (entropy[:half] + entropy[half:]) / 2
        entropy = torch.cat([mean, mean])
    return _l2(1.0 + entropy)


def kv_norm(v: torch.Tensor, offset: int = 0, span: int | None = None) -> torch.Tensor:
    """DuCa's attention-free score from value vectors v [B, H, N, D]: l2norm(Σ_h (1 - ‖v_h‖));
    with ``span``, of this stream's ``span`` values from ``offset`` (joint attention)."""
    if span is not None:
        v = v[..., offset:offset + span, :]
    return _l2((1.0 - v.float().norm(dim=-1)).sum(dim=1))


def spatial_bonus(score: torch.Tensor, grid: tuple[int, ...], cell: int, bonus: float) -> torch.Tensor:
    """s4: in each ``cell``×``cell`` patch of the token grid the best token gets ``bonus·max``.

    ``grid`` is (h, w) or (frames, h, w); an empty grid means tokens on a line, cells of
    ``cell²`` consecutive tokens.
    """
    if bonus == 0 or cell <= 1:
        return score
    batch, n = score.shape
    if len(grid) >= 2 and grid[-1] % cell == 0 and grid[-2] % cell == 0:
        frames = n // (grid[-1] * grid[-2])
        h, w = grid[-2] // cell, grid[-1] // cell
        cells = score.reshape(batch, frames, h, cell, w, cell).permute(0, 1, 2, 4, 3, 5).reshape(batch, -1, cell * cell)
        best = cells == cells.amax(dim=-1, keepdim=True)
        mask = best.reshape(batch, frames, h, w, cell, cell).permute(0, 1, 2, 4, 3, 5).reshape(batch, n)
    else:
        size = cell * cell
        pad = (-n) % size
        padded = F.pad(score, (0, pad), value=float("-inf"))
        cells = padded.reshape(batch, -1, size)
        mask = (cells == cells.amax(dim=-1, keepdim=True)).reshape(batch, -1)[:, :n]
    return score + mask.to(score.dtype) * (bonus * score.amax(dim=-1, keepdim=True))


def select_tokens(base: torch.Tensor, stale: torch.Tensor, weight: float, tokens: int, k: int,
                  grid: tuple[int, ...] = (), cell: int = 0, bonus: float = 0.0,
                  shared: bool = False) -> torch.Tensor:
    """Indices [B, k] of the highest ``base + weight·stale/N (+ spatial bonus)`` per batch row.

    ``shared``: both CFG halves of a batch use the first half's choice (same tokens).
    """
    score = base + stale * (weight / tokens)
    score = spatial_bonus(score, grid, cell, bonus)
    idx = torch.topk(score, k, dim=1).indices
    if shared and idx.shape[0] % 2 == 0:
        half = idx.shape[0] // 2
        idx = torch.cat([idx[:half], idx[:half]])
    return idx


def select_tokens_together(bases: tuple[torch.Tensor, ...], stales: tuple[torch.Tensor, ...], weight: float,
                           tokens: int, k: int, grid: tuple[int, ...] = (), cell: int = 0, bonus: float = 0.0,
                           shared: bool = False) -> torch.Tensor:
    """``select_tokens`` for several regions at once, [R, B, k]: one top-k over their stacked
    [R·B, N] scores (each row ranked on its own, so the rows are those of R separate calls)."""
    base, stale = torch.stack(bases), torch.stack(stales)
    regions, batch, n = base.shape
    idx = select_tokens(base.reshape(regions * batch, n), stale.reshape(regions * batch, n), weight, tokens, k,
                        grid, cell, bonus).reshape(regions, batch, k)
    if shared and batch % 2 == 0:
        half = batch // 2
        idx = torch.cat([idx[:, :half], idx[:, :half]], dim=1)
    return idx


def random_scores(seed: int, step: int, region: int, batch: int, tokens: int) -> torch.Tensor:
    """Uniform [0, 1) scores of shape ``(batch, tokens)`` for one region at one step.

    ``region`` is the region's index in graph order (see ``Region.index``).
    """
    generator = torch.Generator().manual_seed((seed * 1_000_003 + step * 7_919 + region * 104_729) % (2**63 - 1))
    return torch.rand(batch, tokens, generator=generator)
