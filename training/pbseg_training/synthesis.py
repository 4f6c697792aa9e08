"""SynthSeg-style label-to-image synthesis: an MR-like image of random contrast from any label map.

Per sample: every class (label, optionally subdivided by unlabeled tissue classes or by random
background blobs) gets a random mean intensity and texture; then Gaussian blur, a smooth bias
field, a random lower resolution along one axis (thick slices: blur, downsample, upsample), Rician
noise and a random gamma. A network trained on such images cannot rely on one contrast, which is
what makes it usable on unseen protocols; it works on phantoms and on users' real label maps.

Works on numpy arrays and torch tensors of integer labels, 2D or 3D, with optional leading batch
dimensions (each sample draws its own parameters), deterministic from a seed or generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SynthesisConfig:
    """Ranges the random parameters are drawn from (uniformly). Intensities are relative (the
    output is rescaled to [0, 1]); ``blur_sigma`` and ``resolution`` are in pixels."""

    texture_std: tuple[float, float] = (0.0, 0.06)  # within-class standard deviation
    blur_sigma: tuple[float, float] = (0.0, 1.0)
    bias_amplitude: tuple[float, float] = (0.0, 0.4)  # log-field amplitude
    resolution: tuple[float, float] = (1.0, 4.0)  # down-sampling factor along one random axis
    noise_std: tuple[float, float] = (0.0, 0.05)
    gamma_log_std: float = 0.25
    background_classes: tuple[int, int] = (1, 4)  # random blobs splitting the unlabeled background

    def __post_init__(self) -> None:
        for name in ("texture_std", "blur_sigma", "bias_amplitude", "resolution", "noise_std", "background_classes"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"SynthesisConfig.{name} must be an increasing non-negative range, got {(low, high)}")
        if self.resolution[0] < 1.0:
            raise ValueError("SynthesisConfig.resolution factors must be >= 1 (1 = full resolution)")
        if self.background_classes[0] < 1:
            raise ValueError("SynthesisConfig.background_classes must be at least 1")


def _generator(seed: int | np.random.Generator | torch.Generator) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, np.random.Generator):
        seed = int(seed.integers(2**63))
    return torch.Generator().manual_seed(int(seed))


def _uniform(low: float, high: float, g: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def _blur_axis(x: torch.Tensor, axis: int, sigma: float) -> torch.Tensor:
    """1D Gaussian blur of ``x`` (spatial dims only) along ``axis``, reflect-padded."""
    if sigma < 0.3 or x.shape[axis] < 2:
        return x
    radius = min(math.ceil(3 * sigma), x.shape[axis] - 1)
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    moved = x.movedim(axis, -1)
    flat = moved.reshape(-1, 1, moved.shape[-1])
    out = F.conv1d(F.pad(flat, (radius, radius), mode="reflect"), (kernel / kernel.sum()).view(1, 1, -1))
    return out.reshape(moved.shape).movedim(-1, axis)


def _smooth_field(shape: tuple[int, ...], g: torch.Generator, cells: int = 4) -> torch.Tensor:
    """Random field in about [-1, 1], smooth over ~1/``cells`` of the field of view."""
    coarse = torch.randn((1, 1, *[cells] * len(shape)), generator=g)
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    return F.interpolate(coarse, size=shape, mode=mode, align_corners=True)[0, 0].clamp(-2.5, 2.5) / 2.5


def _class_map(labels: torch.Tensor, tissues: torch.Tensor | None, config: SynthesisConfig, g: torch.Generator):
    """Combine labels with the unlabeled tissue classes, or without them with random background
    blobs, into one class map."""
    classes = labels.long()
    if tissues is not None:
        return classes * (int(tissues.max()) + 1) + tissues.long()
    blobs = int(torch.randint(config.background_classes[0], config.background_classes[1] + 1, (), generator=g))
    if blobs > 1:
        fields = torch.stack([_smooth_field(tuple(labels.shape), g, cells=6) for _ in range(blobs)])
        background = int(classes.max()) + 1 + fields.argmax(dim=0)
        classes = torch.where(labels == 0, background, classes)
    return classes


def _synthesize_one(
    labels: torch.Tensor, tissues: torch.Tensor | None, config: SynthesisConfig, g: torch.Generator
) -> torch.Tensor:
    classes = _class_map(labels, tissues, config, g)
    count = int(classes.max()) + 1
    means = torch.rand(count, generator=g)
    stds = torch.rand(count, generator=g) * _uniform(*config.texture_std, g)
    image = means[classes] + stds[classes] * torch.randn(labels.shape, generator=g)
    sigma = _uniform(*config.blur_sigma, g)
    for axis in range(labels.ndim):
        image = _blur_axis(image, axis, sigma)
    image = image * torch.exp(_uniform(*config.bias_amplitude, g) * _smooth_field(tuple(labels.shape), g))
    factor = _uniform(*config.resolution, g)
    axis = int(torch.randint(0, labels.ndim, (), generator=g))
    if factor > 1.05:
        image = _blur_axis(image, axis, factor / 2.355)  # slice profile: FWHM of one thick slice
        size = list(labels.shape)
        size[axis] = max(1, round(size[axis] / factor))
        mode = "bilinear" if labels.ndim == 2 else "trilinear"
        low = F.interpolate(image[None, None], size=size, mode=mode, align_corners=True)
        image = F.interpolate(low, size=tuple(labels.shape), mode=mode, align_corners=True)[0, 0]
    noise = _uniform(*config.noise_std, g)
    if noise > 0:
        real = image + noise * torch.randn(labels.shape, generator=g)
        image = torch.sqrt(real**2 + (noise * torch.randn(labels.shape, generator=g)) ** 2)
    image = image - image.min()
    image = image / image.max().clamp_min(1e-6)
    return image ** math.exp(config.gamma_log_std * float(torch.randn((), generator=g)))


def synthesize_image(
    labels: np.ndarray | torch.Tensor,
    seed: int | np.random.Generator | torch.Generator,
    config: SynthesisConfig | None = None,
    spatial_dims: int | None = None,
    tissues: np.ndarray | torch.Tensor | None = None,
) -> np.ndarray | torch.Tensor:
    """A random-contrast image for each label map in ``labels``.

    ``labels``: non-negative integers, shape ``(*batch, *spatial)`` with ``spatial_dims`` (2 or 3;
    default: all dimensions) trailing spatial dimensions. ``tissues``: optional non-negative integer
    map of the same shape splitting structures into extra (unlabeled) classes, e.g. fat and muscle
    of the background. Returns float32 in [0, 1] of the same shape and kind (numpy or torch)."""
    config = config or SynthesisConfig()
    is_numpy = isinstance(labels, np.ndarray)
    tensor = torch.from_numpy(np.ascontiguousarray(labels)) if is_numpy else labels.detach().cpu()
    spatial_dims = tensor.ndim if spatial_dims is None else spatial_dims
    if spatial_dims not in (2, 3) or tensor.ndim < spatial_dims:
        raise ValueError(f"labels of shape {tuple(tensor.shape)}: need 2 or 3 spatial dimensions, got {spatial_dims}")
    if tensor.is_floating_point() or tensor.dtype == torch.bool or (tensor.numel() and int(tensor.min()) < 0):
        raise ValueError("labels must be a map of non-negative integers")
    tissue_tensor = None
    if tissues is not None:
        tissue_tensor = torch.as_tensor(np.ascontiguousarray(tissues) if isinstance(tissues, np.ndarray) else tissues)
        if tissue_tensor.shape != tensor.shape or tissue_tensor.is_floating_point() or int(tissue_tensor.min()) < 0:
            raise ValueError("tissues must be non-negative integers of the labels' shape")
    g = _generator(seed)
    spatial = tuple(tensor.shape[tensor.ndim - spatial_dims :])
    flat = tensor.reshape(-1, *spatial)
    flat_tissues = None if tissue_tensor is None else tissue_tensor.reshape(-1, *spatial)
    images = [
        _synthesize_one(flat[i], None if flat_tissues is None else flat_tissues[i], config, g)
        for i in range(flat.shape[0])
    ]
    out = torch.stack(images).reshape(tensor.shape).to(torch.float32)
    if is_numpy:
        return out.numpy()
    return out.to(labels.device)
