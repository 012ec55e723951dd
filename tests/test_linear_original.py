"""The original Linear-Explanations protocol: its concept filter, its candidate model (one elastic
net, checked against scikit-learn), its fit (Adam, checked against torch.optim.Adam) and its greedy
search's window and bad-concept rule, on data built so that only that rule gives the answer."""
import numpy as np
import pytest
import torch
from sklearn.linear_model import ElasticNet

from disentangle.neurons import linear as le


def test_active_concepts():
    x = torch.zeros(20, 4)
    x[:5, 0] = 0.9                      # top-5 mean 0.9: kept
    x[:5, 1] = 0.4                      # 0.4 < 0.5: dropped
    x[:, 2] = 0.7                       # constant: dropped
    x[:3, 3], x[3:6, 3] = 1.0, 0.2      # top-5 mean 0.68: kept
    assert le.active_concepts(x).tolist() == [True, False, False, True]


def test_candidate_model_is_the_elastic_net_sklearn_solves():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(300, 12, generator=g, dtype=torch.float64)
    y_all = torch.stack([x[:, 3] * 2 - x[:, 7], x[:, 0] + 0.1 * torch.randn(300, generator=g, dtype=torch.float64)], 1)
    train = torch.arange(200)
    w = le.glm_weights(x[train], y_all[train], y_all, lam=0.05, alpha=0.99)
    xs = ((x[train] - x[train].mean(0)) / x[train].std(0)).numpy()
    ys = ((y_all[train] - y_all.mean(0)) / y_all.std(0)).numpy()
    for u in range(2):
        ref = ElasticNet(alpha=0.05, l1_ratio=0.99, tol=1e-12, max_iter=100000).fit(xs, ys[:, u]).coef_
        np.testing.assert_allclose(w[u].numpy(), ref, atol=1e-6)
    ranking = le.glm_ranking(w)
    assert ranking[0, 0] == 3 and ranking[0, -1] == 7 and ranking[1, 0] == 0   # by signed weight


def test_fit_is_torch_adam_from_the_same_start():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(80, 5, generator=g, dtype=torch.float64)
    y = (x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=torch.float64))[:, None] + 0.3
    sets, units = torch.tensor([[0, 1, 4], [2, 3, 1]]), torch.tensor([0, 0])
    w, b = le.adam_fit(le.RawMoments.of(x, y), units, sets, torch.Generator().manual_seed(7))
    start = torch.Generator().manual_seed(7)
    w0 = (torch.rand(2, 3, generator=start, dtype=torch.float64) * 2 - 1) / 3 ** 0.5
    b0 = (torch.rand(2, generator=start, dtype=torch.float64) * 2 - 1) / 3 ** 0.5
    for j in range(2):
        lin = torch.nn.Linear(3, 1).double()
        with torch.no_grad():
            lin.weight.copy_(w0[j][None]), lin.bias.copy_(b0[j:j + 1])
        opt = torch.optim.Adam(lin.parameters(), lr=0.3, betas=(0.9, 0.999), eps=1e-8)
        for _ in range(100):
            loss = torch.nn.functional.mse_loss(lin(x[:, sets[j]]), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        np.testing.assert_allclose(w[j].numpy(), lin.weight[0].detach().numpy(), atol=1e-9)
        assert float(b[j]) == pytest.approx(float(lin.bias.detach()), abs=1e-9)


def planted(n=600, seed=0):
    """Twelve independent concepts; the neuron is 1.0 c10 + 0.8 c11, ranked last of twelve."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 12, generator=g, dtype=torch.float64)
    y = (x[:, 10] + 0.8 * x[:, 11] + 0.05 * torch.randn(n, generator=g, dtype=torch.float64))[:, None]
    return x, y


def single_corr(x_tr, y_tr, x_va, y_va, c):
    a = np.c_[x_tr[:, c].numpy(), np.ones(len(x_tr))]
    w = np.linalg.lstsq(a, y_tr[:, 0].numpy(), rcond=None)[0]
    return np.corrcoef(x_va[:, c].numpy() * w[0] + w[1], y_va[:, 0].numpy())[0, 1]


def test_window_and_bad_concepts_as_the_original():
    x, y = planted()
    tr, va = slice(0, 400), slice(400, 600)
    ranked = torch.arange(12)[None]              # the true concepts are ranks 11 and 12: out of the first window
    (e,) = le.windowed_search(x[tr], y[tr], x[va], y[va], ranked, fit="exact")
    # Round 1 sees ranks 1-10 only and must take one (the best of the weak); round 2 marks the other
    # weak ones bad and takes c10; round 3 has only c11 left and takes it.
    first = int(np.argmax([single_corr(x[tr], y[tr], x[va], y[va], c) for c in range(10)]))
    assert e.concepts == [first, 10, 11]
    assert e.val_corr > 0.95 and len(e.weights) == 3
    # Searching every concept at each step (ours) finds the two true ones alone.
    (ours,) = le.greedy_explanations(x[tr], y[tr], x[va], y[va], ranked, max_length=10, tolerance=0.02)
    assert sorted(ours.concepts) == [10, 11]
    # A tolerance no concept can meet: the first round's pick only.
    (short,) = le.windowed_search(x[tr], y[tr], x[va], y[va], ranked, tolerance=1.0, fit="exact")
    assert short.concepts == [first]
    # The original's Adam fit reaches the same explanation here.
    (adam,) = le.windowed_search(x[tr], y[tr], x[va], y[va], ranked, fit="adam")
    assert adam.concepts == [first, 10, 11] and adam.val_corr == pytest.approx(e.val_corr, abs=0.01)


def test_the_originals_models_and_layer_names():
    from disentangle.core.layers import resolve_layer
    from disentangle.core.models import load_model
    vgg = load_model("vgg16_bn_cifar100", "random")
    assert vgg.model(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
    assert resolve_layer(vgg.spec, "classifier[4]", vgg.model) == "classifier.4"
    assert isinstance(vgg.model.get_submodule(resolve_layer(vgg.spec, "features[43]", vgg.model)), torch.nn.MaxPool2d)
    vit = load_model("vit_b_16_imagenet", "random")
    assert resolve_layer(vit.spec, "encoder.layers.encoder_layer_11.mlp[1]", vit.model) == \
        "encoder.layers.encoder_layer_11.mlp.1"
    assert vit.spec.name == "vit_b_16_imagenet" and vit.spec.classifier == "heads.head"


def test_token_pooling_as_the_original():
    from disentangle.core.errors import UserError
    from disentangle.dissection.netdissect import pool_units
    tokens = torch.randn(2, 7, 5)
    assert torch.equal(pool_units(tokens, "first", "first"), tokens[:, 0])
    assert torch.allclose(pool_units(tokens, "avg", "avg"), tokens.mean(1))
    assert torch.equal(pool_units(tokens, "max", "max"), tokens.amax(1))
    with pytest.raises(UserError, match="first takes a token layer"):
        pool_units(torch.randn(2, 3, 4, 4), "first")


def test_a_2d_layer_is_explained(tmp_path, tiny):
    """tiny_densenet's logits (a 2-D layer): the red-circle and blue-circle logits are explained
    first by their own classes."""
    import pandas as pd

    import explain_neurons
    assert explain_neurons.main(["--target_layer", "classifier", "--end_neuron", "3", "--images", "240",
                                 "--activation_dir", "none", "--result_dir", str(tmp_path)]) == 0
    frame = pd.read_csv(tmp_path / "le_label_tiny_densenet_classifier.csv").set_index("unit")
    assert frame.loc[0, "concept0"] == "red circle" and frame.loc[2, "concept0"] == "blue circle"
    assert (frame["val correlation"] > 0.8).all()


def test_siglip_calibration_and_defaults(capsys, tmp_path):
    import explain_neurons
    from disentangle.core.errors import UserError
    from disentangle.neurons.activations import ConceptConfig, siglip_probabilities
    cos = torch.tensor([[0.09, 0.19], [-0.01, 0.0]])
    expected = 1 / (1 + torch.exp(-60 * (cos - 0.09)))            # the original's sigmoid(a * (cos + b))
    torch.testing.assert_close(siglip_probabilities(cos, 60.0, -0.09), expected)
    assert siglip_probabilities(cos, 60.0, -0.09)[0, 0] == 0.5
    assert ConceptConfig("siglip", clip_model="ViT-L-16-SigLIP-384").calibration() == (60.0, -0.09)
    assert ConceptConfig("siglip", clip_model="ViT-SO400M-14-SigLIP-384").calibration() == (58.0, -0.13)
    with pytest.raises(UserError, match="no calibration for ViT-B-32"):
        ConceptConfig("siglip", clip_model="ViT-B-32")
    # The original's defaults: its explainer, its webli weights, never downloaded.
    assert explain_neurons.main(["--mode", "siglip", "--images", "60", "--activation_dir", "none",
                                 "--result_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "ViT-L-16-SigLIP-384" in err and "webli" in err and len(err.strip().splitlines()) == 1


def test_siglip_probabilities_and_filter_on_a_siglip_model(tiny_siglip):
    """SigLIP's architecture (CustomTextCLIP with its own logit scale and bias): the concept
    probabilities are the original's calibration of the cosine similarities, not the model's logits,
    and the filter keeps a concept exactly when its top-5 mean reaches 0.5."""
    from disentangle.core.clip import load_clip
    from disentangle.neurons.activations import clip_probabilities
    clip = load_clip(tiny_siglip)
    assert type(clip.model).__name__ == "CustomTextCLIP" and float(clip.model.logit_bias) == -10.0
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 32, 32, generator=g)
    concepts = ["red", "stripes", "a dog"]
    got = clip_probabilities(clip, [(x[:4], None, None), (x[4:], None, None)], concepts, (60.0, -0.09))
    with torch.no_grad():
        img = clip.model.encode_image(x).double()
        txt = clip.model.encode_text(clip.tokenizer(concepts)).double()
    cos = torch.nn.functional.normalize(img, dim=-1) @ torch.nn.functional.normalize(txt, dim=-1).T
    np.testing.assert_allclose(got, (1 / (1 + torch.exp(-60 * (cos - 0.09)))).numpy(), atol=1e-5)
    # Hand-built similarities: 0.09 reaches the explainer's 0.5 exactly (kept), 0.085 does not.
    from disentangle.neurons.activations import siglip_probabilities
    sims = torch.full((40, 3), -0.2, dtype=torch.float64)
    sims[:5, 0], sims[:5, 1], sims[:4, 2], sims[4, 2] = 0.09, 0.085, 0.3, -0.2
    assert le.active_concepts(siglip_probabilities(sims, 60.0, -0.09)).tolist() == [True, False, True]


def test_siglip_mode_end_to_end_with_a_small_model(tmp_path, tiny, tiny_siglip, capsys):
    import pandas as pd

    import explain_neurons
    import simulate_correlation
    common = ["--mode", "siglip", "--clip_model", tiny_siglip, "--sigmoid_a", "10", "--sigmoid_b", "0",
              "--images", "120", "--activation_dir", "none"]
    assert explain_neurons.main([*common, "--end_neuron", "3", "--result_dir", str(tmp_path)]) == 0
    path = tmp_path / "le_siglip_tiny_densenet_block_4.csv"
    frame = pd.read_csv(path)
    assert len(frame) == 3 and frame["concept0"].map(lambda c: isinstance(c, str) and c != "0").all()
    capsys.readouterr()
    assert simulate_correlation.main([*common, str(path), "--output_dir", str(tmp_path / "sim")]) == 0
    assert "SigLIP sigmoid probabilities" in capsys.readouterr().out
    assert pd.read_csv(path)["sim correlation"].between(-1, 1).all()


def toy_model():
    """A 1x1 convolution, spatial mean, linear classifier: ResNet's layer4 -> avgpool -> fc in small."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 3))
    return model.eval().requires_grad_(False)


def test_ablation_levels_as_the_original():
    from disentangle.neurons import simulation
    model = toy_model()
    x, y = torch.randn(40, 3, 6, 6), torch.arange(40) % 3
    with torch.no_grad():
        real = model[0](x).mean((2, 3))                                 # (N, 4) pooled activations
    units = [1, 3]
    # A perfect explanation: the optim mode keeps c = 1, d = 0 and no loss changes.
    c, d = simulation.optim_levels(model, "0", x, y, units, real[:, units].T.double(), "avg", chunk=2)
    assert c.tolist() == [1.0, 1.0] and d.tolist() == [0.0, 0.0]
    deltas = simulation.ablation_deltas(model, "0", x, y, units, {"sim": real[:, units].T}, "avg", 2, 1.1)
    assert deltas["sim"].max() < 1e-5
    # A shifted and scaled one: the fitted c, d undo part of it, lowering the loss change.
    sim = (2 * real[:, units] + 1).T.double()
    c, d = simulation.optim_levels(model, "0", x, y, units, sim, "avg", chunk=2)
    before = simulation.ablation_deltas(model, "0", x, y, units, {"s": sim.float()}, "avg", 2, 1.1)["s"].sum(1)
    after = simulation.ablation_deltas(model, "0", x, y, units, {"s": (c[:, None] * sim + d[:, None]).float()},
                                       "avg", 2, 1.1)["s"].sum(1)
    assert (after < before).all() and (c < 1).all() and (d < 0).all()
    # norm: the z-scored simulation rescaled to the validation mean, std and correlation.
    val, test = real[:20, units].double(), real[20:, units].double()
    got = simulation.norm_levels(2 * val + 1, val, 2 * test + 1)
    z = (test - test.mean(0)) / test.std(0)
    torch.testing.assert_close(got, z * val.std(0) + val.mean(0))


def test_the_rest_of_the_network_after_a_layer(tiny):
    from disentangle.core.hooks import capture
    from disentangle.core.models import load_model
    from disentangle.neurons.simulation import head_after
    for model, path, size in ((tiny.model, "features.denseblock4", 56), (load_model("resnet18", "random").model,
                                                                          "layer4", 64)):
        head = head_after(model, path)
        x = torch.randn(3, 3, size, size)
        with torch.no_grad(), capture(model, [path]) as rec:
            full = model(x)
        torch.testing.assert_close(head(rec.outputs[path]), full)
    assert head_after(tiny.model, "features.denseblock4.denselayer1") is None     # later layers read earlier maps


def test_explanations_without_greedy_search(tmp_path, tiny):
    import pandas as pd

    import explain_neurons_no_gs
    assert explain_neurons_no_gs.main(["--images", "240", "--end_neuron", "4", "--description_length", "3",
                                       "--activation_dir", "none", "--result_dir", str(tmp_path)]) == 0
    frame = pd.read_csv(tmp_path / "le_label_tiny_densenet_block_4.csv")
    assert list(frame.columns) == ["layer", "unit", "val correlation", "weight0", "concept0", "weight1", "concept1",
                                   "weight2", "concept2", "bias"]
    assert frame[["concept0", "concept1", "concept2"]].map(lambda c: isinstance(c, str) and c != "0").all().all()
    import json
    manifest = json.loads((tmp_path / "le_label_tiny_densenet_block_4.manifest.json").read_text())
    assert manifest["config"]["search"] == "none" and manifest["config"]["max_length"] == 3


def test_the_originals_split_files(tmp_path, tiny, capsys):
    """Split files as the original ships them (1-D tensors of data-set indices) replace the seeded
    split; the explanations' manifest records them, and bad files are one line."""
    import json

    import explain_neurons
    from disentangle.data.images import dataset_images
    from disentangle.neurons.activations import read_split
    images = dataset_images("concepts", 120)
    ids = images.indices.tolist()
    folder = tmp_path / "splits"
    folder.mkdir()
    for name, part in (("train", ids[:84]), ("val", ids[84:96]), ("test", ids[96:])):
        torch.save(torch.tensor(part), folder / f"{name}_ids.pt")
    split = read_split(folder, images.indices)
    assert split["train"].tolist() == list(range(84)) and split["test"].tolist() == list(range(96, 120))
    out = tmp_path / "le"
    assert explain_neurons.main(["--images", "120", "--end_neuron", "2", "--split_dir", str(folder),
                                 "--activation_dir", "none", "--result_dir", str(out)]) == 0
    manifest = json.loads((out / "le_label_tiny_densenet_block_4.manifest.json").read_text())
    assert manifest["config"]["split"].startswith("files ")
    torch.save(torch.tensor([ids[0], 10**6]), folder / "test_ids.pt")
    assert explain_neurons.main(["--images", "120", "--split_dir", str(folder), "--activation_dir", "none",
                                 "--result_dir", str(tmp_path / "le2")]) == 2
    assert "names image 1000000, which is not among the 120 images" in capsys.readouterr().err


class PlantedTokens(torch.nn.Module):
    """``x (B, 3, 56, 56)`` -> ``(B, 17, 2)`` tokens, a class token then a 4 x 4 grid of patches.
    Unit 0 of the class token is the image's red fraction, unit 1 its blue fraction; the patch tokens
    carry them the other way round, five times larger, so that only the class token says red for unit 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = x * 0.25 + 0.5                                        # the spec's normalisation undone
        red = torch.relu(rgb[:, 0] - rgb[:, 1:].mean(1) - 0.3)
        blue = torch.relu(rgb[:, 2] - rgb[:, :2].mean(1) - 0.3)
        cls = torch.stack([red.mean((1, 2)), blue.mean((1, 2))], -1)[:, None]
        patches = 5 * torch.stack([torch.nn.functional.avg_pool2d(c[:, None], 14).flatten(1)
                                   for c in (blue, red)], -1)
        return torch.cat([cls, patches], 1)


class PlantedViT(torch.nn.Module):
    """A ViT's shape: token layer ``encoder``, then a linear head on the class token whose unit 0 is
    red fraction minus blue fraction (a 2-D layer)."""

    def __init__(self, num_classes: int = 12):
        super().__init__()
        self.encoder = PlantedTokens()
        self.heads = torch.nn.Sequential()
        self.heads.add_module("head", torch.nn.Linear(2, num_classes))
        with torch.no_grad():
            self.heads.head.weight.zero_(), self.heads.head.bias.zero_()
            self.heads.head.weight[0] = torch.tensor([1.0, -1.0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(self.encoder(x)[:, 0])


@pytest.fixture
def planted_vit(monkeypatch):
    from disentangle.core import models
    spec = models.ModelSpec("planted_vit", PlantedViT, {"tokens": "encoder"}, "encoder", num_classes=12,
                            input_size=56, resize_size=56, mean=(0.5,) * 3, std=(0.25,) * 3,
                            default_weights=models.MODELS["tiny_densenet"].default_weights, classifier="heads.head",
                            default_data="concepts")
    monkeypatch.setitem(models.MODELS, "planted_vit", spec)
    return spec


def test_planted_neurons_on_tokens_and_a_2d_layer(tmp_path, planted_vit):
    """Through explain_neurons.py: with --pool_mode first the class token's red unit is explained by
    red and its blue unit by blue; averaging the tokens (avg) swaps them, as the patches outweigh the
    class token; the head's unit 0 (red minus blue, a 2-D layer) weighs red over green over blue."""
    import pandas as pd

    import explain_neurons

    def explain(layer: str, pool: str, *flags: str) -> pd.DataFrame:
        out = tmp_path / f"{layer}_{pool}"
        assert explain_neurons.main(["--target_name", "planted_vit", "--weights", "random", "--target_layer", layer,
                                     "--pool_mode", pool, *flags, "--images", "360",
                                     "--activation_dir", "none", "--result_dir", str(out)]) == 0
        return pd.read_csv(out / f"le_label_planted_vit_{layer}.csv").set_index("unit")

    first = explain("encoder", "first")
    assert list(first.index) == [0, 1]             # every unit of the token layer: 2, not its 17 tokens
    assert first.loc[0, "concept0"] == "red" and first.loc[1, "concept0"] == "blue"
    assert (first["val correlation"] > 0.8).all()
    import simulate_correlation
    path = tmp_path / "encoder_first" / "le_label_planted_vit_encoder.csv"
    assert simulate_correlation.main([str(path), "--target_name", "planted_vit", "--weights", "random",
                                      "--target_layer", "encoder", "--pool_mode", "first", "--images", "360",
                                      "--activation_dir", "none", "--result_dir", str(tmp_path / "sim")]) == 0
    assert (pd.read_csv(path)["sim correlation"] > 0.8).all()
    avg = explain("encoder", "avg")
    assert avg.loc[0, "concept0"] == "blue" and avg.loc[1, "concept0"] == "red"
    head = explain("heads.head", "avg", "--end_neuron", "1").loc[0]
    weights = {head[f"concept{i}"]: head[f"weight{i}"] for i in range(10) if head[f"concept{i}"] != "0"}
    # Each image has one colour, so red - blue and, say, 0.13 red + 0.07 green - 0.06 are the same
    # function: only the differences between the colours' weights are determined.
    red, green, blue = (weights.get(c, 0.0) for c in ("red", "green", "blue"))
    assert red > green > blue and head["val correlation"] > 0.9


# Every command line of the original's commands.txt (its tables' runs), as written there.
COMMANDS = """\
explain_neurons --target_name resnet50_imagenet --target_layer layer4 --pool_mode avg
explain_neurons --target_name resnet18_places365 --target_layer layer4 --pool_mode avg --dataset_name places365_val
explain_neurons --target_name vgg16_bn_cifar100 --target_layer classifier[4] --dataset_name cifar100_val
explain_neurons --target_name vit_b_16_imagenet --target_layer encoder.layers.encoder_layer_11.mlp[1] --pool_mode first
explain_neurons --target_name vit_l_32_imagenet --target_layer encoder.layers.encoder_layer_23.mlp[1] --pool_mode first
explain_neurons --target_name resnet50_imagenet --target_layer layer4 --pool_mode avg --mode siglip
simulate_correlation --target_name resnet50_imagenet --target_layer layer4 --pool_mode avg
simulate_correlation --target_name resnet18_places365 --target_layer layer4 --pool_mode avg --dataset_name places365_val
simulate_correlation --target_name vgg16_bn_cifar100 --target_layer classifier[4] --dataset_name cifar100_val
simulate_correlation --target_name vit_b_16_imagenet --target_layer encoder.layers.encoder_layer_11.mlp[1] --pool_mode first
simulate_correlation --target_name vit_l_32_imagenet --target_layer encoder.layers.encoder_layer_23.mlp[1] --pool_mode first
simulate_correlation --target_name resnet50_imagenet --target_layer layer4 --explanation_method clip_dissect
simulate_ablation
simulate_ablation --mode norm --explanation_method le_siglip
simulate_correlation --target_name resnet50_imagenet --target_layer layer4 --pool_mode avg --clip_name ViT-L-14-336
explain_neurons --target_name resnet50_imagenet --target_layer layer4 --pool_mode avg --mode siglip --concept_set data/concept_sets/20k.txt
explain_neurons --target_name resnet50_imagenet --target_layer layer4 --pool_mode avg --mode siglip --clip_name ViT-L-14-336
explain_neurons_no_gs --target_name resnet50_imagenet --target_layer layer4 --pool_mode avg
explain_neurons --target_name vgg16_bn_cifar100 --target_layer features[43] --dataset_name cifar100_val
simulate_correlation --target_name vit_b_16_imagenet --target_layer encoder.layers.encoder_layer_11 --pool_mode first
simulate_correlation --target_name vit_b_16_imagenet --target_layer encoder.layers.encoder_layer_10.mlp[1] --pool_mode avg
"""


@pytest.mark.parametrize("line", COMMANDS.splitlines())
def test_the_originals_command_lines(line, tmp_path, monkeypatch, capsys):
    """On a machine without the weights, data or explanations, each line is understood (no unknown
    model, flag, choice or layer) and stops with one line naming what to provide."""
    import importlib
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    script, *argv = line.split()
    assert importlib.import_module(script).main([*argv, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "usage:" not in err and "unknown" not in err, err
    assert any(w in err for w in ("not found", "not in the local", "is not in", "are not in", "provide", "pass --", "no ")), err
