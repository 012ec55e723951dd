"""The batched engine's speed features keep its results: the stem run once per image (exact in
float64), batch norms as multiply-adds, fused faithfulness, channels-last, bf16 autocast (close to
fp32 by rank), --batch-size auto backing off on out-of-memory, streaming memory."""
import copy
import gc
import threading
from contextlib import nullcontext

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

import baseline_eval
from disentangle.io import artifacts
from disentangle.core import runtime
from disentangle import cli
from disentangle.attribution import evaluation
from disentangle.attribution.engine import MIN_PASS_ROWS, entry, masked_attributions, side_by_side
from disentangle.attribution.folding import folded_norms
from disentangle.data.concepts import ConceptWorld
from disentangle.data.images import Images, even_subset
from disentangle.attribution.evaluation import EvalConfig, evaluate_masks
from disentangle.core.hooks import capture, channel_mask
from disentangle.attribution.metrics import faithfulness
from disentangle.core.models import load_model

BLOCK = "features.denseblock2"
BLOCKED = torch.stack([channel_mask([], 32), channel_mask(range(0, 32, 3), 32)])   # baseline + one cluster


def batch(loaded, n):
    world = ConceptWorld("val", transform=loaded.spec.transform(square=True))
    idx = even_subset(world.targets, n)
    return torch.stack([world[int(i)][0] for i in idx]), torch.tensor([world[int(i)][1] for i in idx])


def importance(attr):
    return attr.abs().sum(1).flatten(1).numpy()                                 # (B, H*W)


def random_norms(model):
    """Batch-norm statistics and affine parameters away from the identity (random weights have mean 0, var 1)."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            for t, lo, hi in ((m.running_mean, -1, 1), (m.running_var, 0.5, 2), (m.weight, -1.5, 1.5), (m.bias, -1, 1)):
                t.data.copy_(torch.rand(t.shape, generator=gen) * (hi - lo) + lo)
    return model


@pytest.mark.parametrize("name, size, block", [("tiny_densenet", 56, "features.denseblock1"),
                                               ("resnet18", 64, "layer1"),
                                               ("efficientnet_lite0", 64, "blocks.1")])
def test_stem_once_per_image_is_exact(name, size, block):
    # In float64 the rounding vanishes, so the stem path must equal the plain one to ~1e-12: an error in
    # the algebra (offset, pool order, step weights, the backward through the stem) would show at ~1e-2.
    loaded = load_model(name, None if name == "tiny_densenet" else "random")
    model = random_norms(copy.deepcopy(loaded.model)).double()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 3, size, size, generator=gen, dtype=torch.float64)
    with torch.no_grad(), capture(model, [block]) as rec:
        target = model(x).argmax(1)
    keep = torch.ones(2, rec.outputs[block].shape[1], dtype=torch.float64)
    keep[1, ::3] = 0
    both = masked_attributions(model, x, target, ["ig", "saliency"], block, keep, 8, 10, loaded.spec.stem)
    for method in ("ig", "saliency"):
        plain, plain_delta = masked_attributions(model, x, target, [method], block, keep, 8, 10)[method]
        fast, fast_delta = masked_attributions(model, x, target, [method], block, keep, 8, 10, loaded.spec.stem)[method]
        assert (fast - plain).abs().max() <= 1e-10 * plain.abs().max(), (name, method)
        assert (both[method][0] - plain).abs().max() <= 1e-10 * plain.abs().max(), (name, method)   # one pass for both
        if plain_delta is not None:
            assert torch.allclose(fast_delta, plain_delta, atol=1e-10)
    assert not torch.allclose(plain[0], plain[1])                               # the mask mattered


@pytest.mark.parametrize("threads, chunk, passes", [(2, 2 * MIN_PASS_ROWS, 2), (3, 3 * MIN_PASS_ROWS, 3),
                                                    (2, 2 * MIN_PASS_ROWS - 1, 1)])
def test_parallel_passes_give_the_one_pass_answer(tiny, threads, chunk, passes):
    # On the CPU the rows go through one single-threaded pass per torch thread (each with at least
    # MIN_PASS_ROWS rows), each summing its chunks; in float64 only the summation order differs, so any
    # wrong share of rows (a chunk done twice or not at all, a run of images at the wrong step) would
    # show far above 1e-12.
    model = random_norms(copy.deepcopy(tiny.model)).double()
    x = torch.randn(5, 3, 56, 56, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    target = torch.arange(5) % 12
    keep = torch.ones(2, 32, dtype=torch.float64)
    keep[1, 1::3] = 0
    args = (model, x, target, ["ig"], "features.denseblock1", keep, 17, chunk, tiny.spec.stem)   # 85 rows
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = masked_attributions(*args)["ig"][0]
        torch.set_num_threads(threads)
        seen = []
        hook = model.features.denseblock2.register_forward_hook(lambda *a: seen.append(threading.get_ident()))
        try:
            many = masked_attributions(*args)["ig"][0]
        finally:
            hook.remove()
        assert torch.get_num_threads() == threads                               # put back after the passes
    finally:
        torch.set_num_threads(before)
    workers = set(seen) - {threading.get_ident()}                             # one pass runs in this thread
    assert len(workers) == (passes if passes > 1 else 0)
    assert (many - one).abs().max() <= 1e-12 * one.abs().max()


def test_side_by_side_carries_autocast_into_its_threads():
    def dtype(k):
        return (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert side_by_side(dtype, 2) == [torch.bfloat16] * 2
    assert side_by_side(dtype, 2) == [torch.float32] * 2


def test_a_stem_that_is_not_affine_is_refused(tiny):
    x = torch.zeros(1, 3, 56, 56)
    with pytest.raises(ValueError, match="is not affine layers"):
        entry(tiny.model, x, ("features.relu0",))
    with pytest.raises(ValueError, match="is not affine layers"):
        entry(tiny.model, x, ("features.conv0", "features.norm0", "features.pool0"))   # a pool needs the ReLU
    assert entry(tiny.model, x, ()).feed is None                               # no stem: rows are the input


def module_kinds(model):
    kinds = {}
    for m in model.modules():
        kinds[type(m).__name__] = kinds.get(type(m).__name__, 0) + 1
    return kinds


@pytest.mark.parametrize("name, size, positive, folds", [
    # tiny_densenet as trained (all its batch-norm scales are positive): 9 conv -> BN pairs (8 layers'
    # conv1 -> norm2, the stem's conv0 -> norm0), 11 BN -> ReLU -> conv triples (8 norm1, 3 transitions),
    # norm5 (followed by a functional ReLU and pooling) as a multiply-add.
    ("tiny_densenet", 56, None, {"Identity": 9, "_Shift": 11, "_Affine": 1}),
    ("resnet18", 64, True, {"Identity": 20}),                  # every BN follows its own conv
    ("densenet121", 64, True, {"Identity": 59, "_Shift": 61, "_Affine": 1}),
    ("densenet121", 64, False, {"Identity": 59, "_Affine": 62}),   # mixed-sign scales: no triple folds
    ("efficientnet_lite0", 64, True, {}),         # no BatchNorm2d: timm's BatchNormAct2d (a subclass) stays
])
def test_folded_norms_compute_the_same_and_are_put_back(tiny, name, size, positive, folds):
    # Outputs and input gradients equal in float64 (an error in a fold's algebra shows at ~1e-1).
    model = tiny.model if name == "tiny_densenet" else load_model(name, "random").model
    model = copy.deepcopy(model)
    if positive is not None:
        random_norms(model)
        for m in model.modules():
            if positive and isinstance(m, torch.nn.BatchNorm2d):
                m.weight.data.abs_()
    model = model.double()
    modules = dict(model.named_modules())
    x = torch.randn(2, 3, size, size, dtype=torch.float64, requires_grad=True)

    def run():
        y = model(x)
        return y, torch.autograd.grad(y[:, 0].sum(), x)[0]

    y, g = run()
    before = module_kinds(model)
    with pytest.raises(RuntimeError, match="inside"):
        with folded_norms(model):
            kinds = module_kinds(model)
            change = {k: kinds.get(k, 0) - before.get(k, 0) for k in {*kinds, *before}}
            expected = {**folds, "BatchNorm2d": -before.get("BatchNorm2d", 0)}      # every one replaced
            assert {k: v for k, v in change.items() if v} == {k: v for k, v in expected.items() if v}
            y2, g2 = run()
            assert (y2 - y).abs().max() < 1e-12 * y.abs().max()
            assert (g2 - g).abs().max() < 1e-12 * g.abs().max()
            raise RuntimeError("inside")
    assert dict(model.named_modules()) == modules
    assert all(torch.equal(a, b) for a, b in zip(run(), (y, g)))


@pytest.mark.parametrize("cut", ["features.denseblock1.denselayer1.conv1",     # a conv whose BN would move into it
                                 "features.transition1.norm",                   # a BN whose scale would move on
                                 "features.transition1.relu"])
def test_folds_do_not_reach_across_a_hooked_module(tiny, cut):
    x = torch.randn(2, 3, 56, 56)

    def output(*cuts):     # the hooks go on after the folds, as the engine's do
        with folded_norms(tiny.model, cuts) if cuts else nullcontext(), capture(tiny.model, [cut]) as rec, \
                torch.no_grad():
            tiny.model(x)
        return rec.outputs[cut]

    plain = output()                                                            # not folded
    scale = plain.abs().max()
    assert (output(cut) - plain).abs().max() < 1e-5 * scale                 # kept (up to rounding) when a cut
    assert (output("features.denseblock1") - plain).abs().max() > 0.1 * scale   # folded when not
    with capture(tiny.model, [cut]) as rec, folded_norms(tiny.model), torch.no_grad():   # hooked first: kept, fires
        tiny.model(x)
    assert (rec.outputs[cut] - plain).abs().max() < 1e-5 * scale


def test_fused_faithfulness_equals_one_map_at_a_time(tiny):
    x, _ = batch(tiny, 6)
    target = tiny.model(x).argmax(1)
    maps = torch.rand(3, *x.shape)                                             # (K, B, C, H, W)
    fused = faithfulness(tiny.model, x, maps, target, "patch", chunk=7)         # rows in uneven chunks
    assert fused.shape == (3, 6)
    for k in range(3):
        assert torch.allclose(fused[k], faithfulness(tiny.model, x, maps[k], target, "patch"), atol=1e-6)


def test_channels_last_gives_the_same_results(tiny):
    x, labels = batch(tiny, 4)
    cfg = EvalConfig(ig_steps=4)
    plain = evaluate_masks(tiny.model, x, labels, None, cfg, BLOCK, BLOCKED, keep_maps=True)
    model = copy.deepcopy(tiny.model).to(memory_format=torch.channels_last)
    fast = evaluate_masks(model, x, labels, None, cfg, BLOCK, BLOCKED, 7, keep_maps=True)
    for a, b in zip(plain, fast):
        assert torch.equal(a["target"], b["target"])
        for k, v in a.items():
            scale = v.abs().max() if v.is_floating_point() else 1
            assert torch.allclose(v.float(), b[k].float(), atol=1e-5 * scale), k


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="no bf16 on this CPU")
def test_bf16_attributions_rank_like_fp32(tiny):
    x, labels = batch(tiny, 6)
    fp32 = evaluate_masks(tiny.model, x, labels, None, EvalConfig(ig_steps=4), BLOCK, BLOCKED, keep_maps=True)
    bf16 = evaluate_masks(tiny.model, x, labels, fp32[0]["target"], EvalConfig(ig_steps=4, precision="bf16"),
                          BLOCK, BLOCKED, keep_maps=True)
    for a, b in zip(fp32, bf16):
        assert a["ig_attr"].dtype == b["ig_attr"].dtype == torch.float32       # maps and metrics stay fp32
        for m in ("ig", "saliency"):
            rho = [spearmanr(u, v)[0] for u, v in zip(importance(a[f"{m}_attr"]), importance(b[f"{m}_attr"]))]
            assert np.median(rho) > 0.95 and min(rho) > 0.9, (m, rho)
            assert (a[f"{m}_sparsity"] - b[f"{m}_sparsity"]).abs().mean() < 0.03
        assert not torch.equal(a["ig_attr"], b["ig_attr"])                     # autocast did run in bf16


def test_precision_is_recorded_only_when_not_fp32():
    assert "precision" not in EvalConfig().recorded()                          # fp32 runs match older manifests
    assert EvalConfig(precision="bf16").recorded()["precision"] == "bf16"
    old = {k: v for k, v in EvalConfig(methods=("ig",)).recorded().items()}
    assert EvalConfig.from_recorded(old) == EvalConfig(methods=("ig",))
    assert EvalConfig.from_recorded(EvalConfig(precision="bf16").recorded()).precision == "bf16"
    with pytest.raises(cli.UserError, match="unknown precision 'fp8'"):
        EvalConfig(precision="fp8")


class FakeOOM:
    """A work function that runs out of memory above ``limit`` images."""

    def __init__(self, limit, error):
        self.limit, self.error, self.sizes = limit, error, []

    def __call__(self, size):
        self.sizes.append(size)
        if size > self.limit:
            raise self.error
        return size


@pytest.mark.parametrize("error", [torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                   RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9")])
def test_auto_batch_halves_on_out_of_memory(error, capsys):
    auto = runtime.AutoBatch("auto", torch.device("cuda"))
    work = FakeOOM(40, error)
    assert auto(work) == 32 and work.sizes == [256, 128, 64, 32]
    assert auto.size == 32 and auto.scaled(256) == 32                         # IG rows shrink by the same factor
    assert auto(work) == 32 and work.sizes[-1] == 32                           # the smaller size is kept
    assert "retrying in batches of 32 images" in capsys.readouterr().err
    assert runtime.AutoBatch("auto", torch.device("cpu")).start == runtime.AUTO_START["cpu"]


def test_fixed_batch_and_other_errors_are_raised():
    with pytest.raises(RuntimeError, match="out of memory"):
        runtime.AutoBatch(64, torch.device("cpu"))(FakeOOM(8, RuntimeError("CUDA out of memory")))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        runtime.AutoBatch("auto", torch.device("cpu"))(FakeOOM(8, RuntimeError("shape mismatch")))
    with pytest.raises(RuntimeError, match="out of memory"):                   # nothing left to halve
        runtime.AutoBatch("auto", torch.device("cpu"))(FakeOOM(0, RuntimeError("out of memory")))


def test_baseline_with_auto_batch_backs_off_to_the_same_results(tmp_path, tiny, monkeypatch):
    argv = ["--images", "12", "--ig-steps", "4"]
    assert baseline_eval.main([*argv, "--batch-size", "12", "--output_dir", str(tmp_path / "fixed")]) == 0
    real, sizes = evaluation.evaluate_masks, []

    def small_memory(model, x, *args, **kwargs):
        sizes.append(len(x))
        if len(x) > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, x, *args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate_masks", small_memory)
    assert baseline_eval.main([*argv, "--batch-size", "auto", "--output_dir", str(tmp_path / "auto")]) == 0
    assert sizes == [12, 12, 8, 4, 4, 4]                                       # 32 -> 16 -> 8 -> 4 images per part
    fixed, auto = (pd.read_csv(tmp_path / d / "per_image.csv") for d in ("fixed", "auto"))
    assert fixed.columns.tolist() == auto.columns.tolist()
    assert np.allclose(fixed.to_numpy(float), auto.to_numpy(float), atol=1e-5)


def live_tensors_at_each_write(tiny, n, tmp_path, monkeypatch):
    """Run the shared pass on ``n`` images (4 per batch); count live tensors whenever a batch is written."""
    counts, real = [], artifacts.write_npz

    def counting(path, **arrays):
        if path.parent.name == "parts" and path.parent.parent.name == "baseline":
            gc.collect()
            counts.append(sum(1 for o in gc.get_objects() if type(o) in (torch.Tensor, torch.nn.Parameter)))
        return real(path, **arrays)

    monkeypatch.setattr(artifacts, "write_npz", counting)
    world = ConceptWorld("val")
    out = tmp_path / str(n)
    images = Images(world, even_subset(world.targets, n))
    evaluation.run(tiny.model, images.loader(tiny.spec.transform(square=True), 4), EvalConfig(ig_steps=2),
                   BLOCK, [(out / "baseline", BLOCKED[0]), (out / "filtered", BLOCKED[1])], torch.device("cpu"),
                   attribution_format="npz")
    assert len(list((out / "filtered" / "attributions" / "ig").glob("*.npz"))) == n // 4
    return counts


def test_memory_does_not_grow_with_the_images(tiny, tmp_path, monkeypatch):
    few = live_tensors_at_each_write(tiny, 8, tmp_path, monkeypatch)
    many = live_tensors_at_each_write(tiny, 24, tmp_path, monkeypatch)
    assert len(many) == 6 and max(many) <= max(few), (few, many)              # nothing accumulates per batch
