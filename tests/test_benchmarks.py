"""The benchmark scripts: seed sets pool exactly, partial runs merge only when their references
agree, and both scripts run end to end on the small model (with the quick eager executor)."""
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from profiles import examples

REPO = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


quality = _load("quality")
speed = _load("speed")

values = st.lists(st.floats(-50, 50, allow_nan=False), min_size=1, max_size=12)


@examples(60)
@given(st.lists(values, min_size=1, max_size=4))
def test_pooled_moments_equal_the_statistics_of_all_values(parts):
    pooled_mean, pooled_std = quality._pooled([quality._moments(torch.tensor(p, dtype=torch.float64)) for p in parts])
    everything = torch.tensor([v for p in parts for v in p], dtype=torch.float64)
    assert pooled_mean == pytest.approx(float(everything.mean()), abs=1e-9)
    expected_std = float(everything.std()) if everything.numel() > 1 else 0.0
    assert pooled_std == pytest.approx(expected_std, rel=1e-6, abs=1e-6)


def _record(name: str, seed_set: int, fid: float) -> dict:
    moments = quality._moments(torch.tensor([30.0, 32.0]))
    rec = {"name": name, "seed_set": seed_set, "fid": fid, "accuracy": 0.9, "seconds": 1.0,
           "flops_per_image": 2e9 if name == "original" else 1e9}
    if name != "original":
        rec.update(psnr=moments, ssim=quality._moments(torch.tensor([0.9, 0.95])), psnr_identical=0,
                   fid_delta_boot_std=0.1)
    return rec


def _run(records: list[dict], command: str) -> dict:
    meta = {"samples": 10, "guidance": 3.0, "model": "m", "device": "cpu", "command": command, "wall_minutes": 1.0}
    return {"meta": meta, "records": records}


def test_runs_merge_when_their_originals_agree():
    first = _run([_record("original", s, 50.0 + s) for s in range(2)] + [_record("fora-N2", 0, 51.0)], "a")
    second = _run([_record("original", s, 50.0 + s) for s in range(2)] + [_record("fora-N2", 1, 53.0)], "b")
    records, meta = quality.merge_runs([first, second])
    assert sorted((r["name"], r["seed_set"]) for r in records) == [
        ("fora-N2", 0), ("fora-N2", 1), ("original", 0), ("original", 1)]
    assert meta["command"] == "a && b" and meta["wall_minutes"] == 2.0
    rows, spread = quality.summarize(records, [r for r in quality.ROWS if r.name in ("original", "fora-N2")])
    fora = rows[1]
    assert fora["fid_delta_per_seed"] == [1.0, 2.0] and fora["fid_delta"] == 1.5
    assert spread["fid_range"] == 1.0 and fora["flops_ratio"] == 2.0


def test_runs_with_different_originals_do_not_merge():
    first = _run([_record("original", 0, 50.0)], "a")
    second = _run([_record("original", 0, 50.5)], "b")
    with pytest.raises(SystemExit, match="differs between runs"):
        quality.merge_runs([first, second])


def test_speed_script_times_every_variant_and_counts_flops(tmp_path, capsys):
    out = tmp_path / "speed.json"
    speed.main(["--model", "mnist", "--layers", "2", "--batch", "4", "--steps", "6", "--rounds", "2",
                "--variants", "eager,toca", "--toca-compiler", "eager", "--threads", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    assert set(result["median_s"]) == {"eager", "toca"} and all(len(t) == 2 for t in result["times_s"].values())
    assert result["blocks"] == 2 and result["tflops"]["toca"] < result["tflops"]["uncached"]
    assert "| toca |" in capsys.readouterr().out


@pytest.mark.parametrize("name, lists", [("mnist", ["transformer_blocks"]),
                                         ("flux-dev", ["transformer_blocks", "single_transformer_blocks"])])
def test_layers_caps_every_block_list_without_building_the_full_model(name, lists):
    factory, _, _ = speed.build(name, 2)
    with torch.device("meta"):
        model = factory()
    assert [len(getattr(model, attr)) for attr in lists] == [2] * len(lists)


def test_quality_script_runs_and_rebuilds_from_its_json(tmp_path, mnist_dir):
    out = tmp_path / "q"
    quality.main(["--rows", "original,fora-N2", "--samples", "10", "--batch", "10", "--seeds", "2",
                  "--threads", "1", "--data", str(mnist_dir), "--out", str(out)])
    saved = json.loads((out / "quality.json").read_text())
    assert len(saved["records"]) == 4  # 2 rows x 2 seed sets
    fora = next(r for r in saved["rows"] if r["name"] == "fora-N2")
    assert fora["flops_ratio"] > 1.5 and math.isfinite(fora["psnr_mean"])
    table = (out / "quality.md").read_text()
    rebuilt = tmp_path / "r"
    quality.main(["--from-json", str(out / "quality.json"), "--out", str(rebuilt)])
    assert (rebuilt / "quality.md").read_text() == table and (rebuilt / "quality.png").is_file()


def test_quality_script_on_the_196_token_dit_writes_its_own_files(tmp_path, mnist_dir):
    out = tmp_path / "q"
    # the two cheapest rows (no tracing): the cached rows run the same code as on the 49-token DiT
    quality.main(["--model", "mnist-p2", "--rows", "original,steps-10", "--samples", "10", "--batch", "10",
                  "--seeds", "1", "--bootstrap", "20", "--threads", "1", "--data", str(mnist_dir), "--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["quality_p2.json", "quality_p2.md", "quality_p2.png"]
    saved = json.loads((out / "quality_p2.json").read_text())
    assert "14x14 = 196 tokens" in saved["meta"]["model"] and "mnist_dit_p2.safetensors" in saved["meta"]["model"]
    original, fewer = saved["rows"]
    assert original["flops_per_image"] / 1e9 == pytest.approx(17.54, abs=0.01)  # 5.25x the 49-token DiT's
    assert fewer["flops_ratio"] == pytest.approx(5.0) and math.isfinite(fewer["psnr_mean"])
    table = (out / "quality_p2.md").read_text()
    assert table.startswith("Bundled MNIST DiT, patch 2 (") and "196 tokens" in table.splitlines()[0]
    rebuilt = tmp_path / "r"
    quality.main(["--from-json", str(out / "quality_p2.json"), "--out", str(rebuilt)])
    assert (rebuilt / "quality_p2.md").read_text() == table
    with pytest.raises(SystemExit):  # the shipped schedules are the 49-token DiT's
        quality.main(["--model", "mnist-p2", "--rows", "calibrated-2x", "--out", str(tmp_path / "c")])


peers = _load("peers")


def test_peers_script_compares_toca_with_a_diffusers_hook(tmp_path, mnist_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "cache_dit", None)  # as in CI: cache-dit not installed
    out = tmp_path / "p"
    peers.main(["--rows", "ds-fbcache-0.08,ds-taylorseer-default,toca-fora-N2,cd-dbcache-0.10", "--samples", "10",
                "--batch", "10", "--seeds", "1", "--threads", "1", "--no-timing", "--data", str(mnist_dir),
                "--out", str(out)])
    saved = json.loads((out / "peers.json").read_text())
    rows = {r["name"]: r for r in saved["rows"]}
    assert rows["original"]["flops_ratio"] == 1.0
    fbc, fora = rows["ds-fbcache-0.08"], rows["toca-fora-N2"]
    assert fbc["flops_per_image"] < rows["original"]["flops_per_image"] and fora["flops_ratio"] > 1.5
    assert math.isfinite(fbc["psnr_mean"]) and math.isfinite(fora["psnr_mean"])
    assert "transformer_blocks.* <fbc_leader_block_hook>" in fbc["hooks"]
    skipped = {r["name"]: r["reason"] for r in saved["not_applied"]}
    assert "cache-dit is not installed" in skipped["cd-dbcache-0.10"]
    assert "hook no module" in skipped["ds-taylorseer-default"]  # its default identifiers miss attn1
    table = (out / "peers.md").read_text()
    assert "| FirstBlockCache 0.08 | diffusers |" in table and (out / "peers.png").is_file()


def test_each_timed_variant_gets_a_forward_code_object_of_its_own():
    """Dynamo's give-up state lives on the code object, so the timing gives every compiled
    variant its own copy of ``forward``: same outputs, same weights, the class left untouched."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    a, b = peers.own_code(peers.copy.copy(model)), peers.own_code(peers.copy.copy(model))
    codes = [m.forward.__func__.__code__ for m in (model, a, b)]  # equal, but three objects
    assert len({id(c) for c in codes}) == 3 and type(model) is torch.nn.Linear
    assert isinstance(a, torch.nn.Linear) and a.weight is model.weight
    x = torch.randn(2, 4)
    assert torch.equal(a(x), model(x)) and torch.equal(b(x), model(x))
    # Dynamo compiles each copy as its own frame: giving up on one leaves the others compiled
    seen = []

    def backend(gm, inputs):
        seen.append(gm)
        return gm.forward

    torch._dynamo.reset()
    torch.compile(a, backend=backend)(x)
    torch.compile(b, backend=backend)(x)
    assert len(seen) == 2


def test_schedule_ablation_reproduces_diffusers_taylorseer_with_toca_compiles_forecast(capsys):
    """Our TaylorSeer on diffusers' full steps is diffusers' hook on the pre-gate modules: same
    FLOPs ratio and PSNR (the ablation rests on this)."""
    ablation = _load("schedule_ablation")
    assert ablation.diffusers_full_steps(3)[:6] == (0, 1, 2, 4, 7, 10)
    assert ablation.warmup_full_steps(3, 3)[:5] == (0, 1, 2, 5, 8)
    bench = ablation.Bench(samples=4)
    from toca_compile import ToCaConfig

    ours = bench.toca(ToCaConfig(mode="taylorseer"), ablation.diffusers_full_steps(3))
    theirs = bench.diffusers_taylorseer(3, [r"transformer_blocks\.\d+\.(attn1|ff)"])
    assert ours[1] == pytest.approx(theirs[1], abs=0.05) and 30 < ours[1] < 80
    assert ours[0] == pytest.approx(theirs[0], rel=0.02) and ours[0] > 2.3


def test_research_layout_table_builds_every_layout_and_prints_a_row(capsys, monkeypatch):
    coverage = _load("model_coverage")
    built = list(coverage.research_layouts())  # every ArchSpec of the table is a valid layout
    assert len(built) == len(coverage.RESEARCH_LAYOUTS)
    monkeypatch.setattr(coverage, "RESEARCH_LAYOUTS", coverage.RESEARCH_LAYOUTS[:1])
    coverage.main(["--research-layouts"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "| DiT block (SDPA, adaLN) | 1 | attn 2, mlp 2 | 2 | 2 |"


def test_one_process_per_seed_set_merges_into_what_one_process_gives(tmp_path, mnist_dir):
    common = ["--rows", "original,steps-10", "--samples", "10", "--batch", "10",
              "--bootstrap", "0", "--threads", "1", "--data", str(mnist_dir)]
    quality.main([*common, "--seeds", "2", "--out", str(tmp_path / "both")])
    for first in (0, 1):
        quality.main([*common, "--seeds", "1", "--first-seed-set", str(first), "--out", str(tmp_path / f"s{first}")])
    quality.main(["--from-json", *(str(tmp_path / f"s{k}" / "quality.json") for k in (0, 1)),
                  "--out", str(tmp_path / "merged")])
    both, merged = (json.loads((tmp_path / d / "quality.json").read_text()) for d in ("both", "merged"))
    fids = {d["name"]: d["fid_per_seed"] for d in both["rows"]}
    assert {d["name"]: d["fid_per_seed"] for d in merged["rows"]} == fids
    assert fids["original"][0] != fids["original"][1]  # the second process drew the second seed set's noise
    assert merged["fid_spread"]["fid_range"] == both["fid_spread"]["fid_range"] > 0


@examples(40)
@given(st.lists(st.integers(1, 64), min_size=2, max_size=5, unique=True), st.floats(0.0, 5.0), st.floats(0.01, 1.0))
def test_fixed_cost_fit_recovers_the_line_it_was_given(batches, fixed, per_item):
    got_fixed, got_per_item = speed.fit_fixed_cost(batches, [fixed + per_item * b for b in batches])
    assert got_fixed == pytest.approx(fixed, abs=1e-9) and got_per_item == pytest.approx(per_item, rel=1e-9)


@examples(40)
@given(st.floats(0.0, 1.0), st.lists(st.floats(0.05, 1.0), min_size=1, max_size=30))
def test_eta_ceiling_is_the_eta_of_calls_costing_the_fixed_share_plus_their_flops(fixed_share, flops_fractions):
    # a generation of calls i with FLOPs fraction phi_i, each taking f + (1 - f) * phi_i plain calls
    n = len(flops_fractions)
    speed_up = n / sum(fixed_share + (1 - fixed_share) * phi for phi in flops_fractions)
    flops_ratio = n / sum(flops_fractions)
    assert speed.eta_ceiling(fixed_share, flops_ratio) == pytest.approx(speed_up / flops_ratio, rel=1e-9)


def test_speed_script_fits_the_fixed_cost_of_the_baseline(tmp_path):
    out = tmp_path / "speed.json"
    speed.main(["--model", "mnist", "--layers", "1", "--batch", "8", "--steps", "3", "--rounds", "1",
                "--variants", "eager,toca", "--toca-compiler", "eager", "--threads", "1", "--fixed-cost",
                "--out", str(out)])
    fixed = json.loads(out.read_text())["fixed_cost"]
    assert fixed["batches"] == [1, 2, 4, 8] and len(fixed["median_call_ms"]) == 4
    assert set(fixed["eta_ceiling"]) == {"toca"} and 0 < fixed["eta_ceiling"]["toca"] <= 1.0
