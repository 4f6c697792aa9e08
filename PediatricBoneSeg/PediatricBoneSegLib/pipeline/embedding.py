"""Volume-level embeddings for joint auto-detection and out-of-distribution warnings.

Training fits the detection data (a joint classifier and the training cases' reference
statistics, or, in older model files, each domain's centroid) with these functions, inference
compares a new volume with them: one definition serves both.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..network import MultiDomainUNet
from ..network.config import FeatureScale

MAX_DETECTION_SLICES = 12
CENTRAL_FRACTION = 0.6  # the outer slices of a joint MR show little anatomy


def detection_slice_indices(num_slices: int) -> np.ndarray:
    """Evenly spaced slice indices within the central part of the volume."""
    margin = (1 - CENTRAL_FRACTION) / 2 * num_slices
    count = min(MAX_DETECTION_SLICES, num_slices)
    return np.unique(np.linspace(margin, num_slices - 1 - margin, count).round().astype(int).clip(0, num_slices - 1))


FEATURES_PREFIX = "features:"
STATISTICS_PREFIX = "statistics:"


@torch.inference_mode()
def volume_embedding(network: MultiDomainUNet, images: torch.Tensor, domain: int, scale: str) -> torch.Tensor:
    """images: network-ready slices [N, 1, S, S] of one volume (the detection slices). Returns the
    L2-normalized mean embedding [dim] under ``domain``'s BN: of projection head ``scale`` (e.g.
    "enc5"), or, for ``"features:enc<k>"``, of the globally pooled encoder features of level k.

    The contrastive loss makes the projection heads map whatever passes through a domain's BN close
    to that domain's centroid, noise included; the encoder features keep the distance that
    out-of-distribution warnings need."""
    if scale.startswith(FEATURES_PREFIX):
        encoder_scale = FeatureScale.parse(scale[len(FEATURES_PREFIX) :])
        if encoder_scale.kind != "enc":
            raise ValueError(f"embedding scale {scale!r}: only encoder features are pooled (features:enc1..enc5)")
        pooled = encoder_scale.pick(network.encode(images, domain), []).float().mean(dim=(2, 3))
        return F.normalize(pooled.mean(dim=0), dim=0)
    projected = FeatureScale.parse(scale)
    features = network.encode(images, domain)
    stages = network.decoder(features) if projected.kind == "dec" else []
    embeddings = network.projections[str(projected)](projected.pick(features, stages))
    return F.normalize(embeddings.float().mean(dim=0), dim=0)


def parse_statistics_scale(scale: str) -> list[FeatureScale]:
    """``"statistics:enc3+enc4"`` -> the encoder levels whose statistics make the detection features."""
    if not scale.startswith(STATISTICS_PREFIX):
        raise ValueError(f"detection scale {scale!r} does not start with {STATISTICS_PREFIX!r}")
    levels = [FeatureScale.parse(part) for part in scale[len(STATISTICS_PREFIX) :].split("+")]
    if any(level.kind != "enc" for level in levels):
        raise ValueError(f"detection scale {scale!r}: only encoder levels (enc1..enc5) have statistics")
    return levels


@torch.inference_mode()
def encoder_statistics(network: MultiDomainUNet, images: torch.Tensor, domain: int, scale: str) -> torch.Tensor:
    """images: network-ready slices [N, 1, S, S] of one volume (the detection slices). Returns [F]:
    for each encoder level of ``scale`` (``"statistics:enc3+enc4"``), under ``domain``'s BN, the
    per-channel mean and standard deviation over the slice plane, averaged over the slices.

    The mean says what a level sees, the spread how textured it is; middle levels keep both the
    anatomy (which joint) and the image statistics (noise, a CT, a head) that a volume-level mean of
    the deepest level averages away."""
    features = network.encode(images, domain)
    parts = []
    for level in parse_statistics_scale(scale):
        feature = level.pick(features, []).float()
        parts += [feature.mean(dim=(2, 3)).mean(dim=0), feature.std(dim=(2, 3)).mean(dim=0)]
    return torch.cat(parts)
