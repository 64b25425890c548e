"""``apply(pipe)`` / ``remove(pipe)``: toca-compile on a diffusers pipeline, steps from the pipeline.

The pipeline's transformer(s) are compiled in place, as ``module.compile()`` does (the module
object, its attributes and ``pipe.components`` stay the same), each with its own ``ToCa``. The
pipeline then tells the runtime where it stands, so no timestep is ever read:

* ``scheduler.set_timesteps`` starts a generation (every pipeline call sets its timesteps
  before its loop, so an aborted generation is simply followed by a new one);
* ``scheduler.step`` ends a step. Second-order samplers (Heun) step the scheduler after each
  model evaluation, so each evaluation is a step of its own;
* ``transformer.cache_context(name)`` (diffusers' ``"cond"`` / ``"uncond"``) names the calls
  inside, so each CFG branch keeps its own caches whatever the order of the calls;
* ``transformer._reset_stateful_cache()``, which diffusers calls at the end of every pipeline
  call, ends the generation.

``remove(pipe)`` undoes every change and frees the caches.
"""
from __future__ import annotations

import contextlib
import functools
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from .backend import ToCa
from .config import ToCaConfig
from .stats import Summary

_MISSING = object()


@dataclass
class _Applied:
    tocas: dict[str, ToCa]
    patches: list[tuple[Any, str, Any]] = field(default_factory=list)   # (object, attribute, old value)

    def patch(self, obj: Any, name: str, value: Any) -> None:
        self.patches.append((obj, name, obj.__dict__.get(name, _MISSING)))
        setattr(obj, name, value)

    def undo(self) -> None:
        for obj, name, old in reversed(self.patches):
            if old is _MISSING:
                delattr(obj, name)
            else:
                setattr(obj, name, old)
        self.patches.clear()


_APPLIED: "weakref.WeakKeyDictionary[Any, _Applied]" = weakref.WeakKeyDictionary()


def transformers_of(pipe: Any) -> dict[str, torch.nn.Module]:
    """The pipeline's transformer components (``transformer``, ``transformer_2``, ...)."""
    components = getattr(pipe, "components", None)
    if not isinstance(components, dict):
        raise TypeError(f"expected a diffusers pipeline (an object with .components), got {type(pipe).__name__}")
    return {name: module for name, module in components.items()
            if name.startswith("transformer") and isinstance(module, torch.nn.Module)}


def apply(pipe: Any, config: ToCaConfig | None = None, **compile_kwargs: Any) -> ToCa:
    """Compile the pipeline's transformer(s) with token-wise caching; returns the ``ToCa`` of the
    first one (``applied(pipe)`` gives all). ``compile_kwargs`` go to ``torch.compile``
    (``fullgraph``, ``dynamic``, ``mode``...). Undo with :func:`remove`."""
    if pipe in _APPLIED:
        raise ValueError("toca-compile is already applied to this pipeline; call toca_compile.remove(pipe) first")
    if "backend" in compile_kwargs:
        raise ValueError("apply() chooses the backend itself; pass other torch.compile options only")
    modules = transformers_of(pipe)
    if not modules:
        raise ValueError("this pipeline has no transformer component (components: "
                         f"{sorted(getattr(pipe, 'components', {}))}); compile your model with "
                         "torch.compile(model, backend=ToCa(...).backend) instead")
    for name, module in modules.items():
        if isinstance(module, torch._dynamo.eval_frame.OptimizedModule) or module._compiled_call_impl is not None:
            raise ValueError(f"pipe.{name} is already compiled; pass the pipeline with its plain transformer")
    scheduler = getattr(pipe, "scheduler", None)
    if scheduler is None or not callable(getattr(scheduler, "step", None)):
        raise ValueError("this pipeline has no scheduler with a step() method, so its steps cannot be followed; "
                         "use toca.generation() and toca.step(i) around your own loop instead")
    applied = _Applied({name: ToCa(config) for name, module in modules.items()})
    tocas = list(applied.tocas.values())
    try:
        for name, module in modules.items():
            _apply_to_transformer(applied, module, applied.tocas[name], compile_kwargs)
        _follow_scheduler(applied, scheduler, tocas)
    except Exception:
        applied.undo()
        raise
    _APPLIED[pipe] = applied
    return tocas[0]


def remove(pipe: Any) -> None:
    """Undo :func:`apply`: the pipeline, its transformer(s) and scheduler are as they were, and
    the caches are freed."""
    applied = _APPLIED.pop(pipe, None)
    if applied is None:
        raise ValueError("toca-compile is not applied to this pipeline")
    applied.undo()
    for toca in applied.tocas.values():
        toca.release()


def applied(pipe: Any) -> dict[str, ToCa]:
    """The ``ToCa`` of each transformer of the pipeline (empty when not applied)."""
    entry = _APPLIED.get(pipe)
    return dict(entry.tocas) if entry is not None else {}


def is_applied(pipe: Any) -> bool:
    return pipe in _APPLIED


@dataclass
class PipelineSummary:
    """:class:`~toca_compile.stats.Summary` of each transformer of a pipeline."""

    summaries: dict[str, Summary]

    def __getitem__(self, name: str) -> Summary:
        return self.summaries[name]

    def __str__(self) -> str:
        return "\n".join(str(s) for s in self.summaries.values())


def summary(pipe: Any) -> PipelineSummary:
    """Per transformer and generation: which steps ran full or partial, uncached calls and why."""
    tocas = applied(pipe)
    if not tocas:
        raise ValueError("toca-compile is not applied to this pipeline")
    out = {}
    for name, toca in tocas.items():
        report = toca.summary()
        report.name = f"pipe.{name}"
        out[name] = report
    return PipelineSummary(out)


# -- the hooks ---------------------------------------------------------------------------
def _apply_to_transformer(applied: _Applied, module: torch.nn.Module, toca: ToCa, compile_kwargs: dict) -> None:
    applied.patch(module, "_compiled_call_impl", torch.compile(module._call_impl, backend=toca.backend, **compile_kwargs))
    if callable(getattr(module, "cache_context", None)):
        original_context = module.cache_context

        @functools.wraps(original_context)
        @contextlib.contextmanager
        def cache_context(name: str, *args: Any, **kwargs: Any) -> Iterator[None]:
            with original_context(name, *args, **kwargs), toca.branch(name):
                yield

        applied.patch(module, "cache_context", cache_context)
    if callable(getattr(module, "_reset_stateful_cache", None)):
        original_reset = module._reset_stateful_cache

        @functools.wraps(original_reset)
        def reset_stateful_cache(*args: Any, **kwargs: Any) -> Any:
            try:
                return original_reset(*args, **kwargs)
            finally:
                toca.end_generation()

        applied.patch(module, "_reset_stateful_cache", reset_stateful_cache)


def _follow_scheduler(applied: _Applied, scheduler: Any, tocas: list[ToCa]) -> None:
    original_set = scheduler.set_timesteps
    original_step = scheduler.step

    @functools.wraps(original_set)
    def set_timesteps(*args: Any, **kwargs: Any) -> Any:
        out = original_set(*args, **kwargs)
        timesteps = getattr(scheduler, "timesteps", None)
        steps = int(timesteps.shape[0]) if isinstance(timesteps, torch.Tensor) and timesteps.ndim == 1 else None
        for toca in tocas:
            toca.begin_generation(steps or None, source="pipeline")
            _check_preset_steps(toca, steps)
        return out

    @functools.wraps(original_step)
    def step(*args: Any, **kwargs: Any) -> Any:
        out = original_step(*args, **kwargs)
        for toca in tocas:
            toca.next_step()
        return out

    applied.patch(scheduler, "set_timesteps", set_timesteps)
    applied.patch(scheduler, "step", step)


def _check_preset_steps(toca: ToCa, steps: int | None) -> None:
    planned = toca.schedule.num_steps
    if toca.config.preset is None or planned is None or steps is None or steps == planned:
        return
    toca.warn(f"preset {toca.config.preset!r} is tuned for {planned} steps but the pipeline runs {steps}; its "
              "full steps and ratios follow the step index as if the generation had "
              f"{planned} steps (re-time it before the call: for toca in toca_compile.applied(pipe).values(): "
              f"toca.schedule = toca_compile.presets.get_preset({toca.config.preset!r}, num_steps={steps}))")
