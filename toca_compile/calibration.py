"""Calibrated schedules: which steps to compute in full, chosen from the model's own outputs.

A fixed interval spends its full steps evenly, but a sampler's model output does not change
evenly: it moves most in the first steps and (for DDIM / flow samplers) in the last few, and in
between it is close to linear in the step index. Calibration runs a few uncached generations
once per model and sampler, records the model output at every step, and places a budget of
full steps where reusing (FORA, ToCa) or linearly forecasting (TaylorSeer order 1) from the
previous full steps would be wrong the most. The plan is exact for that proxy: a dynamic
program over "the last two full steps" minimises the summed squared relative forecast error.
Each candidate mode is then run cached on the same inputs, its FLOPs counted and its final
outputs compared with the uncached ones; the best that meets the FLOPs budget is saved as a
small JSON file that :meth:`ToCaConfig.from_schedule_file` loads. Everything here runs once,
offline; sampling with the result only reads a list of step indices on the host.
"""
from __future__ import annotations

import contextlib
import datetime
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .schedule import StepListSchedule
from .schedule.saved import FORMAT, MODES, VERSION, SavedSchedule, read_schedule_file

if TYPE_CHECKING:
    from .config import ToCaConfig

__all__ = ["FORMAT", "MODES", "VERSION", "SavedSchedule", "calibrate", "read_schedule_file"]  # the file format lives in schedule/saved.py
#: a measured FLOPs ratio this close under the target meets it (counting rounds a little)
_BUDGET_SLACK = 0.995


# -- recording the uncached trajectory -----------------------------------------------------
def output_tensor(out: Any) -> torch.Tensor:
    """The denoiser's prediction in a module output: a tensor, the first tensor of a tuple or
    dict, or ``.sample`` (diffusers' output classes)."""
    if isinstance(out, torch.Tensor):
        return out
    sample = getattr(out, "sample", None)
    if isinstance(sample, torch.Tensor):
        return sample
    values = out.values() if isinstance(out, dict) else out if isinstance(out, (tuple, list)) else ()
    for value in values:
        if isinstance(value, torch.Tensor):
            return value
    raise TypeError(f"cannot find the prediction tensor in a model output of type {type(out).__name__}")


def record_trajectory(model: torch.nn.Module, run: Callable[[], Any], steps: int) -> torch.Tensor:
    """Model outputs per step, ``[steps, D]`` (float64, on the CPU), over one call of ``run``.

    ``run`` runs uncached generations of ``steps`` steps each (several generations, and several
    calls per step such as sequential CFG, are concatenated along ``D``)."""
    calls: list[torch.Tensor] = []
    handle = model.register_forward_hook(lambda _m, _a, out: calls.append(output_tensor(out).detach().double().cpu()))
    try:
        with torch.no_grad():
            run()
    finally:
        handle.remove()
    if not calls or len(calls) % steps:
        raise ValueError(f"recorded {len(calls)} model calls, not a multiple of steps={steps}: "
                         "pass the number of denoising steps each generation runs")
    per_generation = len(calls) // steps
    generations = []
    for g in range(0, len(calls), per_generation * steps):
        chunk = calls[g: g + per_generation * steps]
        per_call = len(chunk) // steps
        generations.append(torch.stack([torch.cat([c.flatten() for c in chunk[i * per_call:(i + 1) * per_call]])
                                        for i in range(steps)]))
    return torch.cat(generations, dim=1)


# -- planning ------------------------------------------------------------------------------
def forecast_errors(trajectory: torch.Tensor, order: int) -> torch.Tensor:
    """``E[a, b, i]``: relative error of the output at step ``i`` predicted from full steps
    ``a < b < i``: reused from ``b`` (``order=0``), or extrapolated linearly through ``a`` and
    ``b`` (``order=1``; with ``a == b``, no earlier full step, it is reused). Unused entries are inf.

    Computed from the Gram matrix of the outputs, so the cost is ``O(T^3)`` whatever their size."""
    if order not in (0, 1):
        raise ValueError(f"order must be 0 (reuse) or 1 (linear forecast), got {order!r}")
    out = trajectory.double().flatten(1)
    T = out.shape[0]
    G = out @ out.T
    d = G.diagonal()
    a = torch.arange(T).view(T, 1, 1)
    b = torch.arange(T).view(1, T, 1)
    i = torch.arange(T).view(1, 1, T)
    # guess = x_b + s (x_b - x_a) with s = (i - b) / (b - a); s = 0 when reusing
    s = ((i - b) / (b - a).clamp_min(1)).double() if order == 1 else torch.zeros((), dtype=torch.float64)
    s = torch.where(a == b, torch.zeros((), dtype=torch.float64), s)
    Gab = G.view(T, T, 1)
    Gib = G.T.view(1, T, T)             # G[b, i]
    Gia = G.T.view(T, 1, T)             # G[a, i]
    sq = (d.view(1, 1, T) + (1 + s) ** 2 * d.view(1, T, 1) + s ** 2 * d.view(T, 1, 1)
          - 2 * (1 + s) * Gib + 2 * s * Gia - 2 * s * (1 + s) * Gab)
    errors = sq.clamp_min(0).sqrt() / d.clamp_min(1e-60).sqrt().view(1, 1, T)
    valid = (a <= b) & (b < i)
    return torch.where(valid, errors, torch.full_like(errors, math.inf))


def step_weights(steps: int, early_weight: float) -> torch.Tensor:
    """``1 + early_weight * (1 - i / (steps - 1))``: an error at an early step is carried through
    every later step, so it may count more than one at the end."""
    return 1.0 + early_weight * (1.0 - torch.arange(steps, dtype=torch.float64) / max(steps - 1, 1))


def plan_full_steps(errors: torch.Tensor, full_steps: int, power: float = 2.0,
                    weights: torch.Tensor | None = None) -> tuple[int, ...]:
    """The ``full_steps`` step indices (0 included) minimising ``sum_i w_i errors[a, b, i] ** power``
    over the partial steps ``i``, with ``a``, ``b`` the two full steps before ``i``.

    Dynamic programming over the state (last two full steps): exact, ``O(full_steps * T^3)``."""
    T = errors.shape[0]
    if not 1 <= full_steps <= T:
        raise ValueError(f"full_steps must be in [1, {T}], got {full_steps}")
    w = torch.ones(T, dtype=torch.float64) if weights is None else weights.double().reshape(T)
    # entries outside a <= b < i never lie inside a segment: zero them so the sums stay exact
    cost = torch.nan_to_num(errors.double() ** power, posinf=0.0) * w
    cum = torch.cat([torch.zeros(T, T, 1, dtype=torch.float64), cost.cumsum(dim=2)], dim=2)  # cum[..., j] = sum_{i<j}
    b_idx = torch.arange(T)
    # seg[a, b, c]: partial steps b+1 .. c-1 (c == T: to the end of the generation)
    c_idx = torch.arange(T + 1)
    seg = cum[:, :, c_idx] - cum[:, b_idx, b_idx + 1][:, :, None]
    valid = (c_idx[None, None, :] > b_idx[None, :, None])
    seg = torch.where(valid, seg.clamp_min(0.0), torch.full_like(seg, math.inf))
    INF = math.inf
    # state (a, b); the first full step is 0 with no earlier one: a == b == 0
    dp = torch.full((T, T), INF, dtype=torch.float64)
    dp[0, 0] = 0.0
    back: list[torch.Tensor] = []
    for _ in range(full_steps - 1):
        # new[b, c] = min_a dp[a, b] + seg[a, b, c]   (c > b)
        total = dp[:, :, None] + seg[:, :, :T]
        best, arg = total.min(dim=0)
        best = torch.where(c_idx[None, :T] > b_idx[:, None], best, torch.full_like(best, INF))
        dp = best
        back.append(arg)
    final = dp + seg[:, :, T]
    flat = int(torch.argmin(final))
    a, b = divmod(flat, T)
    if not math.isfinite(float(final[a, b])):
        raise ValueError(f"no schedule of {full_steps} full steps fits {T} steps")
    steps = [b]
    for arg in reversed(back):
        a, b = int(arg[a, b]), a
        steps.append(b)
    return tuple(sorted(set(steps)))


# -- searching under a FLOPs budget ------------------------------------------------------
@dataclass
class Candidate:
    """One evaluated schedule: mode, full steps, FLOPs ratio and error against uncached."""

    mode: str
    taylor_order: int
    full_steps: tuple[int, ...]
    flops_ratio: float
    rel_error: float
    psnr: float

    def describe(self) -> str:
        name = f"taylorseer-{self.taylor_order}" if self.mode == "taylorseer" else self.mode
        return (f"{name:<13} {len(self.full_steps):>3} full  {self.flops_ratio:5.2f}x FLOPs  "
                f"rel. error {self.rel_error:.4f}  PSNR {self.psnr:6.2f} dB")


@dataclass
class Calibration:
    best: Candidate
    candidates: list[Candidate]
    saved: SavedSchedule


def _psnr(out: torch.Tensor, ref: torch.Tensor) -> float:
    span = float(ref.max() - ref.min()) or 1.0
    mse = float(((out - ref) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(span * span / mse)


class ModelRunner:
    """Calibration generations of a model in your own sampling loop: ``generate(fn)`` runs them
    (fixed seeds) with ``fn`` called in place of ``model`` and returns their final outputs."""

    def __init__(self, model: torch.nn.Module, generate: Callable[[Callable], torch.Tensor]) -> None:
        self.model, self.generate = model, generate

    def uncached(self) -> torch.Tensor:
        return self.generate(self.model)

    @contextlib.contextmanager
    def cached(self, config: "ToCaConfig", schedule: StepListSchedule) -> Iterator[tuple[Any, Callable[[], torch.Tensor]]]:
        from .backend import ToCa  # noqa: PLC0415

        torch._dynamo.reset()
        toca = ToCa(config, schedule=schedule)
        fn = torch.compile(self.model, backend=toca.backend)
        try:
            yield toca, lambda: self.generate(fn)
        finally:
            toca.release()
            torch._dynamo.reset()


class PipelineRunner:
    """Calibration generations of a diffusers pipeline: ``pipe(**call, generator=seeded)`` for
    each of ``calls``; the final latents are compared (``output_type="latent"``). The first
    transformer component is calibrated (and counted)."""

    def __init__(self, pipe: Any, calls: Sequence[dict], seed: int = 0) -> None:
        from .pipelines import transformers_of  # noqa: PLC0415

        modules = transformers_of(pipe)
        if not modules:
            raise ValueError("this pipeline has no transformer component to calibrate")
        if not calls:
            raise ValueError("give at least one pipeline call (e.g. [{'prompt': 'a cat'}])")
        self.pipe, self.calls, self.seed = pipe, [dict(c) for c in calls], seed
        self.name, self.model = next(iter(modules.items()))

    def uncached(self) -> torch.Tensor:
        outs = []
        for j, call in enumerate(self.calls):
            device = getattr(self.pipe, "device", "cpu")
            generator = torch.Generator(device=device).manual_seed(self.seed + j)
            result = self.pipe(**{"output_type": "latent", **call, "generator": generator})
            outs.append(_pipeline_tensor(result).detach().double().cpu().flatten())
        return torch.cat(outs)

    @contextlib.contextmanager
    def cached(self, config: "ToCaConfig", schedule: StepListSchedule) -> Iterator[tuple[Any, Callable[[], torch.Tensor]]]:
        from .pipelines import apply, remove  # noqa: PLC0415

        torch._dynamo.reset()
        toca = apply(self.pipe, config)
        toca.schedule = schedule
        try:
            yield toca, self.uncached
        finally:
            remove(self.pipe)
            torch._dynamo.reset()


def _pipeline_tensor(result: Any) -> torch.Tensor:
    for name in ("images", "frames", "audios", "latents"):
        value = getattr(result, name, None)
        if isinstance(value, torch.Tensor):
            return value
        if value is not None and hasattr(value, "__array__") and not isinstance(value, list):
            return torch.as_tensor(value)  # a numpy array (output_type="np")
    if isinstance(result, (tuple, list)) and result and isinstance(result[0], torch.Tensor):
        return result[0]
    raise TypeError(f"cannot find the output latents in a pipeline result of type {type(result).__name__}")


def calibrate(runner: ModelRunner | PipelineRunner, *, steps: int, flops_ratio: float,
              modes: Sequence[str] = ("taylorseer", "fora"), ratio: float = 0.15, taylor_order: int = 1,
              power: float = 2.0, early_weights: Sequence[float] = (0.0, 3.0, 10.0), progress: bool = True,
              describe: str = "") -> Calibration:
    """Search full-step schedules under a FLOPs budget (``flops_ratio`` = uncached FLOPs /
    cached FLOPs of the model, at least this much).

    The runner's generations run once uncached (the model's output at every step recorded),
    then once per candidate with a :class:`~toca_compile.ToCa` whose rewritten graphs run
    eagerly (same outputs as Inductor, quick to build). For each mode the plan uses as many
    full steps as the budget allows; the FLOPs of each run are counted, and a plan over budget
    is redone with one full step fewer. The proxy (output forecast error) does not know how an
    error at one step carries to the image, so a plan is made for each of ``early_weights``
    (:func:`step_weights`) and every distinct plan is run: the candidate with the least relative
    error of the final outputs wins. ``torch._dynamo.reset()`` runs around each candidate.
    """
    from .config import ToCaConfig  # noqa: PLC0415
    from .flops import counting  # noqa: PLC0415
    from .flops.generation import _progress  # noqa: PLC0415

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an integer >= 2, got {steps!r}")
    if isinstance(flops_ratio, bool) or not isinstance(flops_ratio, (int, float)) or not flops_ratio >= 1.0:
        raise ValueError(f"flops_ratio must be a number >= 1, got {flops_ratio!r}")
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"modes must be a non-empty subset of {list(MODES)}, got {list(modes)}")
    bar = _progress(progress, 1 + len(modes) * (len(early_weights) + 1), "calibrating") or _NoBar()
    reference: list[torch.Tensor] = []
    with _model_flops(runner.model) as uncached_flops:
        trajectory = record_trajectory(runner.model, lambda: reference.append(runner.uncached()), steps)
    ref = reference[0].detach().double().cpu()
    bar.update(1)
    tables: dict[int, torch.Tensor] = {}
    candidates: list[Candidate] = []

    def evaluate(mode: str, plan: tuple[int, ...]) -> Candidate:
        saved = SavedSchedule(steps, plan, mode, taylor_order, ratio)
        config = ToCaConfig(mode=mode, taylor_order=taylor_order, ratio=ratio, compiler="eager")  # type: ignore[arg-type]
        with runner.cached(config, saved.schedule()) as (toca, run), counting(toca) as sink, torch.no_grad():
            out = run().detach().double().cpu()
        bar.update(1)
        achieved = sum(uncached_flops) / max(sum(sink), 1.0)
        rel = float((out - ref).norm() / ref.norm().clamp_min(1e-30))
        candidate = Candidate(mode, taylor_order, plan, achieved, rel, _psnr(out, ref))
        candidates.append(candidate)
        return candidate

    weights = [step_weights(steps, w) for w in early_weights] or [step_weights(steps, 0.0)]
    for mode in modes:
        order = 1 if mode == "taylorseer" else 0
        if order not in tables:
            tables[order] = forecast_errors(trajectory, order)
        # the budget: as many full steps as fit, found with the first weighting
        count = max(1, min(steps, math.floor(steps / flops_ratio)))
        tried: set[tuple[int, ...]] = set()
        while True:
            plan = plan_full_steps(tables[order], count, power, weights[0])
            if plan in tried:
                break
            tried.add(plan)
            if evaluate(mode, plan).flops_ratio >= flops_ratio * _BUDGET_SLACK or count == 1:
                break
            count -= 1
        for w in weights[1:]:  # the same number of full steps costs the same FLOPs
            plan = plan_full_steps(tables[order], count, power, w)
            if plan not in tried:
                tried.add(plan)
                evaluate(mode, plan)
    bar.close()
    fitting = [c for c in candidates if c.flops_ratio >= flops_ratio * _BUDGET_SLACK] or candidates
    best = min(fitting, key=lambda c: c.rel_error)
    info = {"target_flops_ratio": flops_ratio, "flops_ratio": best.flops_ratio, "rel_error": best.rel_error,
            "psnr": best.psnr, "model": describe or type(runner.model).__name__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "candidates": [c.describe() for c in candidates]}
    saved = SavedSchedule(steps, best.full_steps, best.mode, best.taylor_order, ratio, info)
    return Calibration(best, candidates, saved)


@contextlib.contextmanager
def _model_flops(model: torch.nn.Module):
    """FLOPs of every call of ``model`` in the block, counted per call (not the sampler's own
    arithmetic), so they compare with what ``toca_compile.flops.counting`` counts of the graphs."""
    from torch.utils.flop_counter import FlopCounterMode  # noqa: PLC0415

    from .flops import cpu_attention_formula  # noqa: PLC0415

    totals: list[float] = []
    active: list[FlopCounterMode] = []

    def before(_module, _args):
        mode = FlopCounterMode(display=False)
        mode.__enter__()
        active.append(mode)

    def after(_module, _args, _out):
        mode = active.pop()
        mode.__exit__(None, None, None)
        totals.append(float(mode.get_total_flops()))

    handles = [model.register_forward_pre_hook(before), model.register_forward_hook(after)]
    try:
        with cpu_attention_formula():  # the counters are created inside
            yield totals
    finally:
        for handle in handles:
            handle.remove()


class _NoBar:
    """Stands in for the progress bar when ``progress=False``."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


__all__ = ["Calibration", "Candidate", "ModelRunner", "PipelineRunner", "SavedSchedule", "calibrate", "step_weights", "forecast_errors", "plan_full_steps",
           "read_schedule_file", "record_trajectory"]
