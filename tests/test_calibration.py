"""Calibrated schedules: the plan is the best one for its proxy, the proxy is the forecast error
it claims to be, the file round-trips, and a calibration of the bundled model meets its FLOPs
budget with the schedule it saved actually running (partial steps where the file says).

The references here are brute force and plain loops written in the test, sharing nothing with
``toca_compile.calibration`` but the function under test.
"""
from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from profiles import examples
from toca_compile import ToCa, ToCaConfig
from toca_compile.calibration import (
    ModelRunner,
    SavedSchedule,
    calibrate,
    forecast_errors,
    plan_full_steps,
    read_schedule_file,
    step_weights,
)
from toca_compile.schedule import StepListSchedule


def brute_force_plan(errors: torch.Tensor, n: int, weights: torch.Tensor) -> float:
    """The least cost over every set of ``n`` full steps that contains step 0."""
    T = errors.shape[0]
    return min(brute_force_plan_for(errors, (0, *rest), weights) for rest in itertools.combinations(range(1, T), n - 1))


def brute_force_plan_for(errors, full, weights) -> float:
    """The cost of one set of full steps: each partial step's weighted squared error from the
    two full steps before it (one: reused)."""
    cost = 0.0
    for i in range(errors.shape[0]):
        if i in full:
            continue
        before = [f for f in full if f < i]
        b = before[-1]
        a = before[-2] if len(before) > 1 else b
        cost += float(weights[i]) * float(errors[a, b, i]) ** 2
    return cost


trajectories = st.builds(
    lambda T, D, seed, drift: torch.randn(T, D, generator=torch.Generator().manual_seed(seed)).double().cumsum(0)
    + drift * torch.arange(T).double()[:, None],
    st.integers(3, 9), st.integers(1, 6), st.integers(0, 10_000), st.sampled_from([0.0, 1.0, 5.0]))


@given(trajectory=trajectories, order=st.sampled_from([0, 1]), data=st.data())
@examples(40)
def test_the_plan_is_the_cheapest_set_of_full_steps(trajectory, order, data):
    T = trajectory.shape[0]
    n = data.draw(st.integers(1, T), label="full steps")
    weights = step_weights(T, data.draw(st.sampled_from([0.0, 3.0]), label="early weight"))
    errors = forecast_errors(trajectory, order)
    plan = plan_full_steps(errors, n, weights=weights)
    assert len(plan) == n and plan[0] == 0 and list(plan) == sorted(set(plan))
    assert brute_force_plan_for(errors, plan, weights) == pytest.approx(brute_force_plan(errors, n, weights),
                                                                        rel=1e-9, abs=1e-12)


@given(trajectory=trajectories)
@examples(20)
def test_forecast_errors_are_relative_errors_of_reuse_and_linear_extrapolation(trajectory):
    T = trajectory.shape[0]
    reuse, linear = forecast_errors(trajectory, 0), forecast_errors(trajectory, 1)
    for a in range(T):
        for b in range(T):
            for i in range(T):
                if not a <= b < i:
                    assert math.isinf(reuse[a, b, i]) and math.isinf(linear[a, b, i])
                    continue
                x = trajectory[i]
                kept = trajectory[b]
                line = kept if a == b else kept + (kept - trajectory[a]) * (i - b) / (b - a)
                scale = x.norm().item()
                assert reuse[a, b, i].item() == pytest.approx((x - kept).norm().item() / scale, rel=1e-6, abs=1e-9)
                assert linear[a, b, i].item() == pytest.approx((x - line).norm().item() / scale, rel=1e-6, abs=1e-6)


def test_a_linear_trajectory_is_forecast_exactly_from_any_two_full_steps():
    line = torch.arange(10).double()[:, None] * torch.tensor([[1.0, -2.0, 0.5]]) + 3.0
    errors = forecast_errors(line, 1)
    finite = errors[torch.isfinite(errors)]
    two_points = torch.stack([errors[a, b, i] for b in range(1, 9) for a in range(b) for i in range(b + 1, 10)])
    # exact up to the rounding of the Gram-matrix form (sqrt of ~1e-16 relative)
    assert float(two_points.max()) < 1e-6 and float(finite.max()) > 0.01  # reuse (a == b) is not exact
    assert brute_force_plan_for(errors, plan_full_steps(errors, 2), torch.ones(10)) < 1e-12


def test_step_list_schedule_is_full_where_listed_and_after_its_end():
    schedule = StepListSchedule(10, (7, 0, 3, 3))
    assert schedule.full_steps == (0, 3, 7)
    assert [i for i in range(14) if schedule.is_full(i)] == [0, 3, 7, 10, 11, 12, 13]
    assert schedule.ratio(1, "mlp", 0, 2) == 0.0 and not schedule.aggressive(1)
    assert StepListSchedule(10, (0,), 0.2).ratio(1, "mlp", 0, 2) == 0.2
    assert StepListSchedule(10, (0,), 0.2).ratio(1, "attn", 0, 2) == 0.0
    for bad in [(), (1, 2), (0, 10), (0, -1), (0, 1.5), "0,1"]:
        with pytest.raises(ValueError, match="full_steps"):
            StepListSchedule(10, bad)  # type: ignore[arg-type]


def test_schedule_files_round_trip_and_bad_files_say_what_is_wrong(tmp_path):
    saved = SavedSchedule(20, (0, 1, 5, 12), "taylorseer", 2, 0.1, {"note": "x"})
    path = saved.write(tmp_path / "a" / "s.json")
    back = read_schedule_file(path)
    assert back == saved and back.info == {"note": "x"}
    config = ToCaConfig.from_schedule_file(str(path))
    assert (config.mode, config.taylor_order, config.ratio) == ("taylorseer", 2, 0.1)
    assert config.schedule() == StepListSchedule(20, (0, 1, 5, 12), 0.0)
    with pytest.raises(ValueError, match="calibrated for mode='taylorseer'"):
        ToCaConfig(schedule_file=str(path))
    with pytest.raises(ValueError, match="set one of them"):
        ToCaConfig(schedule_file=str(path), preset="fora", mode="taylorseer", taylor_order=2, ratio=0.1)
    with pytest.raises(ValueError, match="does not exist"):
        ToCaConfig(schedule_file=str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not readable JSON"):
        read_schedule_file(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"num_steps": 3}))
    with pytest.raises(ValueError, match="not a toca-compile schedule file"):
        read_schedule_file(tmp_path / "other.json")
    body = json.loads(path.read_text())
    body["full_steps"] = [1, 2]
    (tmp_path / "nozero.json").write_text(json.dumps(body))
    with pytest.raises(ValueError, match="include 0"):
        read_schedule_file(tmp_path / "nozero.json")
    body["mode"] = "duca"
    (tmp_path / "duca.json").write_text(json.dumps(body))
    with pytest.raises(ValueError, match="mode must be one of"):
        read_schedule_file(tmp_path / "duca.json")


def test_warmup_makes_the_first_steps_full_then_counts_the_interval_from_the_last():
    schedule = ToCaConfig(interval=4, warmup=3).schedule()
    assert [i for i in range(16) if schedule.is_full(i)] == [0, 1, 2, 6, 10, 14]
    assert [i for i in range(8) if ToCaConfig(interval=3).schedule().is_full(i)] == [0, 3, 6]
    with pytest.raises(ValueError, match="warmup"):
        ToCaConfig(warmup=0)
    with pytest.raises(ValueError, match="presets? sets? its own"):
        ToCaConfig(preset="fora", warmup=2)


def test_calibrating_the_bundled_model_meets_the_budget_and_the_saved_schedule_runs(tmp_path):
    from toca_compile.demo import zoo

    model = zoo.load_mnist_dit()
    labels = torch.arange(3)
    steps = 8

    def generate(fn):
        return zoo.sample(fn, labels, steps=steps, guidance=3.0, seed=5, progress=False)

    result = calibrate(ModelRunner(model, generate), steps=steps, flops_ratio=2.0, modes=("taylorseer", "fora"),
                       early_weights=(0.0,), progress=False)
    assert result.best.flops_ratio >= 2.0 * 0.995
    assert result.best in result.candidates and {c.mode for c in result.candidates} == {"taylorseer", "fora"}
    fitting = [c for c in result.candidates if c.flops_ratio >= 2.0 * 0.995]
    assert result.best.rel_error == min(c.rel_error for c in fitting)
    path = result.saved.write(tmp_path / "mnist.json")

    # the saved schedule runs as written: partial exactly off the listed steps, and its error is
    # the one calibration measured
    config = ToCaConfig.from_schedule_file(str(path), compiler="eager")
    reference = generate(model)
    toca = ToCa(config)
    torch._dynamo.reset()
    out = generate(torch.compile(model, backend=toca.backend))
    stats = toca.stats()
    assert stats.full_steps == len(result.best.full_steps) and stats.partial_steps == steps - stats.full_steps > 0
    assert not toca.fallbacks and stats.uncached_calls == 0
    rel = float((out.double() - reference.double()).norm() / reference.double().norm())
    assert rel == pytest.approx(result.best.rel_error, rel=1e-6, abs=1e-9)
    torch._dynamo.reset()


def test_calibrate_rejects_bad_budgets_and_modes():
    runner = ModelRunner(torch.nn.Linear(2, 2), lambda fn: fn(torch.zeros(1, 2)))
    with pytest.raises(ValueError, match="flops_ratio"):
        calibrate(runner, steps=4, flops_ratio=0.5)
    with pytest.raises(ValueError, match="modes"):
        calibrate(runner, steps=4, flops_ratio=2, modes=("duca",))
    with pytest.raises(ValueError, match="steps"):
        calibrate(runner, steps=1, flops_ratio=2)


def test_calibrating_a_pipeline_follows_its_steps_and_cfg_branches():
    """A diffusers pipeline with two transformer calls per step (FLUX true CFG): the trajectory
    groups both calls into one step, and every candidate runs cached through ``apply``."""
    from pipeline_zoo import PIPELINES

    from toca_compile.calibration import PipelineRunner

    pipe, kwargs = PIPELINES["flux-true-cfg"].build()
    pipe.set_progress_bar_config(disable=True)
    steps = kwargs["num_inference_steps"]
    call = {k: v for k, v in kwargs.items() if k != "output_type"}
    runner = PipelineRunner(pipe, [call])
    result = calibrate(runner, steps=steps, flops_ratio=1.5, modes=("fora",), early_weights=(0.0,), progress=False)
    assert result.best.flops_ratio >= 1.5 * 0.995 and 0 < len(result.best.full_steps) < steps
    assert 0 < result.best.rel_error < 1
    import toca_compile

    assert not toca_compile.pipelines.is_applied(pipe)  # every candidate was removed again
