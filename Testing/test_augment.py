"""Training augmentation keeps images and labels aligned and only mirrors where anatomy allows."""

from __future__ import annotations

import torch

from pbseg_training.augment import augment_batch
from pbseg_training.config import DatasetSpec, TrainingConfig


def config(**changes) -> TrainingConfig:
    return TrainingConfig(datasets=(DatasetSpec("unused"),), **changes)


def square_batch() -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.zeros(8, 64, 64, dtype=torch.long)
    labels[:, 20:40, 10:30] = 1  # off-centre in width, so a mirror moves it
    images = labels[:, None].float() * 3.0 - 1.0
    return images, labels


def test_spatial_transform_moves_image_and_labels_together() -> None:
    images, labels = square_batch()
    out_images, out_labels = augment_batch(
        images, labels, torch.zeros(8, dtype=torch.bool), config(), torch.Generator().manual_seed(1)
    )
    assert not torch.equal(out_labels, labels)  # something moved
    for image, label in zip(out_images[:, 0], out_labels):
        inside, outside = image[label == 1].mean(), image[label == 0].mean()
        assert inside > outside + 1.0


def test_mirroring_only_where_the_slice_has_a_left_right_axis() -> None:
    images, labels = square_batch()
    still = config(rotation_degrees=0.0, scale_range=(1.0, 1.0), elastic_strength=0.0)
    _, sagittal = augment_batch(
        images, labels, torch.zeros(8, dtype=torch.bool), still, torch.Generator().manual_seed(0)
    )
    _, coronal = augment_batch(images, labels, torch.ones(8, dtype=torch.bool), still, torch.Generator().manual_seed(0))
    widths = lambda out: out[:, 30].float().argmax(dim=1)  # noqa: E731 - first labelled column per slice
    assert (widths(sagittal) < 32).all()
    assert (widths(coronal) > 32).any()


def test_synthesis_replaces_contrast_but_keeps_the_anatomy() -> None:
    images, labels = square_batch()
    synthetic, out_labels = augment_batch(
        images,
        labels,
        torch.zeros(8, dtype=torch.bool),
        config(synthesis_probability=1.0),
        torch.Generator().manual_seed(2),
    )
    plain, _ = augment_batch(
        images, labels, torch.zeros(8, dtype=torch.bool), config(), torch.Generator().manual_seed(2)
    )
    assert not torch.allclose(synthetic, plain)
    contrasts = [
        abs(float(img[lab == 1].mean() - img[lab == 0].mean())) for img, lab in zip(synthetic[:, 0], out_labels)
    ]
    assert min(contrasts) > 0.05  # every synthetic image still shows the structure
