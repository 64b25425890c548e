"""FLOP accounting with ``torch.utils.flop_counter`` (matmul, attention and conv FLOPs).

Measurement only: the core never imports this package. Counting a :class:`~toca_compile.ToCa`
registers a call observer (:meth:`ToCa.observe <toca_compile.backend.ToCa.observe>`), and the
formula torch lacks for CPU attention is in torch's registry only while something is counted.

Cached variants are counted by running them with the eager executor, so the counter sees
exactly the operations the rewritten graphs perform. On the meta device no weights or memory
are needed, which makes full-size configurations countable on a small machine.

* :mod:`.counter`: FLOPs of one call (:func:`count_flops`, :func:`cpu_attention_formula`).
* :mod:`.log`: :func:`counting` yields a :class:`FlopLog` of the graph calls a ToCa runs (``sum(log)``
  is the total), which can also attribute FLOPs to graph nodes (``per_node=True``) and, on the
  meta device, count each distinct graph call once (``memoize=True``).
* :mod:`.generation`, :mod:`.report`: :func:`generation_flops`, a whole generation, uncached and
  cached, for any model and ToCa configuration or schedule, with a per-block / per-region-kind
  breakdown.
* :mod:`.cli`: the ``toca flops`` command (not imported here).
"""
from .counter import count_flops, cpu_attention_formula, graph_module_of
from .generation import ConfigLike, GenerationCounter, InputsLike, generation_flops
from .log import OUTSIDE, FlopLog, GraphCall, Site, block_of, counting, module_path, node_sites, run_counted
from .report import OTHER, OVERHEAD, Breakdown, FlopsReport, kind_of, region_kinds

__all__ = ["OTHER", "OUTSIDE", "OVERHEAD", "Breakdown", "ConfigLike", "FlopLog", "FlopsReport", "GenerationCounter",
           "GraphCall", "InputsLike", "Site", "block_of", "count_flops", "counting", "cpu_attention_formula",
           "generation_flops", "graph_module_of", "kind_of", "module_path", "node_sites", "region_kinds",
           "run_counted"]
