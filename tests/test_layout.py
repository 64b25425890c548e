"""The package's layout: the compiler core never imports the demo domain (``toca_compile.demo``),
and the demo's bundled assets resolve from ``toca_compile/demo/assets``."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from toca_compile.demo import zoo

REPO = Path(__file__).resolve().parent.parent

# Run in a fresh interpreter: this test session has imported the demo already. The checkout is put
# first on sys.path so that the package under test is imported, not another installed copy.
_IMPORT_CORE = """
import importlib, json, pkgutil, sys
sys.path.insert(0, {repo!r})
import toca_compile
import toca_compile.passes
core = ["toca_compile", "toca_compile.backend", "toca_compile.runtime", "toca_compile.config", "toca_compile.passes"]
core += [m.name for m in pkgutil.walk_packages(toca_compile.passes.__path__, "toca_compile.passes.")]
for name in core:
    importlib.import_module(name)
{more}
print(json.dumps({{"file": toca_compile.__file__, "imported": core,
                  "demo": sorted(m for m in sys.modules if m == "toca_compile.demo"
                                 or m.startswith("toca_compile.demo."))}}))
"""


def _import_in_fresh_interpreter(more: str = "") -> dict:
    code = _IMPORT_CORE.format(repo=str(REPO), more=more)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO,
                          check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(result["file"]).resolve().is_relative_to(REPO / "toca_compile")
    return result


def test_the_core_does_not_import_the_demo():
    result = _import_in_fresh_interpreter()
    assert "toca_compile.passes.pipeline" in result["imported"]  # the passes were walked
    assert result["demo"] == []


def test_no_core_module_imports_the_demo():
    """Every module of the package outside ``toca_compile.demo``, the command line included (it
    imports the demo only when ``toca demo`` / ``toca calibrate --model mnist`` runs)."""
    more = """
def walk(package):  # pkgutil.walk_packages would import toca_compile.demo to look inside it
    for m in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if m.name != "toca_compile.demo":
            module = importlib.import_module(m.name)
            core.append(m.name)
            if m.ispkg:
                walk(module)
walk(toca_compile)
"""
    result = _import_in_fresh_interpreter(more)
    assert {"toca_compile.cli", "toca_compile.calibrate_cli", "toca_compile.calibration"} <= set(result["imported"])
    assert result["demo"] == []


def test_the_assets_resolve_from_the_demo_package():
    folder = zoo.assets()
    assert folder.is_dir()
    assert Path(str(folder)).resolve() == REPO / "toca_compile" / "demo" / "assets"
    names = {entry.name for entry in folder.iterdir()}
    assert {zoo.DIT_ASSET, zoo.DIT_P2_ASSET, zoo.CLASSIFIER_ASSET, "mnist_dit_training.json",
            "mnist_dit_p2_training.json", "mnist_test_features.safetensors", zoo.JOINT_ASSET,
            "mnist_joint_training.json", "schedules"} <= names
    schedules = zoo.mnist_schedule_files()
    assert sorted(schedules) == [2.0, 2.5, 3.0, 3.5, 4.0]
    for path in schedules.values():
        assert Path(path).resolve().parent == REPO / "toca_compile" / "demo" / "assets" / "schedules"
        assert json.loads(Path(path).read_text())  # readable JSON
    assert not (REPO / "toca_compile" / "assets").exists()  # nothing left at the old place
