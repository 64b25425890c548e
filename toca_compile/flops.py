"""FLOP accounting with ``torch.utils.flop_counter`` (matmul, attention and conv FLOPs).

Cached variants are counted by running them with the eager executor, so the counter sees
exactly the operations the rewritten graphs perform. On the meta device no weights or memory
are needed, which makes full-size configurations countable on a small machine.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable, Iterator

from torch.utils.flop_counter import FlopCounterMode

if TYPE_CHECKING:
    from .backend import ToCa


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """FLOPs of one call of ``fn``."""
    with FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return counter.get_total_flops()


def run_counted(sink: list[int] | None, fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn``; when a sink is open, add the call's FLOPs to it."""
    if sink is None:
        return fn(*args)
    with FlopCounterMode(display=False) as counter:
        out = fn(*args)
    sink.append(counter.get_total_flops())
    return out


@contextlib.contextmanager
def counting(toca: "ToCa") -> Iterator[list[int]]:
    """FLOPs of every graph ``toca`` runs inside the block (compile first, then count).

    Dynamo cannot trace under a dispatch mode, so the counter is opened inside the backend's
    callables instead of around the compiled model; ops between graphs (graph breaks) are
    not counted. Use the eager executor (``ToCaConfig(compiler="eager")``): Inductor's fused
    kernels are invisible to the counter.
    """
    sink: list[int] = []
    toca.flop_sink = sink
    try:
        yield sink
    finally:
        toca.flop_sink = None
