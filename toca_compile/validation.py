"""Checks of user-given settings, shared by :class:`~toca_compile.config.ToCaConfig` and the
schedules of :mod:`toca_compile.schedule`.

Every check raises ``ValueError("{owner}.{name} must be {what is allowed}, got {value!r}")``,
``owner`` being the class whose field is checked (``"ToCaConfig"``, ``"ToCaSchedule"``), so the
message names the field the user has to fix. ``bool`` is never accepted as a number.
"""
from __future__ import annotations

import math
from typing import NoReturn


def fail(owner: str, name: str, allowed: str, value: object) -> NoReturn:
    """Raise the ValueError every check raises: ``{owner}.{name} must be {allowed}, got {value!r}``."""
    raise ValueError(f"{owner}.{name} must be {allowed}, got {value!r}")


def is_int(value: object) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """An ``int`` or ``float`` that is not a ``bool`` and not NaN (infinities pass)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def check_int(owner: str, name: str, value: object, low: int, high: int | None = None, *,
              allow_none: bool = False) -> None:
    """An integer in ``[low, high]`` (``high=None``: ``>= low``); ``allow_none`` also accepts None."""
    if allow_none and value is None:
        return
    if not (is_int(value) and value >= low and (high is None or value <= high)):  # type: ignore[operator]
        allowed = f"in [{low}, {high}]" if high is not None else f">= {low}"
        fail(owner, name, f"an integer {allowed}" + (" or None" if allow_none else ""), value)


def check_number(owner: str, name: str, value: object, low: float, high: float | None = None, *,
                 open_range: bool = False, noun: str = "a finite number") -> None:
    """A finite number in ``[low, high]`` (``open_range``: ``(low, high)``; ``high=None``: ``>= low``).

    ``noun`` is how the message names what is expected (``ToCaSchedule`` says ``"a number"``:
    its ranges are bounded, so finite goes without saying).
    """
    ok = is_number(value) and math.isfinite(value)  # type: ignore[arg-type]
    if ok:
        if high is None:
            ok = value > low if open_range else value >= low  # type: ignore[operator]
        else:
            ok = low < value < high if open_range else low <= value <= high  # type: ignore[operator]
    if not ok:
        if high is None:
            allowed = f"> {low}" if open_range else f">= {low}"
        else:
            allowed = f"in ({low}, {high})" if open_range else f"in [{low}, {high}]"
        fail(owner, name, f"{noun} {allowed}", value)


def check_choice(owner: str, name: str, value: object, allowed: tuple[str, ...]) -> None:
    """One of the strings in ``allowed``."""
    if not isinstance(value, str) or value not in allowed:
        fail(owner, name, f"one of {list(allowed)}", value)


def check_bool(owner: str, name: str, value: object) -> None:
    """``True`` or ``False`` (not 0 / 1)."""
    if not isinstance(value, bool):
        fail(owner, name, "True or False", value)


def check_pair(owner: str, name: str, value: object) -> tuple[float, float]:
    """A pair of finite numbers ``(start, end)``, returned as a tuple of floats."""
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and all(is_number(v) and math.isfinite(v) for v in value)):
        return (float(value[0]), float(value[1]))
    fail(owner, name, "a pair of finite numbers (start, end)", value)


__all__ = ["check_bool", "check_choice", "check_int", "check_number", "check_pair", "fail", "is_int", "is_number"]
