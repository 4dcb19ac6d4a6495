"""Convert torchvision ImageNet state dicts (VGG16, VGG16-BN, ResNet) to our backbone names.

The papers start from ImageNet classifiers; this maps a local torchvision ``.pth`` onto
``build_vgg16_backbone`` / ``build_dilated_resnet_backbone`` so ``MODEL.WEIGHTS`` can load it:

- VGG16: ``features.<i>`` convs -> ``conv{s}_{k}``; the classifier's first two fully connected
  layers become the 7x7 ``fc6`` and 1x1 ``fc7`` convolutions (FCN Sec. 3.1 "convolutionalization":
  the same weights reshaped). Our convs followed by a norm have no bias (as in Detectron2), so
  a bias goes into the BN running mean (BN(x + b) with mean m is BN(x) with mean m - b); see
  ``convert_vgg16`` for a target with / without BN. The 1000-class ``classifier.6`` is dropped.
- ResNet: torchvision's ``conv1/bn1/layer{1..4}.{j}.{conv,bn}{1,2,3}/downsample`` -> Detectron2's
  ``stem.conv1``, ``res{2..5}.{j}.conv{1,2,3}(.norm)``, ``shortcut(.norm)``; ``fc`` is dropped.
  Use ``MODEL.RESNETS.STRIDE_IN_1X1 False`` (torchvision strides in the 3x3 conv).

Every dropped key is returned so callers can report it; nothing is dropped silently.
"""

from __future__ import annotations

import re

import torch

from ..utils.io import atomic_path, refuse_existing
from .backbone.vgg import VGG16_DEPTHS

StateDict = dict[str, torch.Tensor]


def _vgg_conv_indices(with_bn: bool) -> list[tuple[str, int]]:
    """(our name, torchvision features index) of the 13 convs."""
    per_conv = 3 if with_bn else 2  # conv, (bn,) relu
    out, index = [], 0
    for stage, depth in enumerate(VGG16_DEPTHS, start=1):
        for k in range(1, depth + 1):
            out.append((f"conv{stage}_{k}", index))
            index += per_conv
        index += 1  # max pool
    return out


_BN_EPS = 1e-5  # torchvision's and Detectron2's BatchNorm2d default


def _vgg_layers(src: StateDict, with_bn: bool) -> list[tuple[str, torch.Tensor, torch.Tensor, list | None]]:
    """(our name, weight, bias, BN [weight, bias, mean, var] or None) for the 15 layers; pops src."""
    layers = []
    for name, index in _vgg_conv_indices(with_bn):
        weight, bias = src.pop(f"features.{index}.weight"), src.pop(f"features.{index}.bias")
        bn = None
        if with_bn:
            prefix = f"features.{index + 1}"
            bn = [src.pop(f"{prefix}.{k}") for k in ("weight", "bias", "running_mean", "running_var")]
            src.pop(f"{prefix}.num_batches_tracked", None)
        layers.append((name, weight, bias, bn))
    fc6 = src.pop("classifier.0.weight")
    channels = fc6.shape[1] // 49  # the classifier flattens pool5's (C, 7, 7)
    layers.append(("fc6", fc6.reshape(fc6.shape[0], channels, 7, 7), src.pop("classifier.0.bias"), None))
    fc7 = src.pop("classifier.3.weight")
    layers.append(("fc7", fc7.reshape(*fc7.shape, 1, 1), src.pop("classifier.3.bias"), None))
    return layers


def convert_vgg16(state: StateDict, target_norm: bool | None = None) -> tuple[StateDict, list[str]]:
    """torchvision ``vgg16`` / ``vgg16_bn`` -> ``VGG16`` backbone keys (no prefix).

    ``target_norm``: whether the target backbone has a norm after every conv and fc
    (``MODEL.VGG.NORM`` BN, as DeconvNet) or none (FCN, dilated); default: as the source.
    Either way the converted layers compute what the source computes in eval mode: BN biases
    are folded into the running mean, layers without BN get an identity BN (mean = -bias,
    var = 1 - eps), and a source BN is folded into the conv when the target has none.
    """
    with_bn = "features.1.running_mean" in state
    target_norm = with_bn if target_norm is None else target_norm
    src = dict(state)
    out: StateDict = {}
    for name, weight, bias, bn in _vgg_layers(src, with_bn):
        if target_norm:
            if bn is None:  # an identity BN that adds the bias
                ones = torch.ones_like(bias)
                bn = [ones, torch.zeros_like(bias), torch.zeros_like(bias), ones * (1 - _BN_EPS)]
            gamma, beta, mean, var = bn
            out[f"{name}.weight"] = weight
            out[f"{name}.norm.weight"] = gamma
            out[f"{name}.norm.bias"] = beta
            out[f"{name}.norm.running_mean"] = mean - bias
            out[f"{name}.norm.running_var"] = var
            out[f"{name}.norm.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
        elif bn is not None:  # fold the BN into the conv
            gamma, beta, mean, var = bn
            scale = gamma / torch.sqrt(var + _BN_EPS)
            out[f"{name}.weight"] = weight * scale[:, None, None, None]
            out[f"{name}.bias"] = beta + (bias - mean) * scale
        else:
            out[f"{name}.weight"] = weight
            out[f"{name}.bias"] = bias
    return out, sorted(src)


_RESNET_BLOCK = re.compile(r"^layer(\d)\.(\d+)\.(.+)$")


def convert_resnet(state: StateDict) -> tuple[StateDict, list[str]]:
    """torchvision ``resnet18..152`` -> Detectron2 ``ResNet`` keys (no prefix)."""
    out: StateDict = {}
    dropped = []
    for key, value in state.items():
        if key.startswith("fc."):
            dropped.append(key)
            continue
        new = key
        if key.startswith(("conv1.", "bn1.")):
            new = "stem." + key
        else:
            match = _RESNET_BLOCK.match(key)
            if match is None:
                dropped.append(key)
                continue
            layer, block, rest = match.groups()
            new = f"res{int(layer) + 1}.{block}.{rest}"
            new = new.replace(".downsample.0.", ".shortcut.").replace(".downsample.1.", ".shortcut.norm.")
        # bn{k} follows conv{k}: Detectron2 keeps it inside the conv as ``.norm``.
        new = re.sub(r"(^|\.)bn(\d)\.", r"\1conv\2.norm.", new)
        out[new] = value
    return out, sorted(dropped)


def convert_torchvision_state_dict(
    state: StateDict, prefix: str = "backbone.", vgg_norm: bool | None = None
) -> tuple[StateDict, list[str], str]:
    """Detect VGG16(-BN) or ResNet, convert, prefix (``backbone.`` for a whole model's checkpoint).

    ``vgg_norm``: ``convert_vgg16``'s ``target_norm``. Returns (converted state, dropped source
    keys, detected architecture).
    """
    if "features.0.weight" in state and "classifier.0.weight" in state:
        arch = "vgg16_bn" if "features.1.running_mean" in state else "vgg16"
        try:
            converted, dropped = convert_vgg16(state, vgg_norm)
        except KeyError as e:
            raise ValueError(f"not a complete torchvision {arch} state dict: no {e.args[0]!r}") from None
    elif "conv1.weight" in state and "layer1.0.conv1.weight" in state:
        converted, dropped = convert_resnet(state)
        arch = "resnet"
    else:
        sample = sorted(state)[:5]
        raise ValueError(f"not a torchvision VGG16 or ResNet state dict (first keys: {sample})")
    return {prefix + k: v for k, v in converted.items()}, dropped, arch


def load_state_dict_file(path: str) -> StateDict:
    """A torchvision ``.pth``: a bare state dict, or one under "state_dict" / "model"."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"{path}: expected a state dict of tensors (torchvision's .pth format)")
    return data


def save_detectron2_checkpoint(
    state: StateDict, path: str, author: str = "torchvision", overwrite: bool = False
) -> None:
    """Write a checkpoint that ``DetectionCheckpointer`` (``MODEL.WEIGHTS``) loads by exact names.

    ``"backbone_only": True`` marks it as an intended partial start: the heads have no
    counterpart in the source (an ImageNet classifier, a semantic model) and keep their own
    initialisation. An existing ``path`` is an error unless ``overwrite``; the file is written
    under a temporary name and renamed, so it is never seen half-written.
    """
    refuse_existing(path, overwrite, "pass --overwrite (overwrite=True) to replace it")
    checkpoint = {"model": state, "__author__": author, "matching_heuristics": False}
    with atomic_path(path) as tmp:
        torch.save({**checkpoint, "backbone_only": True}, tmp)
