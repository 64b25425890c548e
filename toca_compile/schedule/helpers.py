"""What schedules and the runtime share: region kinds, ``k`` from a ratio, the partial plans."""
from __future__ import annotations

import math
from typing import Literal, get_args

import torch

from ..regions import MIXING_KINDS, RegionKind
from .base import Schedule, as_schedule

#: every region kind the detector can report
KINDS: tuple[str, ...] = get_args(RegionKind)


#: how a ratio becomes a token count: ``"ceil"`` (toca-compile's reading) or ``"floor"`` (the
#: official ToCa code's ``int(r * N)``)
TokenRounding = Literal["ceil", "floor"]
TOKEN_ROUNDINGS: tuple[str, ...] = get_args(TokenRounding)


def tokens_for(ratio: float, tokens: int, rounding: TokenRounding = "ceil") -> int:
    """Tokens refreshed out of ``tokens`` at ``ratio``.

    ``"ceil"``: ceil(ratio * N), at least 1 if ratio > 0 (a positive ratio always refreshes).
    ``"floor"``: what the official ToCa code computes (``int(torch.tensor(r) * N)`` in its
    ``cache_cutfresh.py``): the product in float32, truncated; 0 when it is below 1.
    """
    if not ratio > 0:
        return 0
    if rounding == "floor":
        product = torch.tensor(min(float(ratio), 1.0), dtype=torch.float32) * tokens
        return min(tokens, int(product))
    return min(tokens, max(1, math.ceil(ratio * tokens - 1e-9)))


def distinct_partial_plans(schedule: Schedule, kinds_depths: list[tuple[str, int]], num_blocks: int,
                           tokens: list[int], num_steps: int | None = None) -> set[tuple[int, ...]]:
    """The tuples of per-region ``k`` that the partial steps of one generation use.

    One tuple per compiled partial variant: ``k = schedule.tokens(...)`` for token-wise
    regions, 0 for token-mixing regions (reused whole), ``N`` for a region whose kind is
    :meth:`~Schedule.module_full` or whose block is :meth:`~Schedule.block_full` on that step.
    Full steps and DuCa aggressive steps (no block runs) are separate variants and are not
    listed. ``num_steps`` defaults to the schedule's own.
    """
    if len(kinds_depths) != len(tokens):
        raise ValueError(f"kinds_depths has {len(kinds_depths)} regions but tokens has {len(tokens)}")
    schedule = as_schedule(schedule)
    steps = num_steps if num_steps is not None else schedule.num_steps
    if steps is None:
        raise ValueError("distinct_partial_plans needs num_steps for a schedule without a num_steps field")
    plans: set[tuple[int, ...]] = set()
    for step in range(steps):
        if schedule.is_full(step) or schedule.aggressive(step):
            continue
        ks = []
        for (kind, depth), n in zip(kinds_depths, tokens):
            if schedule.module_full(step, kind) or schedule.block_full(step, depth):
                ks.append(n)
            elif kind in MIXING_KINDS:
                ks.append(0)
            else:
                ks.append(schedule.tokens(step, kind, depth, num_blocks, n))
        plans.add(tuple(ks))
    return plans


__all__ = ["KINDS", "TOKEN_ROUNDINGS", "TokenRounding", "distinct_partial_plans", "tokens_for"]
