"""The gradient-blocking hook: bit-identical forward, exact gradients, never leaked."""
import pytest
import torch
from torch import nn

from disentangle.attribution.engine import masked_attributions
from disentangle.attribution.reference import attribute
from disentangle.attribution.evaluation import EvalConfig, run
from disentangle.core.hooks import block_hook, capture, channel_mask, hooks


class TwoLayer(nn.Module):
    """y_t = sum over pixels of (V relu-free mix of block channels): a linear model whose input
    gradient is known in closed form: dy_t/dx = sum_c V[t, c] * W[c]."""

    def __init__(self):
        super().__init__()
        self.block = nn.Conv2d(2, 4, 1, bias=True)
        self.head = nn.Conv2d(4, 3, 1, bias=False)
        with torch.no_grad():
            self.block.weight.copy_(torch.arange(8.0).view(4, 2, 1, 1) - 3)
            self.head.weight.copy_(torch.arange(12.0).view(3, 4, 1, 1) / 5 - 1)

    def forward(self, x):
        return self.head(self.block(x)).sum((2, 3))


def no_hooks_left(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks for m in model.modules())


def input_grad(model, x, target):
    x = x.clone().requires_grad_()
    model(x)[:, target].sum().backward()
    return x.grad


def test_detach_matches_the_model_without_those_paths():
    model, x = TwoLayer(), torch.randn(3, 2, 5, 5)
    blocked = [1, 3]
    with hooks(model, [("block", block_hook(channel_mask(blocked, 4), "detach"))]):
        got = input_grad(model, x, target=2)
    without = TwoLayer()
    with torch.no_grad():
        without.head.weight[:, blocked] = 0  # the same network with those paths cut
    assert torch.allclose(got, input_grad(without, x, target=2))
    w, v = model.block.weight[:, :, 0, 0], model.head.weight[2, :, 0, 0]
    keep = torch.tensor([1.0, 0, 1, 0])
    assert torch.allclose(got[0, :, 0, 0], (v * keep) @ w)  # closed form


def test_detach_forward_bit_identical_all_and_nothing(tiny_random):
    model = tiny_random.model
    x = torch.randn(4, 3, 56, 56)
    block = "features.denseblock2"
    with torch.no_grad():
        ref = model(x)
        with hooks(model, [(block, block_hook(channel_mask(range(0, 32, 2), 32), "detach"))]):
            assert torch.equal(model(x), ref)
    base = input_grad(model, x, 1)
    with hooks(model, [(block, block_hook(channel_mask([], 32), "detach"))]):
        assert torch.equal(input_grad(model, x, 1), base)
    with hooks(model, [(block, block_hook(channel_mask(range(32), 32), "detach"))]):
        assert torch.count_nonzero(input_grad(model, x, 1)) == 0  # the block is the only path
    assert no_hooks_left(model)


def test_zero_mode_ablates():
    model, x = TwoLayer(), torch.randn(2, 2, 3, 3)
    with hooks(model, [("block", block_hook(channel_mask([0, 2], 4), "zero"))]), capture(model, ["block"]) as rec:
        model(x)
    out = rec.outputs["block"]
    assert (out[:, [0, 2]] == 0).all() and (out[:, [1, 3]] != 0).any()


def test_shared_pass_equals_hooked_captum(tiny):
    """In float64: in fp32 the two engines round differently, and another CPU's float order can flip
    a ReLU near a tie on one path and not on the other (a change of up to 1e-3 of a map's mass)."""
    import copy

    from disentangle.data.concepts import ConceptWorld
    world = ConceptWorld("val", transform=tiny.spec.transform(square=True))
    model = copy.deepcopy(tiny.model).double()
    x = torch.stack([world[i][0] for i in range(0, 60, 10)]).double()
    t = model(x).argmax(1)
    blocked = torch.stack([channel_mask([], 32), channel_mask(range(5, 20), 32), channel_mask(range(32), 32)])
    keep = (~blocked).double()
    for block in ("features.denseblock1", "features.denseblock3"):
        for method in ("ig", "saliency"):
            fast, fast_delta = masked_attributions(model, x, t, [method], block, keep, 16, 50)[method]
            for j, mask in enumerate(blocked):
                with hooks(model, [(block, block_hook(mask, "detach"))]):
                    ref, ref_delta = attribute(model, x, t, method, 16, 50)
                assert torch.allclose(fast[j], ref, atol=1e-6 * max(ref.abs().max().item(), 1e-3))
                if ref_delta is not None:
                    assert torch.allclose(fast_delta[j], ref_delta, atol=1e-4)
    assert no_hooks_left(model)


def test_no_hook_leaks_on_errors(tiny_random, tmp_path):
    model = tiny_random.model
    with pytest.raises(ValueError, match="mask has 5 channels"):
        with hooks(model, [("features.denseblock1", block_hook(channel_mask([1], 5), "detach"))]):
            model(torch.zeros(1, 3, 56, 56))
    assert no_hooks_left(model)
    with pytest.raises(AttributeError):
        with hooks(model, [("features.denseblock1", lambda *a: None), ("features.nonexistent", lambda *a: None)]):
            pass
    assert no_hooks_left(model)
    # A method run that fails inside: the evaluation loop must leave no hooks behind either.
    boom = [("features.denseblock1", block_hook(channel_mask([0], 32), "detach")),
            ("features.denseblock2", lambda *a: (_ for _ in ()).throw(RuntimeError("module raised")))]
    x = torch.zeros(2, 3, 56, 56)
    with pytest.raises(RuntimeError, match="module raised"):
        run(model, [(x, torch.zeros(2, dtype=torch.long), torch.arange(2))], EvalConfig(ig_steps=2),
            "features.denseblock3", [(tmp_path, channel_mask([], 32))], torch.device("cpu"), fwd_hooks=boom)
    assert no_hooks_left(model)
    with pytest.raises(ValueError):
        channel_mask([40], 32)
