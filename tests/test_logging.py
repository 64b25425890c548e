"""The ``toca_compile`` logger: one INFO line per analysed graph (its regions) and per compiled
variant, and at DEBUG the decision of every region on every step — the same facts the stats and
``inspect`` report, so a user can follow a run without reading code."""
from __future__ import annotations

import logging
import re

import torch

from toca_compile import ToCa, ToCaConfig
from toca_compile.demo import zoo


def test_info_names_each_graph_and_variant_and_debug_each_step(caplog):
    model = zoo.load_mnist_dit()
    toca = ToCa(ToCaConfig(compiler="eager", interval=3, ratio=0.15))
    torch._dynamo.reset()
    fast = torch.compile(model, backend=toca.backend)
    with caplog.at_level(logging.DEBUG, logger="toca_compile"):
        zoo.sample(fast, torch.arange(2), steps=4, progress=False)
    torch._dynamo.reset()
    lines = [r for r in caplog.records if r.name == "toca_compile"]
    graphs = [r.getMessage() for r in lines if r.levelno == logging.INFO and "regions" in r.getMessage()]
    assert graphs == ["graph 0: 12 regions (attn 6, mlp 6), 6 refreshed per token, 6 reused whole"]
    variants = [r.getMessage() for r in lines if r.levelno == logging.INFO and "compiled variant" in r.getMessage()]
    assert len(variants) == toca.stats().variants_compiled == 2
    steps = [r.getMessage() for r in lines if r.levelno == logging.DEBUG]
    assert [re.match(r"graph 0: step (\d) (\w+)", m).groups() for m in steps] == [
        ("0", "full"), ("1", "partial"), ("2", "partial"), ("3", "full")]
    k = -(-15 * 49 // 100)  # ceil(0.15 * 49) rows of each MLP
    assert steps[1].split(": ", 2)[2].split() == [f"{i}:{'reuse' if i % 2 == 0 else f'rows{k}'}" for i in range(12)]


def test_nothing_is_logged_at_the_default_level(caplog):
    model = zoo.load_mnist_dit()
    toca = ToCa(ToCaConfig(compiler="eager"))
    torch._dynamo.reset()
    fast = torch.compile(model, backend=toca.backend)
    with caplog.at_level(logging.WARNING, logger="toca_compile"):
        zoo.sample(fast, torch.arange(2), steps=2, progress=False)
    torch._dynamo.reset()
    assert not [r for r in caplog.records if r.name == "toca_compile"]
