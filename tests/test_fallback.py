"""Graphs with nothing to cache run as plain compiled graphs, with one warning that says why."""
import warnings

import pytest
import torch
from torch import nn

from toca_compile import ToCa, ToCaConfig, ToCaWarning


def _run_twice(model, x, compiler):
    toca = ToCa(ToCaConfig(compiler=compiler))
    compiled = torch.compile(model, backend=toca.backend, fullgraph=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            out1, out2 = compiled(x), compiled(x)
    ours = [w for w in caught if issubclass(w.category, ToCaWarning)]
    return toca, out1, out2, ours


@pytest.mark.parametrize("compiler", ["eager", pytest.param("inductor", marks=pytest.mark.inductor)])
def test_plain_mlp_falls_back_with_one_warning(compiler):
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8)).eval()
    x = torch.randn(2, 5, 8)
    toca, out1, out2, ours = _run_twice(model, x, compiler)
    assert len(ours) == 1 and "nothing cached" in str(ours[0].message)
    assert "no residual attention or MLP branch" in str(ours[0].message)
    torch.testing.assert_close(out1, model(x))
    torch.testing.assert_close(out2, model(x))
    assert len(toca.graphs) == 1 and len(toca.fallbacks) == 1
    stats = toca.stats()
    assert stats.calls == 0 and stats.uncached_calls == 2
    assert list(stats.uncached) == ["no residual attention or MLP branch was found in this graph"]


def test_cnn_falls_back():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1)).eval()
    x = torch.randn(1, 3, 8, 8)
    _, out1, _, ours = _run_twice(model, x, "eager")
    assert len(ours) == 1
    torch.testing.assert_close(out1, model(x))


def test_training_mode_graph_is_left_alone():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 8)

        def forward(self, x):
            return x + self.fc2(torch.nn.functional.gelu(self.fc1(x)))

    model = Residual()
    toca = ToCa(ToCaConfig(compiler="eager"))
    compiled = torch.compile(model, backend=toca.backend)
    x = torch.randn(2, 4, 8)
    with pytest.warns(ToCaWarning, match="gradients are enabled"):
        out = compiled(x)
    out.sum().backward()
    assert model.fc1.weight.grad is not None
