"""How calls map to generations, steps and CFG branches."""
from toca_compile.runtime import StepClock


def _trace(ts):
    clock, seen = StepClock(), []
    for t in ts:
        clock.tick(t)
        seen.append((clock.generation, clock.step, clock.branch))
    return seen


def test_descending_timesteps_are_steps():
    assert _trace([900, 700, 500]) == [(1, 0, 0), (1, 1, 0), (1, 2, 0)]


def test_equal_timesteps_are_cfg_branches_of_one_step():
    assert _trace([900, 900, 700, 700]) == [(1, 0, 0), (1, 0, 1), (1, 1, 0), (1, 1, 1)]


def test_timestep_going_up_starts_a_new_generation():
    assert _trace([900, 500, 900, 500]) == [(1, 0, 0), (1, 1, 0), (2, 0, 0), (2, 1, 0)]


def test_reset_starts_a_new_generation_even_at_a_lower_timestep():
    clock = StepClock()
    clock.tick(900)
    clock.tick(800)
    clock.reset()
    clock.tick(100)
    assert (clock.generation, clock.step, clock.branch) == (2, 0, 0)


def test_without_timestep_every_call_is_a_step():
    assert _trace([None, None, None]) == [(1, 0, 0), (1, 1, 0), (1, 2, 0)]
