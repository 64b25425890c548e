"""Named schedules: the settings of the official ToCa code, plus FORA and a default.

``get_preset("dit-ddim-50")`` returns a :class:`~toca_compile.schedule.ToCaSchedule`;
keyword overrides replace single fields (``get_preset("flux-50-n5", num_steps=28)``) and are
validated like any other schedule. Mapping fields (``module_factors``, ``module_cycles``,
``stream_offsets``) given as overrides are merged into the preset's own mapping.

Every preset's step factor is bucketed into ``step_levels`` (default 4) values, so one
generation compiles at most that many partial variants besides the full one (plus one per
pattern of per-module refreshes in the OpenSora preset).

Where the settings come from
----------------------------
Each preset follows, by default, the full-step rule of the authors' code, read in the
repository ``Shenyi-Z/ToCa`` at commit ``e84096ffd85af4540a6a1f64e3334e428e1b7377`` (the
paths below are relative to it; :data:`SOURCES` lists them per preset). The earlier reading of
this project (DESIGN.md: the DiT / PixArt threshold computed at the current step) stays
reachable as an override: ``get_preset("dit-ddim-50", lagged_threshold=False,
first_block_alone=False)`` (likewise ``dit-ddpm-250``, ``pixart-dpm-20``), and the generic
``fora`` preset is the previous FORA reading on DiT (``dit-fora-50`` is the DiT code's own).
To run such an override through a ``ToCaConfig``, hand the schedule over:
``ToCa(config, schedule=get_preset(...))``.

Two details of the official code that the presets follow by default, each with an override
that gives this project's earlier reading:

* DiT / PixArt: on the few steps where block 0 is due under the previous full step's
  threshold but the threshold recomputed there is not (DiT DDIM-50: steps 4 and 17;
  DDPM-250: 4 and 94; PixArt DPM-20: step 4), block 0 alone computes fully
  (``first_block_alone=True``; False: those steps are partial in every block).
* Token counts: every official preset refreshes ``int(r N)`` tokens with the product in
  float32, as ``cache_cutfresh.py`` does in each of the authors' code bases
  (``token_rounding="floor"``; ``"ceil"``: ``ceil(r N)``, at least one token, what
  ``ToCaConfig(ratio=...)`` and the ``fora`` / ``default`` presets use).

What the official code computes that no schedule can say:

* FLUX.1: on partial steps the official double-stream blocks cache the attention output
  *before* its output projection and recompute that projection for every image and text token
  (19 x 2 x 4608 x 3072^2 FLOPs, 1.65 TFLOPs per partial step, for the same output);
  toca-compile reuses the whole branch by default. The full steps are the same; the authors'
  published cached FLOPs (their README) are higher by that amount.
  ``ToCaConfig(preset=..., attention_projection="recompute")`` computes it as they do.
* Step factors are bucketed into ``step_levels`` values (a compiled variant each); the
  official code uses the exact value at every step (``step_levels=None`` here).

Token selection: the spatial bonus (s4) differs between the authors' code bases; a
``ToCaConfig`` with a preset and no ``spatial_cell`` / ``spatial_bonus`` of its own uses the
preset's entry of :data:`SPATIAL`.
"""
from __future__ import annotations

from collections.abc import Mapping

from .schedule import ToCaSchedule

_MAPPING_FIELDS = ("module_factors", "module_cycles", "stream_offsets")

#: the commit of ``Shenyi-Z/ToCa`` every preset was checked against
OFFICIAL_COMMIT = "e84096ffd85af4540a6a1f64e3334e428e1b7377"


def _dit(num_steps: int, interval: int, step_factor: tuple[float, float],
         layer_factor: tuple[float, float]) -> ToCaSchedule:
    # DiT-ToCa/models.py (DiTBlock.forward: cal_type is asked in every block; a full block 0
    # calls force_init, which recomputes the threshold), cache_functions/cal_type.py (full if
    # s % cal_threshold == 0 or s == T-1, s counting down T-1..0), force_scheduler.py
    # (th = round(N / (1.4 - 0.8 s/T)), 2 for s in [int(0.2T), int(0.4T))), force_init.py
    # (the threshold is recomputed in block 0 only). Block 0 therefore decides with the
    # threshold of the previous full step and blocks 1..27 with the one of this step:
    # lagged_threshold=True, and a block 0 due alone computes alone: first_block_alone=True.
    # fresh_ratio_scheduler.py ('ToCa-ddim50' / 'ToCa-ddpm250'): attention reused, MLP x2.5;
    # cache_cutfresh.py: int(r N) tokens.
    return ToCaSchedule(
        num_steps=num_steps, full_rule="threshold", interval=interval, first_full=1, count_down=True,
        threshold_weight=0.4, sensitive_window=(0.2, 0.4), lagged_threshold=True, first_block_alone=True,
        token_rounding="floor", base_ratio=0.07,
        step_factor=step_factor, layer_factor=layer_factor,
        module_factors={"attn": 0.0, "joint_attn": 0.0, "mlp": 2.5, "cross_attn": 2.5, "parallel": 2.5},
    )


def _flux(interval: int) -> ToCaSchedule:
    # flux-ToCa/src/flux/modules/cache_functions/cal_type.py (asked once per step from
    # flux/model.py Flux.forward): steps 0..2 full; afterwards a counter, reset on every full
    # step and incremented on every partial one, makes a step full when it reaches N - 1, so
    # full steps recur every N steps counted from step 2 (last step not forced full);
    # force_scheduler.py: the step weight is 0, so the threshold stays N. Steps come from
    # flux/ideas/cache_denoise.py (0..T-1). fresh_ratio_scheduler.py 'ToCa': r = 0.1 x
    # (1.5 - l/27) x (double stream 0.4, single stream 1.6), l counted within each stream
    # (FLUX.1 has 19 double-stream blocks before the 38 single-stream ones); cache_cutfresh.py:
    # int(r N) tokens.
    return ToCaSchedule(
        num_steps=50, full_rule="interval", interval=interval, first_full=3, base_ratio=0.1,
        token_rounding="floor",
        layer_factor=(1.5, 0.5), layer_span=27, stream_offsets={"parallel": 19},
        module_factors={"attn": 0.0, "joint_attn": 0.0, "mlp": 0.4, "cross_attn": 0.4, "parallel": 1.6},
    )


_DIT_FILES = ("DiT-ToCa/models.py", "DiT-ToCa/cache_functions/cal_type.py",
              "DiT-ToCa/cache_functions/force_init.py", "DiT-ToCa/cache_functions/force_scheduler.py",
              "DiT-ToCa/cache_functions/fresh_ratio_scheduler.py", "DiT-ToCa/cache_functions/cache_cutfresh.py")
_PIXART_FILES = ("PixArt-alpha-ToCa/diffusion/model/nets/PixArt.py",
                 "PixArt-alpha-ToCa/diffusion/model/cache_functions/global_force_fresh.py",
                 "PixArt-alpha-ToCa/diffusion/model/cache_functions/force_init.py",
                 "PixArt-alpha-ToCa/diffusion/model/cache_functions/force_scheduler.py",
                 "PixArt-alpha-ToCa/diffusion/model/dpm_solver.py",
                 "PixArt-alpha-ToCa/diffusion/model/cache_functions/cache_cutfresh.py")
_FLUX_FILES = ("flux-ToCa/src/flux/model.py", "flux-ToCa/src/flux/modules/cache_functions/cal_type.py",
               "flux-ToCa/src/flux/modules/cache_functions/force_scheduler.py",
               "flux-ToCa/src/flux/modules/cache_functions/fresh_ratio_scheduler.py",
               "flux-ToCa/src/flux/modules/layers.py", "flux-ToCa/src/flux/ideas/cache_denoise.py",
               "flux-ToCa/src/flux/modules/cache_functions/cache_cutfresh.py")

#: per preset, s4 as its code base applies it: (cell, bonus) of ``local_selection_with_bonus``
#: in ``cache_cutfresh.py`` (DiT: 0.6 over 2x2 cells; PixArt-alpha: 0.4 over 4x4); the FLUX and
#: OpenSora code bases have the call commented out (bonus 0). ``fora`` and ``default`` are this
#: project's (ToCaConfig's own default).
SPATIAL: dict[str, tuple[int, float]] = {
    "dit-ddim-50": (2, 0.6), "dit-ddpm-250": (2, 0.6), "dit-fora-50": (2, 0.6),
    "pixart-dpm-20": (4, 0.4),
    "opensora-rflow-30": (2, 0.0),
    "flux-50-n4": (2, 0.0), "flux-50-n5": (2, 0.0), "flux-50-n6": (2, 0.0),
    "fora": (2, 0.6), "default": (2, 0.6),
}

#: per preset, the files of ``Shenyi-Z/ToCa`` at :data:`OFFICIAL_COMMIT` whose rules it follows
SOURCES: dict[str, tuple[str, ...]] = {
    "dit-ddim-50": _DIT_FILES,
    "dit-ddpm-250": _DIT_FILES,
    "dit-fora-50": _DIT_FILES,
    "pixart-dpm-20": _PIXART_FILES,
    "opensora-rflow-30": ("Open-Sora/opensora/models/cache_functions/global_force_fresh.py",
                          "Open-Sora/opensora/models/cache_functions/force_scheduler.py",
                          "Open-Sora/opensora/models/cache_functions/fresh_ratio_scheduler.py",
                          "Open-Sora/opensora/models/cache_functions/cache_cutfresh.py"),
    "flux-50-n4": _FLUX_FILES,
    "flux-50-n5": _FLUX_FILES,
    "flux-50-n6": _FLUX_FILES,
    "fora": ("flux-ToCa/src/flux/modules/cache_functions/cal_type.py",
             "PixArt-alpha-ToCa/diffusion/model/cache_functions/global_force_fresh.py"),
    "default": (),
}

PRESETS: dict[str, ToCaSchedule] = {
    "dit-ddim-50": _dit(50, 3, step_factor=(-1.0, 3.0), layer_factor=(0.8, 1.2)),
    "dit-ddpm-250": _dit(250, 4, step_factor=(0.6, 1.4), layer_factor=(1.8, 0.2)),
    # the DiT code run as FORA (fresh_ratio 0): force_scheduler.py drops the step weight and the
    # sensitive window, so th = N; the first step (s = T-1) is full, then every s % N == 0
    "dit-fora-50": ToCaSchedule(
        num_steps=50, full_rule="threshold", interval=3, first_full=1, count_down=True,
        threshold_weight=0.0, base_ratio=0.0, token_rounding="floor",
    ),
    # PixArt.py (PixArtBlock.forward asks global_force_fresh in every block: full if s == 0 or
    # s % cal_threshold == 0, s = 0..T-1 from dpm_solver.py); force_init.py calls
    # force_scheduler.py in every block of a full step, th = round(3 / (0.8 + 0.4 s/T)). Block 0
    # decides with the previous full step's threshold, the others with this step's:
    # lagged_threshold=True, first_block_alone=True. fresh_ratio_scheduler.py 'ToCa': attention
    # reused, cross-attention x0.6, MLP x1.6; cache_cutfresh.py: int(r N) tokens.
    "pixart-dpm-20": ToCaSchedule(
        num_steps=20, full_rule="threshold", interval=3, first_full=1, count_down=False,
        threshold_weight=0.2, lagged_threshold=True, first_block_alone=True, token_rounding="floor",
        base_ratio=0.3, step_factor=(1.9, 0.1),
        layer_factor=(1.6, 0.4),
        module_factors={"attn": 0.0, "joint_attn": 0.0, "cross_attn": 0.6, "mlp": 1.6, "parallel": 1.6},
    ),
    # global_force_fresh.py: steps 0..2 full, then each module when step % cycle == 0;
    # force_scheduler.py: cycles 3 (spatial / temporal attention, MLP) and 6 (cross-attention)
    "opensora-rflow-30": ToCaSchedule(
        num_steps=30, full_rule="cycles", interval=3, first_full=3, base_ratio=0.1, token_rounding="floor",
        module_cycles={"attn": 3, "joint_attn": 3, "cross_attn": 6, "mlp": 3, "parallel": 3},
        # official: 0.1 x (1 + 0.33 x 1.5) for MLP, 0.1 x (1 - 0.67 x 1.5) < 0 -> 0 for cross-attention
        module_factors={"attn": 0.0, "joint_attn": 0.0, "cross_attn": 0.0, "mlp": 1.495, "parallel": 1.495},
    ),
    "flux-50-n4": _flux(4),
    "flux-50-n5": _flux(5),
    "flux-50-n6": _flux(6),
    # FORA as the FLUX code runs it (cal_type.py with fresh_ratio 0: only step 0 is a warm-up,
    # then every N counted from it) and as the PixArt code does (constant threshold N, s counting
    # up): full iff i % 3 == 0
    "fora": ToCaSchedule(num_steps=50, full_rule="interval", interval=3, base_ratio=0.0),
    "default": ToCaSchedule(num_steps=50, full_rule="interval", interval=3, base_ratio=0.15),
}

DESCRIPTIONS: dict[str, str] = {
    "dit-ddim-50": "DiT-XL/2, DDIM 50 steps: threshold rule N=3 as the official code applies it (threshold of "
                   "the previous full step; th=2 in the sensitive 20-40% steps), r=0.07 x step (3-4s/T) x "
                   "layer (0.8->1.2) x MLP 2.5, attention reused",
    "dit-ddpm-250": "DiT-XL/2, DDPM 250 steps: threshold rule N=4 as the official code applies it (threshold "
                    "of the previous full step), r=0.07 x step (0.6->1.4) x layer (1.8->0.2) x MLP 2.5, "
                    "attention reused",
    "dit-fora-50": "DiT-XL/2, 50 steps, FORA as the official DiT code runs it: first step full, then every "
                   "step with s % 3 == 0 (s counting down 49..0), every branch reused in between",
    "pixart-dpm-20": "PixArt-alpha, DPM-Solver++ 20 steps: th=round(3/(0.8+0.4s/T)) as the official code "
                     "applies it (threshold of the previous full step), r=0.30 x step (1.9->0.1) x layer "
                     "(1.6->0.4) x (cross-attn 0.6, MLP 1.6)",
    "opensora-rflow-30": "OpenSora 1.2, rflow 30 steps: first 3 full, then self-attn and MLP every 3, cross-attn "
                         "every 6; MLP ratio 0.15, cross-attn reused",
    "flux-50-n4": "FLUX.1-dev, 50 steps: first 3 full then every 4, r=0.1 x (1.5-l/27) x (double-stream 0.4, "
                  "single-stream 1.6)",
    "flux-50-n5": "FLUX.1-dev, 50 steps: first 3 full then every 5 (the authors' 3.3x FLOPs setting), "
                  "r=0.1 x (1.5-l/27) x (double 0.4, single 1.6)",
    "flux-50-n6": "FLUX.1-dev, 50 steps: first 3 full then every 6, r=0.1 x (1.5-l/27) x (double 0.4, single 1.6)",
    "fora": "FORA: full every 3 steps from step 0, every branch output reused in between (ratio 0)",
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


__all__ = ["DESCRIPTIONS", "OFFICIAL_COMMIT", "PRESETS", "SOURCES", "SPATIAL", "get_preset"]
