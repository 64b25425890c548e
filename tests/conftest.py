import gc
import os
from pathlib import Path

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


REPO = Path(__file__).resolve().parent.parent
MNIST = Path(os.environ.get("TOCA_MNIST_DIR", REPO.parent / "shared" / "data" / "mnist"))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The MNIST files (``../shared/data/mnist`` beside the checkout, or ``TOCA_MNIST_DIR``).
    A missing data set fails the tests that need it: they are never skipped quietly."""
    if not (MNIST / "SHA256SUMS").is_file():
        pytest.fail(f"MNIST not found in {MNIST}: put the data set there or set TOCA_MNIST_DIR")
    return MNIST


# -- a skipped test fails the run ---------------------------------------------------------
_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    """A skip would hide a test that did not run; CI must see it (TOCA_ALLOW_SKIPS=1 allows)."""
    if _skipped and not os.environ.get("TOCA_ALLOW_SKIPS") and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if _skipped and not os.environ.get("TOCA_ALLOW_SKIPS"):
        terminalreporter.write_line(f"{len(_skipped)} test(s) skipped, which fails this run "
                                    "(set TOCA_ALLOW_SKIPS=1 to allow): " + ", ".join(_skipped[:10]), red=True)
