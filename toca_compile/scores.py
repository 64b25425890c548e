"""Token scores that decide which rows a token-wise region recomputes on a partial step.

Scores are computed inside the compiled partial graph from tensors the runtime owns, so no
decision needs a host sync. The random draw is made on the host from a seeded CPU generator
so that every backend (Inductor, eager, the reference implementation in the tests) sees the
same numbers.
"""
from __future__ import annotations

import torch


def random_scores(seed: int, step: int, region: int, batch: int, tokens: int) -> torch.Tensor:
    """Uniform [0, 1) scores of shape ``(batch, tokens)`` for one region at one step.

    ``region`` is the region's index in graph order (see ``Region.index``).
    """
    generator = torch.Generator().manual_seed((seed * 1_000_003 + step * 7_919 + region * 104_729) % (2**63 - 1))
    return torch.rand(batch, tokens, generator=generator)


def staleness_term(stale: torch.Tensor, weight: float, tokens: int) -> torch.Tensor:
    """The s3 staleness bonus: ``weight * count / N`` (count = partial steps since refresh)."""
    return stale * (weight / tokens)
