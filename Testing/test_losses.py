"""Training losses: supervised contrastive term and multi-joint shape prior."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pbseg_training.losses import dice_ce_loss, multiscale_contrastive_loss, supervised_contrastive_loss
from pbseg_training.shape_prior import (
    ShapeAutoencoder,
    shape_prior_loss,
    union_one_hot,
    union_probabilities,
)
from PediatricBoneSegLib.catalog import get_joint, union_label
from PediatricBoneSegLib.network import MultiDomainUNet, NetworkConfig


def test_contrastive_loss_lower_for_domain_clusters_than_shuffled() -> None:
    generator = torch.Generator().manual_seed(0)
    domains = torch.arange(3).repeat_interleave(8)
    centres = F.normalize(torch.randn(3, 128, generator=generator), dim=1)
    clustered = F.normalize(centres[domains] + 0.1 * torch.randn(24, 128, generator=generator), dim=1)
    shuffled = clustered[torch.randperm(24, generator=generator)]
    assert (
        supervised_contrastive_loss(clustered, domains, 0.1) < supervised_contrastive_loss(shuffled, domains, 0.1) - 1.0
    )


def test_contrastive_gradient_reaches_the_shared_encoder() -> None:
    torch.manual_seed(0)
    network = MultiDomainUNet(
        NetworkConfig(encoder="resnet18", classes_per_domain=(3, 4), decoder_channels=(32, 16, 16, 8, 8))
    )
    output = network(torch.randn(4, 1, 64, 64), [0, 0, 1, 1], with_embeddings=True)
    loss = multiscale_contrastive_loss(output.embeddings, torch.tensor([0, 0, 1, 1]), 0.1)
    loss.backward()
    for name in ("encoder.conv1.weight", "encoder.layer3.0.conv1.weight", "encoder.layer4.1.conv2.weight"):
        gradient = network.get_parameter(name).grad
        assert gradient is not None and gradient.abs().sum() > 0, name
    # the domain-specific heads play no part in the contrastive term
    assert network.heads[0].weight.grad is None


def test_shape_prior_loss_zero_iff_prediction_equals_truth() -> None:
    torch.manual_seed(0)
    prior = ShapeAutoencoder(size=32, latent=16).eval().requires_grad_(False)
    labels = torch.zeros(2, 40, 40, dtype=torch.long)
    labels[:, 10:25, 8:30] = get_joint("knee").label_of("femur")
    labels[:, 26:38, 10:28] = get_joint("knee").label_of("tibia")
    truth = union_one_hot(labels, "knee")
    assert shape_prior_loss(prior, truth, truth) == 0
    wrong = labels.clone()
    wrong[:, 26:38, 10:28] = 0
    assert shape_prior_loss(prior, union_one_hot(wrong, "knee"), truth) > 0


def test_union_mapping_puts_each_bone_in_its_union_channel() -> None:
    joint = get_joint("ankle")
    probabilities = torch.zeros(1, joint.num_classes, 4, 4)
    probabilities[0, joint.label_of("talus")] = 1.0
    union = union_probabilities(probabilities, "ankle")
    assert union.shape[1] == 9
    assert union[0, union_label("talus")].sum() == 16 and union.sum() == 16


def test_dice_ce_is_small_for_a_confident_correct_prediction() -> None:
    labels = torch.randint(0, 3, (2, 16, 16))
    perfect = F.one_hot(labels, 3).permute(0, 3, 1, 2).float() * 20
    assert dice_ce_loss(perfect, labels) < 0.01
    assert dice_ce_loss(-perfect, labels) > 1.0
