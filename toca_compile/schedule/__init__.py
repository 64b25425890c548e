"""Which steps are full, and how many tokens each region refreshes on partial steps.

A schedule is a plain object queried by the runtime on the host once per call; it never
reaches the compiled graphs except through the static ``k`` of the variant it selects.
Every schedule subclasses :class:`Schedule` (``base.py``), which declares what the runtime
asks (``is_full``, ``module_full``, ``block_full``, ``ratio``, ``tokens``, ``aggressive``,
``num_steps``) with a default for all but ``is_full``; an object that only has the four methods
``is_full``, ``module_full``, ``ratio`` and ``aggressive`` is accepted too and seen through
:class:`ForeignSchedule` (:func:`as_schedule`).

The schedules, one per module:

* :class:`IntervalSchedule` (``interval.py``): full every ``interval`` steps, one fixed ratio
  (the ``ToCaConfig(interval=..., ratio=...)`` behaviour).
* :class:`StepListSchedule` (``step_list.py``): the full steps listed one by one (a calibrated
  schedule from :mod:`toca_compile.calibration`, which places them where the model's output
  changes least predictably).
* :class:`ToCaSchedule` (``toca.py``): the schedules of the official ToCa code (step-dependent
  full-step rules, step x layer x module ratio factors, per-module refresh cycles, DuCa
  alternation), with the step factor *bucketed* so that a generation needs only a few
  compiled variants. Its full-step rules are strategy objects (``rules.py``:
  :class:`IntervalRule`, :class:`ThresholdRule`, :class:`CyclesRule`, or a user's
  :class:`FullStepRule`). Named instances are in :mod:`toca_compile.presets`.

``helpers.py`` holds what schedules and the runtime share (:data:`KINDS`, :func:`tokens_for`,
:func:`distinct_partial_plans`).

Step indices are 0-based from the first call of a generation and always count up; rules
that the official code states with a step index counting down are translated here
(``count_down=True``).
"""
from __future__ import annotations

from .base import SCHEDULE_METHODS, FixedRatio, ForeignSchedule, Schedule, as_schedule
from .helpers import KINDS, TOKEN_ROUNDINGS, TokenRounding, distinct_partial_plans, tokens_for
from .interval import IntervalSchedule
from .rules import (
    FULL_RULES,
    CyclesRule,
    FullRule,
    FullStepRule,
    IntervalRule,
    ThresholdRule,
)
from .step_list import StepListSchedule
from .toca import DEFAULT_MODULE_FACTORS, ToCaSchedule

__all__ = [
    "DEFAULT_MODULE_FACTORS", "FULL_RULES", "KINDS", "SCHEDULE_METHODS", "CyclesRule", "FixedRatio", "ForeignSchedule",
    "FullRule", "FullStepRule", "IntervalRule", "IntervalSchedule", "Schedule", "StepListSchedule", "ThresholdRule",
    "TOKEN_ROUNDINGS", "ToCaSchedule", "TokenRounding", "as_schedule", "distinct_partial_plans", "tokens_for",
]
