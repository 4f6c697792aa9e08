"""Real models with known behaviour for the pipeline tests, and synthetic scenes with a known truth.

Scenes are ellipsoids defined in physical (LPS) millimetres and sampled on grids with oblique
direction cosines (flips included) and anisotropic spacing, so a test can compare the pipeline's
labels with a truth known at every physical point. Two styles with opposite contrast: "knee"
(bright femur, dark tibia on a grey background) and "ankle" (dark calcaneus, grey talus on a
bright background).

``threshold_network`` is a real ``MultiDomainUNet`` whose weights are set, not trained, so that it
labels each pixel by thresholds on its normalized intensity: the pipeline's output is then known
exactly (up to the network's stride-2 stem), without spending CI minutes on training.
``detection_model`` is a randomly initialized network whose per-domain BN statistics and centroids
are measured on each style with the pipeline's own preprocessing and embedding function.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from PediatricBoneSegLib.catalog import get_joint
from PediatricBoneSegLib.network import MultiDomainUNet, NetworkConfig
from PediatricBoneSegLib.network.config import PreprocessingConfig
from PediatricBoneSegLib.network.modelfile import DetectionConfig, ModelManifest, save_model
from PediatricBoneSegLib.pipeline.embedding import detection_slice_indices, volume_embedding
from PediatricBoneSegLib.pipeline.preprocessing import SlicedVolume, slice_volume

JOINTS = ("ankle", "knee")
PREPROCESSING = PreprocessingConfig(size=64)
DETECTION_SCALE = "enc5"
# label -> intensity per domain; background first
CONTRAST = {"knee": (400.0, 900.0, 60.0), "ankle": (700.0, 120.0, 380.0)}


@dataclass
class Scene:
    """``image`` and its truth ``labels`` (same geometry); ``centres``: label -> LPS centre (mm)."""

    image: sitk.Image
    labels: sitk.Image
    centres: dict[int, np.ndarray]


def network_config() -> NetworkConfig:
    return NetworkConfig(
        encoder="resnet18",
        classes_per_domain=tuple(get_joint(j).num_classes for j in JOINTS),
        decoder_channels=(32, 16, 16, 8, 8),
    )


def random_direction(rng: np.random.Generator) -> np.ndarray:
    """A random rotation (up to ~35 degrees from the axes) times a random axis flip."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = rng.uniform(-0.6, 0.6)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross
    return rotation @ np.diag(rng.choice([-1.0, 1.0], size=3))


def make_scene(
    joint: str,
    rng: np.random.Generator,
    direction: np.ndarray,
    spacing_xyz: tuple[float, float, float],
    centres: dict[int, tuple[float, float, float]] | None = None,
    semi_axes: dict[int, tuple[float, float, float]] | None = None,
    field_of_view_mm: float = 64.0,
) -> Scene:
    """Two ellipsoids (labels 1 and 2) in a field of view centred on the LPS origin."""
    centres = centres or {1: tuple(rng.uniform(-10, 10, 3)), 2: tuple(rng.uniform(-10, 10, 3) + np.array([0, 0, -14]))}
    semi_axes = semi_axes or {1: tuple(rng.uniform(7, 13, 3)), 2: tuple(rng.uniform(5, 9, 3))}
    spacing = np.asarray(spacing_xyz, dtype=float)
    size = np.maximum(8, np.round(field_of_view_mm / spacing)).astype(int)
    origin = -direction @ (spacing * (size - 1) / 2)  # the grid's centre is the LPS origin
    index = np.stack(np.meshgrid(*(np.arange(n) for n in size), indexing="ij"), axis=-1)  # [x, y, z, 3]
    physical = (index * spacing) @ direction.T + origin
    labels = np.zeros(tuple(size), dtype=np.uint8)
    for label in (2, 1):  # label 1 wins where they overlap
        inside = (((physical - np.asarray(centres[label])) / np.asarray(semi_axes[label])) ** 2).sum(-1) <= 1
        labels[inside] = label
    contrast = np.asarray(CONTRAST[joint])
    intensities = contrast[labels] + rng.normal(0, 25, labels.shape)
    image = sitk.GetImageFromArray(np.transpose(intensities, (2, 1, 0)).astype(np.float32))
    label_image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(labels, (2, 1, 0))))
    for item in (image, label_image):
        item.SetSpacing(tuple(float(s) for s in spacing))
        item.SetOrigin(tuple(float(o) for o in origin))
        item.SetDirection(tuple(float(d) for d in direction.ravel()))
    return Scene(image, label_image, {k: np.asarray(v, dtype=float) for k, v in centres.items()})


def normalized_levels(scene: Scene, plane: str = "sagittal") -> dict[int, float]:
    """Median normalized intensity (the network's input scale) of each truth label of a scene."""
    sliced = slice_volume(
        sitk.GetArrayViewFromImage(scene.image),
        scene.image.GetSpacing(),
        scene.image.GetDirection(),
        plane,
        PREPROCESSING,
    )
    labels = np.moveaxis(sliced.transform.to_canonical(sitk.GetArrayFromImage(scene.labels)), sliced.axis, 0)
    return {int(v): float(np.median(sliced.slices[labels == v])) for v in np.unique(labels)}


def classes_by_intensity(levels: dict[int, float]) -> list[tuple[int, float]]:
    """[(label, lower threshold)] in increasing intensity, thresholds halfway between levels."""
    ordered = sorted(levels, key=levels.__getitem__)
    return [
        (label, (levels[below] + levels[label]) / 2 if below is not None else -np.inf)
        for below, label in zip([None, *ordered[:-1]], ordered)
    ]


def threshold_network(config: NetworkConfig, classes: dict[int, list[tuple[int, float]]]) -> MultiDomainUNet:
    """A ResNet U-Net computing, per pixel, the label whose intensity interval holds the pixel's
    normalized intensity z. ``classes[head]``: [(label, lower threshold)] in increasing order.

    Path: stem conv passes +z and -z (stride 2), decoder stages 4 and 5 pass them on, the head
    scores label i of the list with i*z - sum of the first i thresholds (a convex piecewise-linear
    maximum whose pieces are the intervals). Everything else is zero; BN is the identity."""
    network = MultiDomainUNet(config)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.zero_()
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.fill_(1.0)
                module.running_mean.zero_()
                module.running_var.fill_(1.0)
        stem = network.encoder.conv1
        stem.weight[0, 0, 3, 3], stem.weight[1, 0, 3, 3] = 1.0, -1.0
        fourth, fifth = network.decoder.blocks[3], network.decoder.blocks[4]
        offset = fourth.conv1.in_channels - network.encoder.channels[0]  # the skip follows the upsampled input
        for channel in (0, 1):
            fourth.conv1.weight[channel, offset + channel, 1, 1] = 1.0
            for conv in (fourth.conv2, fifth.conv1, fifth.conv2):
                conv.weight[channel, channel, 1, 1] = 1.0
        for head_index, ordered in classes.items():
            head = network.heads[head_index]
            head.bias.fill_(-1e4)
            cumulative = 0.0
            for rank, (label, threshold) in enumerate(ordered):
                cumulative += threshold if rank else 0.0
                head.weight[label, 0, 0, 0], head.weight[label, 1, 0, 0] = float(rank), -float(rank)
                head.bias[label] = -cumulative
    return network.eval()


def save_test_model(
    path: Path,
    network: MultiDomainUNet,
    joints: list[str],
    centroids: torch.Tensor | None = None,
    threshold: float | None = None,
) -> Path:
    detection = DetectionConfig(DETECTION_SCALE, threshold) if threshold is not None else DetectionConfig()
    manifest = ModelManifest("pbseg-test", "0", network.config, joints, PREPROCESSING, detection=detection)
    return save_model(path, network, manifest, centroids)


def detection_model(seed: int = 0) -> tuple[MultiDomainUNet, torch.Tensor, float, dict[str, list[Scene]]]:
    """A random network with each domain's BN statistics measured on volumes of its style, the
    centroid of each domain (``embedding.volume_embedding`` of those volumes, on the slices the
    pipeline will pick) and a threshold twice the largest distance of a volume to its centroid.
    Also returns the scenes used, per joint."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    network = MultiDomainUNet(network_config())
    scenes = {
        joint: [make_scene(joint, rng, random_direction(rng), (1.2, 1.1, 4.0)) for _ in range(3)] for joint in JOINTS
    }
    volumes = {joint: [_sliced(scene) for scene in scenes[joint]] for joint in JOINTS}
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the calibration batches
            module.reset_running_stats()
    network.train()
    with torch.no_grad():  # the encoder's statistics are all that detection uses
        for domain, joint in enumerate(JOINTS):
            network.encode(torch.cat([_detection_slices(volume) for volume in volumes[joint]]), domain)
    network.eval()
    centroids, spread = [], []
    for domain, joint in enumerate(JOINTS):
        embeddings = torch.stack([_embedding(network, volume, domain) for volume in volumes[joint]])
        centroid = torch.nn.functional.normalize(embeddings.mean(0), dim=0)
        centroids.append(centroid)
        spread.append(1 - embeddings @ centroid)
    return network, torch.stack(centroids), 2.0 * float(torch.cat(spread).max()), scenes


def _detection_slices(volume: SlicedVolume) -> torch.Tensor:
    return torch.cat([volume.network_input(int(i), int(i) + 1) for i in detection_slice_indices(len(volume.slices))])


def _embedding(network: MultiDomainUNet, volume: SlicedVolume, domain: int) -> torch.Tensor:
    return volume_embedding(network, _detection_slices(volume), domain, DETECTION_SCALE)


def _sliced(scene: Scene) -> SlicedVolume:
    return slice_volume(
        sitk.GetArrayViewFromImage(scene.image),
        scene.image.GetSpacing(),
        scene.image.GetDirection(),
        "sagittal",
        PREPROCESSING,
    )
