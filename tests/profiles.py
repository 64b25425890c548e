"""Hypothesis profiles for the property tests.

* ``ci`` (the default): derandomized, so every CI run draws the same examples; each test keeps
  the example count it asks for (a few dozen at most, to fit CI's time).
* ``long`` (``pytest --hypothesis-profile=long``): fresh random examples and at least
  :data:`LONG_EXAMPLES` per property test, for big runs.

Property tests take their settings from :func:`examples`, so one switch scales them all.
"""
from __future__ import annotations

from hypothesis import HealthCheck, settings

LONG_EXAMPLES = 500
_COMMON = dict(deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)

settings.register_profile("ci", derandomize=True, **_COMMON)
settings.register_profile("long", derandomize=False, max_examples=LONG_EXAMPLES, **_COMMON)


def current_profile() -> str:
    name = getattr(settings, "get_current_profile_name", None)
    return name() if name is not None else getattr(settings, "_current_profile", "default")


def examples(ci: int) -> settings:
    """Settings of one property test: ``ci`` examples under the CI profile, at least
    :data:`LONG_EXAMPLES` under the long one (other settings come from the profile)."""
    return settings(max_examples=max(ci, LONG_EXAMPLES) if current_profile() == "long" else ci)
