"""SynthSeg-style label-to-image synthesis on 2D/3D numpy arrays and batched torch tensors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from pbseg_training.synthesis import SynthesisConfig, synthesize_image

PLAIN = SynthesisConfig(  # nothing but one random intensity per class
    texture_std=(0.0, 0.0),
    blur_sigma=(0.0, 0.0),
    bias_amplitude=(0.0, 0.0),
    resolution=(1.0, 1.0),
    noise_std=(0.0, 0.0),
    gamma_log_std=0.0,
    background_classes=(1, 1),
)


def label_map_3d() -> np.ndarray:
    labels = np.zeros((12, 24, 20), np.uint8)
    labels[2:8, 4:14, 3:12] = 1
    labels[6:11, 15:22, 8:18] = 2
    labels[1:4, 16:20, 2:6] = 3
    return labels


def test_same_seed_same_image_and_different_seeds_differ() -> None:
    labels = label_map_3d()
    first, again, other = (synthesize_image(labels, s) for s in (5, 5, 6))
    assert first.dtype == np.float32 and first.shape == labels.shape
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)
    assert first.min() >= 0.0 and first.max() <= 1.0 and np.isfinite(first).all()
    generated = synthesize_image(labels, np.random.default_rng(3))
    assert np.array_equal(generated, synthesize_image(labels, np.random.default_rng(3)))


def test_each_label_gets_one_intensity_without_corruptions() -> None:
    labels = label_map_3d()
    image = synthesize_image(labels, 1, PLAIN)
    means = []
    for value in range(4):
        region = image[labels == value]
        assert np.ptp(region) < 1e-6
        means.append(float(region[0]))
    assert min(abs(a - b) for i, a in enumerate(means) for b in means[i + 1 :]) > 1e-3
    contrasts = {
        tuple(np.round([synthesize_image(labels, s, PLAIN)[labels == v][0] for v in range(4)], 4)) for s in range(5)
    }
    assert len(contrasts) == 5  # a new contrast per draw


def test_extra_tissue_classes_and_background_blobs_split_a_label() -> None:
    labels = label_map_3d()
    tissues = np.zeros_like(labels)
    tissues[:, :, 10:] = 1  # e.g. fat vs muscle in the background
    image = synthesize_image(labels, 2, PLAIN, tissues=tissues)
    background = labels == 0
    assert np.unique(np.round(image[background], 6)).size == 2
    assert np.unique(np.round(image[background & (tissues == 1)], 6)).size == 1
    blobs = replace(PLAIN, background_classes=(4, 4))
    assert np.unique(np.round(synthesize_image(labels, 2, blobs)[background], 6)).size > 1
    # A tissue map is the background's structure: random blobs do not overwrite it.
    with_tissues = synthesize_image(labels, 2, blobs, tissues=tissues)
    assert np.unique(np.round(with_tissues[background], 6)).size == 2


def test_low_resolution_axis_is_blurred() -> None:
    rng = np.random.default_rng(0)
    labels = np.kron(rng.integers(0, 4, (8, 8, 8)), np.ones((2, 2, 2), np.int64))  # 16^3 checkered
    thick = replace(PLAIN, resolution=(4.0, 4.0))
    image = synthesize_image(labels, 3, thick)
    variation = [float(np.abs(np.diff(image, axis=a)).mean()) for a in range(3)]
    assert min(variation) < 0.5 * max(variation)  # one axis lost its detail
    sharp = synthesize_image(labels, 3, PLAIN)
    sharp_variation = [float(np.abs(np.diff(sharp, axis=a)).mean()) for a in range(3)]
    assert max(sharp_variation) < 1.5 * min(sharp_variation)


def test_torch_batch_of_slices_draws_per_sample_parameters() -> None:
    slices = torch.from_numpy(label_map_3d()[3:7].copy())  # 4 slices [4, 24, 20]
    images = synthesize_image(slices, torch.Generator().manual_seed(4), spatial_dims=2)
    assert isinstance(images, torch.Tensor) and images.shape == slices.shape and images.dtype == torch.float32
    again = synthesize_image(slices, torch.Generator().manual_seed(4), spatial_dims=2)
    assert torch.equal(images, again)
    plain = synthesize_image(slices, 4, PLAIN, spatial_dims=2)
    femur_means = [float(plain[i][slices[i] == 1].mean()) for i in range(4)]
    assert len({round(m, 5) for m in femur_means}) == 4
    two_d = synthesize_image(label_map_3d()[5], 1)
    assert two_d.shape == (24, 20)


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="non-negative integers"):
        synthesize_image(np.zeros((4, 4), np.float32), 0)
    with pytest.raises(ValueError, match="non-negative integers"):
        synthesize_image(-np.ones((4, 4), np.int64), 0)
    with pytest.raises(ValueError, match="spatial"):
        synthesize_image(np.zeros((4,), np.uint8), 0)
    with pytest.raises(ValueError, match="tissues"):
        synthesize_image(np.zeros((4, 4), np.uint8), 0, tissues=np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="resolution"):
        SynthesisConfig(resolution=(0.5, 2.0))
