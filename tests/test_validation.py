"""The checks ToCaConfig and the schedules share (toca_compile.validation): what passes, and
the exact message a wrong value gets (it names the class and field to fix)."""
import math

import pytest

from toca_compile import ToCaConfig
from toca_compile.presets import get_preset
from toca_compile.schedule import StepListSchedule
from toca_compile.validation import (
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_pair,
)


@pytest.mark.parametrize("call, message", [
    (lambda: check_int("A", "n", 0, 1), "A.n must be an integer >= 1, got 0"),
    (lambda: check_int("A", "n", True, 0), "A.n must be an integer >= 0, got True"),
    (lambda: check_int("A", "n", 11, 0, 10), "A.n must be an integer in [0, 10], got 11"),
    (lambda: check_int("A", "n", 2.0, 1, allow_none=True), "A.n must be an integer >= 1 or None, got 2.0"),
    (lambda: check_number("A", "x", math.inf, 0.0), "A.x must be a finite number >= 0.0, got inf"),
    (lambda: check_number("A", "x", math.nan, 0.0, 1.0), "A.x must be a finite number in [0.0, 1.0], got nan"),
    (lambda: check_number("A", "x", 1.0, -1.0, 1.0, open_range=True, noun="a number"),
     "A.x must be a number in (-1.0, 1.0), got 1.0"),
    (lambda: check_number("A", "x", False, 0.0, 1.0), "A.x must be a finite number in [0.0, 1.0], got False"),
    (lambda: check_choice("A", "c", "z", ("a", "b")), "A.c must be one of ['a', 'b'], got 'z'"),
    (lambda: check_bool("A", "b", 1), "A.b must be True or False, got 1"),
    (lambda: check_pair("A", "p", (1.0, math.inf)), "A.p must be a pair of finite numbers (start, end), got (1.0, inf)"),
])
def test_each_check_names_the_field_and_what_it_allows(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message


def test_accepted_values_pass():
    check_int("A", "n", 5, 1, 5)
    check_int("A", "n", None, 1, allow_none=True)
    check_number("A", "x", 0, 0.0, 1.0)
    check_number("A", "x", 0.5, 0.0, 1.0, open_range=True)
    check_choice("A", "c", "a", ("a", "b"))
    check_bool("A", "b", False)
    assert check_pair("A", "p", [1, 2]) == (1.0, 2.0)


@pytest.mark.parametrize("make, message", [
    (lambda: ToCaConfig(ratio=1.5), "ToCaConfig.ratio must be a finite number in [0.0, 1.0], got 1.5"),
    (lambda: ToCaConfig(seed=-1), "ToCaConfig.seed must be an integer in [0, 9223372036854775807], got -1"),
    (lambda: ToCaConfig(score="x"), "ToCaConfig.score must be one of ['attention', 'kvnorm', 'random'], got 'x'"),
    (lambda: ToCaConfig(cfg_shared=1), "ToCaConfig.cfg_shared must be True or False, got 1"),
    (lambda: ToCaConfig(taylor_order=3), "ToCaConfig.taylor_order must be the integer 1 or 2, got 3"),
    (lambda: ToCaConfig(mode="taylorseer", forecast_refresh=1.5),
     "ToCaConfig.forecast_refresh must be a finite number in [0.0, 1.0], got 1.5"),
    (lambda: ToCaConfig(forecast_refresh=0.1),
     "ToCaConfig.forecast_refresh refreshes tokens on forecast steps, which only mode='taylorseer' has; "
     "got mode='toca' with forecast_refresh=0.1"),
    (lambda: get_preset("fora", base_ratio=2), "ToCaSchedule.base_ratio must be a number in [0.0, 1.0], got 2"),
    (lambda: get_preset("fora", step_levels=0), "ToCaSchedule.step_levels must be an integer >= 1 or None, got 0"),
    (lambda: StepListSchedule(0, (0,)), "ToCaSchedule.num_steps must be an integer >= 1, got 0"),
])
def test_config_and_schedules_use_the_shared_wording(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert str(info.value) == message
