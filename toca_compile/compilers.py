"""Final compilers for rewritten graphs: Inductor by default, or the graph run eagerly."""
from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator

import torch
import torch.fx as fx


def compile_graph(gm: fx.GraphModule, inputs: list, compiler: str) -> Callable:
    if compiler == "eager":
        return gm.forward
    from torch._inductor.compile_fx import compile_fx

    on_cpu = not any(isinstance(x, torch.Tensor) and x.device.type != "cpu" for x in inputs)
    with reuse_freed_buffers() if on_cpu else contextlib.nullcontext():
        return compile_fx(gm, inputs)


@contextlib.contextmanager
def reuse_freed_buffers() -> Iterator[None]:
    """Let Inductor's wrapper reuse every freed buffer of the same size, as it did before it
    weighed reuse against its estimate of the graph's peak memory.

    A full-step graph keeps the attention map alive for the token score, which lifts that
    estimate; Inductor then declines to hand one block's freed MLP activations to the next
    block and allocates them afresh on every call. On CPU those multi-megabyte buffers go back
    to the operating system between calls often enough that, in some processes, a full step of
    the bundled MNIST DiT took a thousand page faults and the whole generation lost a sixth of
    its speed-up (README, "Wall clock against FLOPs on this CPU"). Reuse is always correct (the wrapper
    only offers buffers that are dead and of the same size); it costs at most some peak memory,
    which on CPU is cheaper than the faults. GPU graphs keep Inductor's choice: the CUDA caching
    allocator makes fresh buffers cheap there. Where this Inductor has no such check, nothing
    changes.
    """
    try:
        from torch._inductor.codegen.wrapper import AllocateLine
    except ImportError:  # pragma: no cover - a PyTorch without this module
        yield
        return
    if "should_reuse_buffer" not in AllocateLine.__dict__:  # an Inductor without the peak-memory check
        yield
        return
    global _DEPTH, _ORIGINAL
    with _LOCK:  # compiles may run in several threads: patch once, restore after the last
        if _DEPTH == 0:
            _ORIGINAL = AllocateLine.__dict__["should_reuse_buffer"]
            AllocateLine.should_reuse_buffer = _always
        _DEPTH += 1
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH -= 1
            if _DEPTH == 0:
                AllocateLine.should_reuse_buffer = _ORIGINAL
                _ORIGINAL = None


def _always(self, free_line, size: int) -> bool:  # noqa: ARG001 - Inductor's signature
    return True


_LOCK = threading.Lock()
_DEPTH = 0
_ORIGINAL = None
