"""Final compilers for rewritten graphs: Inductor by default, or the graph run eagerly."""
from __future__ import annotations

from typing import Callable

import torch.fx as fx


def compile_graph(gm: fx.GraphModule, inputs: list, compiler: str) -> Callable:
    if compiler == "eager":
        return gm.forward
    from torch._inductor.compile_fx import compile_fx

    return compile_fx(gm, inputs)
