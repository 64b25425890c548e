"""Named schedules: the settings of the official ToCa code, plus FORA and a default.

``get_preset("dit-ddim-50")`` returns a :class:`~toca_compile.schedule.ToCaSchedule`;
keyword overrides replace single fields (``get_preset("flux-50-n5", num_steps=28)``) and are
validated like any other schedule. Mapping fields (``module_factors``, ``module_cycles``,
``stream_offsets``) given as overrides are merged into the preset's own mapping.

Every preset's step factor is bucketed into ``step_levels`` (default 4) values, so one
generation compiles at most that many partial variants besides the full one (plus one per
pattern of per-module refreshes in the OpenSora preset).
"""
from __future__ import annotations

from collections.abc import Mapping

from .schedule import ToCaSchedule

_MAPPING_FIELDS = ("module_factors", "module_cycles", "stream_offsets")


def _dit(num_steps: int, interval: int, step_factor: tuple[float, float],
         layer_factor: tuple[float, float]) -> ToCaSchedule:
    # official DiT code: step index counts down; attention reused, every other module x2.5
    return ToCaSchedule(
        num_steps=num_steps, full_rule="threshold", interval=interval, first_full=1, count_down=True,
        threshold_weight=0.4, sensitive_window=(0.2, 0.4), base_ratio=0.07, step_factor=step_factor,
        layer_factor=layer_factor,
        module_factors={"attn": 0.0, "joint_attn": 0.0, "mlp": 2.5, "cross_attn": 2.5, "parallel": 2.5},
    )


def _flux(interval: int) -> ToCaSchedule:
    # official FLUX code: first 3 steps full, then every N; layer factor 1.5 - l/27 with l
    # counted within each stream (FLUX.1 has 19 double-stream blocks before the 38 single-
    # stream ones); double-stream modules x0.4, single-stream x1.6
    return ToCaSchedule(
        num_steps=50, full_rule="interval", interval=interval, first_full=3, base_ratio=0.1,
        layer_factor=(1.5, 0.5), layer_span=27, stream_offsets={"parallel": 19},
        module_factors={"attn": 0.0, "joint_attn": 0.0, "mlp": 0.4, "cross_attn": 0.4, "parallel": 1.6},
    )


PRESETS: dict[str, ToCaSchedule] = {
    "dit-ddim-50": _dit(50, 3, step_factor=(-1.0, 3.0), layer_factor=(0.8, 1.2)),
    "dit-ddpm-250": _dit(250, 4, step_factor=(0.6, 1.4), layer_factor=(1.8, 0.2)),
    "pixart-dpm-20": ToCaSchedule(
        num_steps=20, full_rule="threshold", interval=3, first_full=1, count_down=False,
        threshold_weight=0.2, base_ratio=0.3, step_factor=(1.9, 0.1), layer_factor=(1.6, 0.4),
        module_factors={"attn": 0.0, "joint_attn": 0.0, "cross_attn": 0.6, "mlp": 1.6, "parallel": 1.6},
    ),
    "opensora-rflow-30": ToCaSchedule(
        num_steps=30, full_rule="cycles", interval=3, first_full=3, base_ratio=0.1,
        module_cycles={"attn": 3, "joint_attn": 3, "cross_attn": 6, "mlp": 3, "parallel": 3},
        # official: 0.1 x (1 + 0.33 x 1.5) for MLP, 0.1 x (1 - 0.67 x 1.5) < 0 -> 0 for cross-attention
        module_factors={"attn": 0.0, "joint_attn": 0.0, "cross_attn": 0.0, "mlp": 1.495, "parallel": 1.495},
    ),
    "flux-50-n4": _flux(4),
    "flux-50-n5": _flux(5),
    "flux-50-n6": _flux(6),
    "fora": ToCaSchedule(num_steps=50, full_rule="interval", interval=3, base_ratio=0.0),
    "default": ToCaSchedule(num_steps=50, full_rule="interval", interval=3, base_ratio=0.15),
}

DESCRIPTIONS: dict[str, str] = {
    "dit-ddim-50": "DiT-XL/2, DDIM 50 steps: threshold rule N=3 (th=2 in the sensitive 20-40% steps), "
                   "r=0.07 x step (3-4s/T) x layer (0.8->1.2) x MLP 2.5, attention reused",
    "dit-ddpm-250": "DiT-XL/2, DDPM 250 steps: threshold rule N=4, r=0.07 x step (0.6->1.4) x layer (1.8->0.2) "
                    "x MLP 2.5, attention reused",
    "pixart-dpm-20": "PixArt-alpha, DPM-Solver++ 20 steps: th=round(3/(0.8+0.4s/T)), r=0.30 x step (1.9->0.1) "
                     "x layer (1.6->0.4) x (cross-attn 0.6, MLP 1.6)",
    "opensora-rflow-30": "OpenSora 1.2, rflow 30 steps: first 3 full, then self-attn and MLP every 3, cross-attn "
                         "every 6; MLP ratio 0.15, cross-attn reused",
    "flux-50-n4": "FLUX.1-dev, 50 steps: first 3 full then every 4, r=0.1 x (1.5-l/27) x (double-stream 0.4, "
                  "single-stream 1.6)",
    "flux-50-n5": "FLUX.1-dev, 50 steps: first 3 full then every 5 (the paper's 3.3x FLOPs setting), "
                  "r=0.1 x (1.5-l/27) x (double 0.4, single 1.6)",
    "flux-50-n6": "FLUX.1-dev, 50 steps: first 3 full then every 6, r=0.1 x (1.5-l/27) x (double 0.4, single 1.6)",
    "fora": "FORA: full every 3 steps, every branch output reused in between (ratio 0)",
    "default": "full every 3 steps, 15% of tokens refreshed in every token-wise region (ToCaConfig's defaults)",
}


def get_preset(name: str, **overrides: object) -> ToCaSchedule:
    """The preset ``name`` with ``overrides`` applied (validated; mappings are merged)."""
    if name not in PRESETS:
        raise ValueError(f"unknown ToCa preset {name!r}; presets are {sorted(PRESETS)}")
    schedule = PRESETS[name]
    if not overrides:
        return schedule
    changes = dict(overrides)
    for key in _MAPPING_FIELDS:
        if isinstance(changes.get(key), Mapping):
            changes[key] = {**getattr(schedule, key), **changes[key]}  # type: ignore[dict-item]
    return schedule.replace(**changes)


__all__ = ["DESCRIPTIONS", "PRESETS", "get_preset"]
