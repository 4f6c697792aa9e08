"""Batch augmentation of 2D slices on the fly (torch, deterministic from a generator).

Spatial: random affine (rotation, scale, translation) + a smooth elastic field, applied to images
(bilinear) and labels (nearest) with one sampling grid; left-right mirroring where the slice has a
left-right axis. Intensity: gamma, smooth multiplicative bias field, Gaussian noise; optionally,
label-to-image synthesis (random contrast per structure, SynthSeg style) for unseen protocols.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pbseg_training.synthesis import synthesize_image

from .config import TrainingConfig


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)


def spatial_grid(batch: int, size: int, config: TrainingConfig, generator: torch.Generator) -> torch.Tensor:
    """Sampling grid [B, size, size, 2] in normalized coordinates."""
    angle = _uniform((batch,), -1.0, 1.0, generator) * math.radians(config.rotation_degrees)
    scale = _uniform((batch,), *config.scale_range, generator)
    shift = _uniform((batch, 2), -0.08, 0.08, generator)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, [batch, 1, size, size], align_corners=False)
    if config.elastic_strength > 0:
        coarse = torch.randn((batch, 2, 5, 5), generator=generator) * config.elastic_strength
        field = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
        grid = grid + field.permute(0, 2, 3, 1)
    return grid


def augment_batch(
    images: torch.Tensor,
    labels: torch.Tensor,
    mirrorable: torch.Tensor,
    config: TrainingConfig,
    generator: torch.Generator,
    tissues: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """images [B, 1, S, S] float (z-scored), labels [B, S, S] long, mirrorable [B] bool;
    ``tissues`` [B, S, S]: the slices' tissue label maps, which synthesis then draws from."""
    batch, _, size, _ = images.shape
    if config.synthesis_probability > 0:
        images = _synthesize(images, labels, tissues, config.synthesis_probability, generator)
    mirror = mirrorable & (torch.rand(batch, generator=generator) < 0.5)
    images = torch.where(mirror[:, None, None, None], images.flip(-1), images)
    labels = torch.where(mirror[:, None, None], labels.flip(-1), labels)
    grid = spatial_grid(batch, size, config, generator)
    background = images.amin(dim=(1, 2, 3), keepdim=True)
    shifted = images - background  # sample with zero padding = the slice's background level
    images = F.grid_sample(shifted, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + background
    labels = F.grid_sample(labels[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    images = _intensity(images, generator)
    return images, labels[:, 0].long()


def _intensity(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    batch, _, size, _ = images.shape
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    unit = (images - low) / (high - low).clamp_min(1e-6)
    gamma = torch.exp(_uniform((batch, 1, 1, 1), -0.35, 0.35, generator))
    coarse = _uniform((batch, 1, 3, 3), -0.25, 0.25, generator)
    bias = torch.exp(F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False))
    unit = unit.pow(gamma) * bias
    unit = unit + torch.randn(unit.shape, generator=generator) * _uniform((batch, 1, 1, 1), 0.0, 0.05, generator)
    # back to the slice's own range: per-volume normalization is what inference produces
    return low + unit * (high - low)


def _synthesize(
    images: torch.Tensor,
    labels: torch.Tensor,
    tissues: torch.Tensor | None,
    probability: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Replace a random share of the slices by random-contrast images of their labels (and
    tissues), z-scored like the network's input."""
    chosen = torch.nonzero(torch.rand(len(images), generator=generator) < probability).flatten()
    if not len(chosen):
        return images
    chosen_tissues = None if tissues is None else tissues[chosen]
    synthetic = synthesize_image(labels[chosen], generator, spatial_dims=2, tissues=chosen_tissues)[:, None]
    mean = synthetic.mean(dim=(1, 2, 3), keepdim=True)
    std = synthetic.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    images = images.clone()
    images[chosen] = (synthetic - mean) / std
    return images
