"""How an inferred timestep sequence maps to generations, steps and CFG branches, and how an
explicit generation places calls (toca_compile.clock)."""
from hypothesis import given
from hypothesis import strategies as st

from profiles import examples

from toca_compile.clock import JUMP, ExplicitGeneration, TimestepClock


def _trace(ts, max_branches=4, epochs=None):
    """(generation ordinal, step, branch, blocked) per call; generations numbered from 1."""
    clock, seen, ids = TimestepClock(epoch=0), [], {}
    for i, t in enumerate(ts):
        call, _ = clock.tick(t, epochs[i] if epochs else 0, max_branches)
        ordinal = ids.setdefault(call.generation, len(ids) + 1)
        seen.append((ordinal, call.step, call.branch, bool(call.blocked)))
    return seen


def test_falling_timesteps_are_steps():
    assert _trace([900, 700, 500]) == [(1, 0, 0, False), (1, 1, 0, False), (1, 2, 0, False)]


def test_rising_timesteps_are_steps_too():
    """Lumina2 / Z-Image pipelines and flow-matching loops count t from 0 up to 1."""
    assert _trace([0.0, 0.25, 0.5, 0.75]) == [(1, i, 0, False) for i in range(4)]


def test_equal_timesteps_are_cfg_branches_of_one_step():
    assert _trace([900, 900, 700, 700]) == [(1, 0, 0, False), (1, 0, 1, False), (1, 1, 0, False), (1, 1, 1, False)]


def test_turning_back_starts_a_new_generation_in_either_direction():
    assert [g for g, *_ in _trace([900, 500, 100, 900, 500])] == [1, 1, 1, 2, 2]
    assert [g for g, *_ in _trace([0.0, 0.5, 0.9, 0.0, 0.5])] == [1, 1, 1, 2, 2]


def test_a_new_generation_starting_lower_after_an_aborted_one_is_a_jump():
    """An img2img run (strength < 1) after an aborted generation keeps falling, but by far more
    than one step: a new generation, not a continuation on the old caches."""
    steps = [999 - 20 * i for i in range(10)]          # aborted at 819
    trace = _trace(steps + [600, 580, 560])
    assert [g for g, *_ in trace] == [1] * 10 + [2, 2, 2]
    assert [s for _, s, _, _ in trace[10:]] == [0, 1, 2]


@given(st.floats(1.0, JUMP))
@examples(25)
def test_steps_that_grow_slower_than_the_jump_factor_continue_the_generation(growth):
    ts, t, delta = [], 1000.0, 10.0
    for _ in range(6):
        ts.append(t)
        t, delta = t - delta, delta * growth
    assert {g for g, *_ in _trace(ts)} == {1}


def test_repeated_timesteps_beyond_the_cap_are_blocked_not_new_branches():
    """A benchmark loop calling the model at one timestep: at most max_branches branches."""
    trace = _trace([999.0] * 10, max_branches=4)
    assert [b for _, _, b, _ in trace[:4]] == [0, 1, 2, 3] and not any(x for *_, x in trace[:4])
    assert all(blocked for *_, blocked in trace[4:])
    assert {g for g, *_ in trace} == {1}


def test_reset_starts_a_new_generation_even_at_a_lower_timestep():
    assert [g for g, *_ in _trace([900, 800, 100], epochs=[0, 0, 1])] == [1, 1, 2]


def test_explicit_generation_places_calls_by_step_context_and_position():
    generation = ExplicitGeneration("manual", steps=3)
    first, n0 = generation.place("graph-a")
    second, n1 = generation.place("graph-a")      # the same graph and weights again: next branch
    other, n2 = generation.place("graph-b")       # another graph (or the same with other weights)
    assert (n0, n1, n2) == (0, 1, 0) and first.branch != second.branch and other.branch == first.branch
    generation.context = "uncond"
    named, _ = generation.place("graph-a")
    assert named.branch == ("uncond", 0)
    generation.context = None
    generation.start_step(1)
    again, n = generation.place("graph-a")
    assert (again.step, again.branch, n) == (1, first.branch, 0) and again.generation == first.generation
    assert ExplicitGeneration("manual").id != generation.id
