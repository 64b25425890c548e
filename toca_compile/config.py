"""User-facing configuration, validated at construction so mistakes surface early."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

Compiler = Literal["inductor", "eager"]
Score = Literal["random"]

_SCORES = ("random",)
_COMPILERS = ("inductor", "eager")


@dataclass(frozen=True)
class ToCaConfig:
    """Settings of token-wise caching.

    interval: every ``interval``-th denoising step (counted from the first step of a
        generation) is a *full* step that computes everything and refills the caches.
        ``interval=1`` disables caching.
    ratio: fraction of tokens each token-wise region (MLP, cross-attention, parallel block)
        recomputes on partial steps. Self-attention regions always reuse their cache.
    score: how tokens are chosen on partial steps. ``"random"``: a seeded uniform draw
        plus the staleness bonus.
    staleness_weight: weight of the staleness term ``count / N`` added to the score.
    seed: seed of the random score, so runs are reproducible.
    compiler: the final compiler of each rewritten graph: ``"inductor"`` (default) or
        ``"eager"`` (runs the rewritten FX graphs as they are; for tests and debugging).
    """

    interval: int = 3
    ratio: float = 0.15
    score: Score = "random"
    staleness_weight: float = 0.25
    seed: int = 0
    compiler: Compiler = "inductor"

    def __post_init__(self) -> None:
        _check_int("interval", self.interval, low=1)
        _check_float("ratio", self.ratio, low=0.0, high=1.0)
        _check_float("staleness_weight", self.staleness_weight, low=0.0, high=None)
        _check_int("seed", self.seed, low=0)
        _check_choice("score", self.score, _SCORES)
        _check_choice("compiler", self.compiler, _COMPILERS)

    def replace(self, **changes: object) -> "ToCaConfig":
        names = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"ToCaConfig has no field(s) {unknown}; fields are {sorted(names)}")
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return ToCaConfig(**values)  # type: ignore[arg-type]


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"ToCaConfig.{name} must be an integer >= {low}, got {value!r}")


def _check_float(name: str, value: object, low: float, high: float | None) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and value == value and value >= low and (high is None or value <= high)  # type: ignore[operator]
    if not ok:
        allowed = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"ToCaConfig.{name} must be a number {allowed}, got {value!r}")


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"ToCaConfig.{name} must be one of {list(allowed)}, got {value!r}")
