"""Load natural-image (ImageNet) classification weights into the encoder.

The file is one the user supplies (nothing is downloaded): a torchvision ResNet or MobileNetV2
state dict (MobileNetV2's flat reference layout is renamed to torchvision's), as ``.safetensors``
or as a ``.pth``/``.pt`` read with ``torch.load(weights_only=True)`` (PyTorch's restricted loader,
which only rebuilds tensors). Convolution names map one to one; a torchvision BatchNorm initializes
every domain's copy; the RGB first convolution is summed over its colour channels to take one MR
channel. Classifier weights are not part of an encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .mobilenet import torchvision_key

_CLASSIFIER_PREFIXES = ("fc.", "classifier.")
_NORM_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@dataclass
class ImageNetLoadReport:
    """``unmatched``: keys of the file that mapped to nothing; ``missing``: encoder tensors the
    file did not provide; ``ignored``: classifier keys, which an encoder does not have."""

    mapped: int
    unmatched: list[str]
    missing: list[str]
    ignored: list[str]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ImageNet weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path}: not a plain tensor state dict ({error})") from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a dict of tensors (a torchvision state dict)")
    return state


def load_imagenet_encoder(encoder: nn.Module, path: str | Path) -> ImageNetLoadReport:
    """Copy the weights of ``path`` into ``encoder`` in place; a shape mismatch raises."""
    source = read_state_dict(path)
    target = encoder.state_dict()
    filled: set[str] = set()
    unmatched, ignored = [], []
    for key, tensor in source.items():
        if key.startswith(_CLASSIFIER_PREFIXES):
            ignored.append(key)
            continue
        destinations = _destinations(torchvision_key(key), target)
        if not destinations:
            unmatched.append(key)
            continue
        for destination in destinations:
            value = _adapt(key, tensor, target[destination], path)
            target[destination] = value
            filled.add(destination)
    encoder.load_state_dict(target)
    missing = [key for key in target if key not in filled and not key.endswith("num_batches_tracked")]
    return ImageNetLoadReport(len(filled), unmatched, missing, ignored)


def _destinations(key: str, target: dict[str, torch.Tensor]) -> list[str]:
    if key in target:
        return [key]
    prefix, _, suffix = key.rpartition(".")
    if suffix not in _NORM_SUFFIXES:
        return []
    per_domain = [k for k in target if k.startswith(prefix + ".norms.") and k.endswith("." + suffix)]
    return [k for k in per_domain if k[len(prefix) + len(".norms.") :].split(".")[0].isdigit()]


def _adapt(key: str, tensor: torch.Tensor, like: torch.Tensor, path: str | Path) -> torch.Tensor:
    if tensor.shape == like.shape:
        return tensor.to(like.dtype)
    first_conv = tensor.dim() == 4 and tensor.shape[1] == 3 and like.shape[1] != 3
    if first_conv and tensor.shape[0] == like.shape[0] and tensor.shape[2:] == like.shape[2:]:
        # Summing the RGB filters keeps the response to a grey image unchanged.
        summed = tensor.sum(dim=1, keepdim=True)
        return summed.repeat(1, like.shape[1], 1, 1).div(like.shape[1]).to(like.dtype)
    raise ValueError(f"{path}: tensor {key!r} has shape {tuple(tensor.shape)}, the encoder expects {tuple(like.shape)}")
