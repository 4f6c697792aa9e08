"""Joint auto-detection and out-of-distribution warnings from the network's embeddings.

A volume is embedded under each domain's batch normalization (``embedding.volume_embedding``, the
function training uses for the centroids) and compared to that domain's centroid by cosine
distance; the nearest domain is the joint. A volume farther than the model's threshold from every
centroid (noise, a brain MR, a CT) is flagged: a warning, never a silent guess. A joint given by the
user is compared to every centroid too: a knee forced to "ankle" would otherwise be segmented as an
ankle (femur as calcaneus) without a word.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..catalog import get_joint
from ..network.modelfile import LoadedModel
from .embedding import detection_slice_indices, volume_embedding
from .preprocessing import SlicedVolume

DEFAULT_TEMPERATURE = 0.02  # cosine-distance scale of the confidence softmax without a threshold


@dataclass
class JointChoice:
    """The joint to segment. ``confidence``: softmax weight of the chosen domain over all domains
    (None when not auto-detected or the model has a single joint); ``distances``: cosine distance
    of the volume's embedding to the centroid of every joint (empty without detection data)."""

    joint: str
    auto_detected: bool
    confidence: float | None = None
    distances: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def choose_joint(
    loaded: LoadedModel, requested: str, sliced_for: Callable[[str], SlicedVolume], device: torch.device
) -> JointChoice:
    """``requested``: a joint key or "auto". ``sliced_for(joint)`` prepares the volume as that
    joint's domain sees it (the slicing plane of near-isotropic volumes depends on the joint)."""
    joints = loaded.manifest.joints
    if requested != "auto":
        requested = get_joint(requested).key
        loaded.domain_of(requested)  # a clear error when the model does not know this joint
    elif loaded.centroids is None and len(joints) > 1:
        raise ValueError(
            f"{loaded.path}: the model has no joint-detection data; choose the joint ({', '.join(joints)})"
        )
    distances: dict[str, float] = {}
    if loaded.centroids is not None:
        distances = {joint: centroid_distance(loaded, sliced_for(joint), joint, device) for joint in joints}
    if requested != "auto":
        choice = JointChoice(requested, auto_detected=False, distances=distances)
    elif not distances:
        choice = JointChoice(joints[0], auto_detected=True)
    else:
        nearest = min(distances, key=distances.__getitem__)
        confidence = None
        if len(joints) > 1:
            weights = torch.softmax(-torch.tensor(list(distances.values())) / _temperature(loaded), dim=0)
            confidence = float(weights[joints.index(nearest)])
        choice = JointChoice(nearest, True, confidence, distances)
    choice.warnings = _distribution_warnings(loaded, choice) + _mismatch_warnings(loaded, choice)
    return choice


def centroid_distance(loaded: LoadedModel, sliced: SlicedVolume, joint: str, device: torch.device) -> float:
    """Cosine distance between the volume's embedding under ``joint``'s domain and its centroid."""
    domain = loaded.domain_of(joint)
    indices = detection_slice_indices(len(sliced.slices))
    images = torch.cat([sliced.network_input(int(i), int(i) + 1) for i in indices]).to(device)
    embedding = volume_embedding(loaded.network, images, domain, detection_scale(loaded)).cpu()
    centroid = torch.nn.functional.normalize(loaded.centroids[domain].float(), dim=0)  # type: ignore[index]
    return float(1.0 - embedding @ centroid)


def detection_scale(loaded: LoadedModel) -> str:
    """The projection head the centroids were computed with."""
    scale = loaded.manifest.detection.scale
    return scale if scale is not None else loaded.manifest.architecture.projection_scales[-1]


def _temperature(loaded: LoadedModel) -> float:
    threshold = loaded.manifest.detection.threshold
    return float(threshold) / 4 if threshold else DEFAULT_TEMPERATURE


def _mismatch_warnings(loaded: LoadedModel, choice: JointChoice) -> list[str]:
    """A requested joint that another joint's centroid clearly beats. "Clearly": nearer by at least
    the confidence softmax's temperature (the other joint then weighs e times as much; the bundled
    model's phantoms are 0.08-0.14 nearer their own joint, 2-4 temperatures) and, when the model has
    a threshold, within it, so the volume does look like that joint and not like nothing known."""
    if choice.auto_detected or len(choice.distances) < 2:
        return []
    threshold = loaded.manifest.detection.threshold
    forced = choice.distances[choice.joint]
    other = min((j for j in choice.distances if j != choice.joint), key=choice.distances.__getitem__)
    nearer = choice.distances[other]
    if forced - nearer < _temperature(loaded) or (threshold is not None and nearer > float(threshold)):
        return []
    article = "an" if other[0] in "aeiou" else "a"
    return [
        f"the {choice.joint} was requested but the volume looks like {article} {other} MR (embedding distance "
        f"{nearer:.3f} to the {other} centroid, {forced:.3f} to the {choice.joint} one): the {choice.joint} "
        f"segmentation is likely wrong; use --joint auto or --joint {other}"
    ]


def _distribution_warnings(loaded: LoadedModel, choice: JointChoice) -> list[str]:
    threshold = loaded.manifest.detection.threshold
    distance = choice.distances.get(choice.joint)
    if threshold is None or distance is None or distance <= float(threshold):
        return []
    known = ", ".join(loaded.manifest.joints)
    if choice.auto_detected:
        return [
            f"the volume does not look like a joint MR this model knows ({known}): nearest is the {choice.joint} "
            f"at embedding distance {distance:.3f} > threshold {float(threshold):.3f}; the result is unreliable "
            "(check the input, or choose the joint)"
        ]
    return [
        f"the volume does not look like the {choice.joint} MRs this model was trained on (embedding distance "
        f"{distance:.3f} > threshold {float(threshold):.3f}); check the result"
    ]
