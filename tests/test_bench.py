"""bench/: the straightforward reference and the engine agree; the throughput script reports them."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from bench import reference, throughput
from disentangle.data.concepts import ConceptWorld
from disentangle.data.images import Images, even_subset
from disentangle.attribution.evaluation import EvalConfig, evaluate_masks
from disentangle.core.hooks import channel_mask
from tests.conftest import ROOT

FAST = ["--images", "4", "--ig-steps", "2", "--batch-size", "2", "--block", "block_2"]


def test_the_references_original_metrics_are_utils(tiny):
    """The benchmark's straightforward original metrics equal utils.py's (the library's) on real maps,
    a size the 14x14 grid does not divide (a remainder) among them."""
    import utils
    gen = np.random.default_rng(3)
    for shape in ((3, 56, 56), (3, 60, 59)):
        attr = gen.normal(size=shape).astype(np.float32) ** 3
        assert reference.original_sparsity(attr, "pixel", 0.9) == pytest.approx(utils.compute_sparsity_pixel_wise(attr))
        assert reference.original_sparsity(attr, "patch", 0.9) == pytest.approx(utils.compute_sparsity_patch_wise(attr))
    world = ConceptWorld("val", transform=tiny.spec.transform(square=True))
    x = world[5][0]
    attr = gen.normal(size=(3, 56, 56)).astype(np.float32)
    with torch.no_grad():
        p = tiny.model(x[None]).softmax(1)[0]
    pred = int(p.argmax())
    for metric in ("pixel", "patch"):
        masked = reference.original_masked_image(x.numpy(), attr, metric, 0.1)
        drop = float(p[pred]) - reference.probability(tiny.model, masked, pred, torch.device("cpu"))
        ours = getattr(utils, f"probability_drop_{metric}_wise")(tiny.model, x, attr)
        assert drop == pytest.approx(ours, abs=1e-6)


@pytest.mark.parametrize("protocol", ["original", "extended"])
def test_reference_and_engine_agree(tiny, protocol):
    world = ConceptWorld("val")
    images = Images(world, even_subset(world.targets, 4))
    transform, idx = tiny.spec.transform(square=True), images.indices
    cfg, block = EvalConfig(ig_steps=8, protocol=protocol), "features.denseblock3"
    blocked = channel_mask(range(3, 30, 2), 32)
    ref = reference.run(tiny.model, images.loader(transform, 1), cfg, block, blocked, torch.device("cpu"))
    x, labels, _ = next(iter(images.loader(transform, 4)))
    results = evaluate_masks(tiny.model, x, labels, None, cfg, block, torch.stack([torch.zeros_like(blocked), blocked]),
                             ig_internal_batch=12, keep_maps=True, stem=tiny.spec.stem)
    eng = {cell: {"index": idx, **{k: v.numpy() for k, v in res.items()}}
           for cell, res in zip(reference.CELLS, results)}
    lines, ok = throughput.compare(ref, eng, "fp32", cfg.metric)
    assert ok, lines
    assert not np.allclose(ref["baseline"]["ig_attr"], ref["filtered"]["ig_attr"])   # the cluster mattered


def sides(n=3):
    """Two sides' results for ``n`` images that agree exactly."""
    gen = np.random.default_rng(0)
    cell = {"index": np.arange(n), "target": np.zeros(n, int), "ig_attr": gen.normal(size=(n, 3, 14, 14)),
            "saliency_attr": gen.random((n, 3, 14, 14)), **{k: gen.random(n) for k in throughput.SCALARS}}
    return ({c: dict(cell) for c in reference.CELLS},
            {c: {k: v.copy() for k, v in cell.items()} for c in reference.CELLS})


def test_float64_settles_only_rounding():
    ref, eng = sides()
    off = ref["filtered"]["ig_attr"].copy()
    off[1] *= 1.01                                                              # 1% of the map's mass
    ref["filtered"]["ig_attr"] = off
    asked = []

    def exact(reference_answer, engine_answer):
        def float64(side, positions):
            asked.append((side, positions.tolist()))
            answer = reference_answer if side == "reference" else engine_answer
            return {c: {k: v[positions] for k, v in answer[c].items()} for c in reference.CELLS}
        return float64

    assert not throughput.compare(ref, eng, "fp32", "patch")[1]                 # no arbiter: outside tolerance
    lines, ok = throughput.compare(ref, eng, "fp32", "patch", exact(eng, None))  # float64 agrees with the engine
    assert ok and asked == [("reference", [1])] and "within tolerance of it for 1" in "\n".join(lines)
    # The reference's exact answer is its fp32 one: the engine's exact answer decides.
    asked.clear()
    lines, ok = throughput.compare(ref, eng, "fp32", "patch", exact(ref, ref))
    assert ok and asked == [("reference", [1]), ("engine", [1])], lines
    assert "differ by 0.0e+00 in maps and 0.0e+00 in scalars" in "\n".join(lines)
    lines, ok = throughput.compare(ref, eng, "fp32", "patch", exact(ref, eng))   # the engine's algorithm differs
    assert not ok and "differ by 9.9e-03 in maps" in "\n".join(lines)
    assert "the two computations differ for 1" in "\n".join(lines)


def test_float64_runs_of_both_sides_agree(tmp_path, tiny):
    # In float64 the rounding that fp32 comparisons must tolerate vanishes: the engine's algorithm
    # (shared pass, stem once per image, folded batch norms, fused metrics) equals the reference's.
    args = throughput.parser().parse_args([*FAST, "--device", "cpu"])
    assert throughput.main([*FAST, "--role", "reference", "--workdir", str(tmp_path)]) == 0
    fp32 = throughput.reference_results(tmp_path)
    positions = np.array([3, 1])
    exact = {side: throughput.float64_run(args, side, positions) for side in throughput.ROLES}
    for cell in reference.CELLS:
        for side in throughput.ROLES:
            assert exact[side][cell]["index"].tolist() == fp32[cell]["index"][positions].tolist()
        d = throughput.differences(exact["reference"][cell], throughput.take(fp32[cell], positions))
        assert throughput.within(d).all() and 0 < d["ig_attr"].max() < 1e-5   # float64 differs only by rounding
        both = throughput.differences(exact["reference"][cell], exact["engine"][cell])
        assert max(both[f"{m}_attr"].max() for m in ("ig", "saliency")) < 1e-12
        assert max(both[k].max() for k in throughput.SCALARS) < throughput.EXACT_SCALAR_TOL


def test_ig_delta_tolerance_follows_the_map_mass():
    ref, eng = sides()
    mass = np.abs(ref["baseline"]["ig_attr"]).reshape(3, -1).sum(1)
    eng["baseline"]["ig_delta"] = ref["baseline"]["ig_delta"] + 0.5 * throughput.MAP_TOL * mass
    assert throughput.compare(ref, eng, "fp32", "patch")[1]
    eng["baseline"]["ig_delta"] = ref["baseline"]["ig_delta"] + 2 * throughput.MAP_TOL * mass
    assert not throughput.compare(ref, eng, "fp32", "patch")[1]


def test_bench_sides_in_process(tmp_path, tiny):
    for which in throughput.ROLES:
        assert throughput.main([*FAST, "--role", which, "--workdir", str(tmp_path / which)]) == 0
    res = {r: json.loads((tmp_path / r / "result.json").read_text()) for r in throughput.ROLES}
    assert res["engine"]["images"] == res["reference"]["images"] == 4
    assert 0 < res["engine"]["flops_per_image"] < res["reference"]["flops_per_image"]   # one forward serves both
    assert res["engine"]["blocked"] == round(32 / 3) and res["engine"]["channels"] == 32
    lines, ok = throughput.compare(throughput.reference_results(tmp_path / "reference"),
                                   throughput.engine_results(tmp_path / "engine"), "fp32", "patch")
    assert ok, lines


def test_help_explains_every_flag():
    for action in throughput.parser()._actions:
        assert action.help, action.option_strings


@pytest.mark.slow
def test_bench_end_to_end():
    res = subprocess.run([sys.executable, "bench/throughput.py", *FAST, "--memory-images", "8"], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout.splitlines()
    assert out[-1].startswith("ratio: ") and float(out[-1].split()[1]) > 0
    assert any("within tolerance" in line for line in out)
    assert any(line.startswith("engine peak memory by images: 4: RSS") and "8: RSS" in line for line in out)
