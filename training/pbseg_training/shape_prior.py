"""Multi-joint anatomical shape prior (anatomically constrained networks, Oktay et al. 2018).

A convolutional autoencoder learns the masks of ALL joints in the union bone space; frozen, its
encoder maps a predicted soft mask and the ground truth to latent codes whose distance is the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from PediatricBoneSegLib.catalog import NUM_UNION_CLASSES, get_joint


class ShapeAutoencoder(nn.Module):
    """Masks [B, NUM_UNION_CLASSES, size, size] (probabilities or one-hot) ↔ latent [B, latent]."""

    def __init__(self, size: int = 64, latent: int = 64, classes: int = NUM_UNION_CLASSES) -> None:
        super().__init__()
        self.size = size
        widths = (classes, 16, 32, 64, 64)
        self.encoder = nn.Sequential(
            *(layer for a, b in zip(widths, widths[1:]) for layer in (nn.Conv2d(a, b, 3, 2, 1), nn.LeakyReLU(0.1))),
            nn.Flatten(),
            nn.Linear(64 * (size // 16) ** 2, latent),
        )
        self.expand = nn.Linear(latent, 64 * (size // 16) ** 2)
        reversed_widths = widths[::-1]
        layers: list[nn.Module] = []
        for a, b in zip(reversed_widths, reversed_widths[1:]):
            layers += [nn.ConvTranspose2d(a, b, 4, 2, 1), nn.LeakyReLU(0.1)]
        self.decoder = nn.Sequential(*layers[:-1])  # logits out

    def encode(self, masks: torch.Tensor) -> torch.Tensor:
        return self.encoder(F.interpolate(masks, size=(self.size, self.size), mode="area"))

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        code = self.expand(self.encode(masks)).view(len(masks), 64, self.size // 16, self.size // 16)
        return self.decoder(code)


def union_probabilities(probabilities: torch.Tensor, joint: str) -> torch.Tensor:
    """[B, C_joint, H, W] → [B, NUM_UNION_CLASSES, H, W]: each bone's channel moved to its union slot."""
    lookup = torch.tensor(get_joint(joint).to_union(), device=probabilities.device)
    out = probabilities.new_zeros((probabilities.shape[0], NUM_UNION_CLASSES, *probabilities.shape[2:]))
    return out.index_copy(1, lookup, probabilities)


def union_one_hot(labels: torch.Tensor, joint: str | None) -> torch.Tensor:
    """Labels [B, H, W] of ``joint`` (None: already union labels) → one-hot [B, NUM_UNION_CLASSES, H, W]."""
    if joint is not None:
        labels = torch.tensor(get_joint(joint).to_union(), device=labels.device)[labels]
    return F.one_hot(labels.long(), NUM_UNION_CLASSES).permute(0, 3, 1, 2).float()


def pretrain_shape_prior(
    union_labels: torch.Tensor, steps: int, size: int, latent: int, generator: torch.Generator, batch: int = 32
) -> ShapeAutoencoder:
    """Train on union label slices [N, H, W] of all joints (reconstruction cross-entropy), then freeze."""
    model = ShapeAutoencoder(size, latent)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    # Downsampled in chunks: the one-hot of every slice at once needs N x classes x H x W floats
    # (12 GB for the 10 000 slices of 3D acquisitions); the result is the same.
    targets = torch.cat(
        [
            F.interpolate(union_one_hot(chunk, None), size=(size, size), mode="area").argmax(1)
            for chunk in union_labels.split(256)
        ]
    )
    for _ in range(steps):
        index = torch.randint(len(targets), (min(batch, len(targets)),), generator=generator)
        masks = F.one_hot(targets[index], NUM_UNION_CLASSES).permute(0, 3, 1, 2).float()
        loss = F.cross_entropy(model(masks), targets[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval().requires_grad_(False)
    return model


def shape_prior_loss(prior: ShapeAutoencoder, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared distance between the latent codes of predicted soft masks and of the truth (both
    [B, NUM_UNION_CLASSES, H, W]), relative to the truth codes' mean square so that the loss weight
    does not depend on the scale of a particular autoencoder's latent space; zero when equal."""
    target_code = prior.encode(target.float())
    distance = F.mse_loss(prior.encode(predicted.float()), target_code)
    return distance / target_code.pow(2).mean().clamp_min(1e-6)
