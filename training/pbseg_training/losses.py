"""Losses: Dice + cross-entropy per domain head, multi-scale supervised contrastive loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dice_ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits [B, C, H, W], labels [B, H, W] long → soft Dice over the foreground classes (batch
    Dice) + cross-entropy."""
    probabilities = logits.float().softmax(dim=1)
    one_hot = F.one_hot(labels, logits.shape[1]).permute(0, 3, 1, 2).float()
    dims = (0, 2, 3)
    intersection = (probabilities * one_hot).sum(dims)[1:]
    total = (probabilities + one_hot).sum(dims)[1:]
    dice = (2 * intersection + 1e-5) / (total + 1e-5)
    return (1 - dice.mean()) + F.cross_entropy(logits.float(), labels)


def supervised_contrastive_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """SupCon (Khosla et al. 2020). embeddings [B, D] L2-normalized, labels [B] (here: the domain).
    For each anchor, the log-probability of its positives (same label) against all other samples."""
    similarity = embeddings.float() @ embeddings.float().T / temperature
    self_mask = torch.eye(len(labels), dtype=torch.bool, device=embeddings.device)
    similarity = similarity.masked_fill(self_mask, float("-inf"))
    log_probability = similarity - torch.logsumexp(similarity, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    counts = positives.sum(dim=1)
    anchors = counts > 0
    if not anchors.any():
        return embeddings.sum() * 0.0
    mean_log_probability = log_probability.masked_fill(~positives, 0.0).sum(dim=1)[anchors] / counts[anchors]
    return -mean_log_probability.mean()


def multiscale_contrastive_loss(
    embeddings: dict[str, torch.Tensor], domains: torch.Tensor, temperature: float
) -> torch.Tensor:
    """SupCon with the domain as label, averaged over the projection scales."""
    losses = [supervised_contrastive_loss(value, domains, temperature) for value in embeddings.values()]
    return torch.stack(losses).mean()
