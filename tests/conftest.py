import gc

import pytest
import torch
from hypothesis import settings

import profiles  # noqa: F401  (registers the "ci" and "long" hypothesis profiles)

settings.load_profile("ci")  # --hypothesis-profile=long replaces it


@pytest.fixture(autouse=True)
def _one_thread():
    """The test models are tiny: intra-op threads only add sync overhead on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Each test compiles from scratch: no cache entries or stances leak between tests."""
    torch._dynamo.reset()
    gc.collect()  # graphs freed by the reset (and their caches) go now, not at some later test
    yield
    torch.compiler.set_stance("default")
    torch._dynamo.reset()
