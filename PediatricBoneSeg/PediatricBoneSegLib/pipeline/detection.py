"""Joint auto-detection and out-of-distribution warnings from the network's own features.

Model files carry one of two kinds of detection data (``LoadedModel``):

- a **joint classifier** (``JointClassifier``): the volume's encoder statistics under every
  domain's batch normalization (``embedding.encoder_statistics``), concatenated, go through a
  linear classifier fitted on training volumes of every protocol; its softmax is the probability
  of each joint. The volume's *novelty* is the cosine distance of the same features to the nearest
  training case; beyond the model's threshold (noise, a brain MR, a CT) it is flagged.
- older files: one **centroid** per domain of a pooled embedding (``embedding.volume_embedding``);
  the nearest centroid (cosine distance) is the joint, and that distance is the novelty.

Either way a volume beyond the threshold gets a warning, never a silent guess, and a joint given
by the user is checked too: a knee forced to "ankle" would otherwise be segmented as an ankle
(femur as calcaneus) without a word.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..catalog import get_joint
from ..network.modelfile import JointClassifier, LoadedModel
from .embedding import detection_slice_indices, encoder_statistics, volume_embedding
from .preprocessing import SlicedVolume

DEFAULT_TEMPERATURE = 0.02  # cosine-distance scale of the centroid confidence softmax without a threshold
MISMATCH_PROBABILITY = 0.9  # a forced joint is questioned when the classifier gives another joint this much


@dataclass
class JointChoice:
    """The joint to segment. ``confidence``: probability of the chosen joint (classifier) or
    softmax weight of its centroid (None when not auto-detected or the model has a single joint);
    ``probabilities``: the classifier's probability of every joint; ``distances``: cosine distance
    to every joint's centroid (older models); ``novelty``: how far the volume lies from the training
    data, in the units of the model's threshold (None without detection data)."""

    joint: str
    auto_detected: bool
    confidence: float | None = None
    distances: dict[str, float] = field(default_factory=dict)
    probabilities: dict[str, float] = field(default_factory=dict)
    novelty: float | None = None
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
    elif loaded.classifier is None and loaded.centroids is None and len(joints) > 1:
        raise ValueError(
            f"{loaded.path}: the model has no joint-detection data; choose the joint ({', '.join(joints)})"
        )
    if loaded.classifier is not None:
        choice = _classify(loaded, loaded.classifier, requested, sliced_for, device)
    elif loaded.centroids is not None:
        choice = _nearest_centroid(loaded, requested, sliced_for, device)
    else:
        choice = JointChoice(joints[0] if requested == "auto" else requested, auto_detected=requested == "auto")
    choice.warnings = _distribution_warnings(loaded, choice) + _mismatch_warnings(loaded, choice)
    return choice


def detection_features(
    loaded: LoadedModel, sliced_for: Callable[[str], SlicedVolume], device: torch.device, scale: str
) -> torch.Tensor:
    """[F]: the volume's encoder statistics of ``scale`` (``"statistics:enc3+enc4"``) under every
    domain, in domain order (what the joint classifier and the novelty are computed from; training
    fits them on the same function)."""
    parts = []
    for joint in loaded.manifest.joints:
        images = _detection_images(sliced_for(joint), device)
        parts.append(encoder_statistics(loaded.network, images, loaded.domain_of(joint), scale).cpu())
    return torch.cat(parts)


def classifier_outputs(classifier: JointClassifier, features: torch.Tensor) -> tuple[torch.Tensor, float]:
    """features [F] -> (probability of each joint [domains], novelty: cosine distance to the
    nearest training case)."""
    features = features.float()
    logits = classifier.weight @ ((features - classifier.mean) / classifier.scale) + classifier.bias
    similarity = classifier.reference @ torch.nn.functional.normalize(features, dim=0)
    return torch.softmax(logits, dim=0), float(1.0 - similarity.max())


def _classify(
    loaded: LoadedModel,
    classifier: JointClassifier,
    requested: str,
    sliced_for: Callable[[str], SlicedVolume],
    device: torch.device,
) -> JointChoice:
    joints = loaded.manifest.joints
    features = detection_features(loaded, sliced_for, device, detection_scale(loaded))
    probabilities, novelty = classifier_outputs(classifier, features)
    by_joint = {joint: float(p) for joint, p in zip(joints, probabilities)}
    if requested != "auto":
        return JointChoice(requested, False, probabilities=by_joint, novelty=novelty)
    best = max(by_joint, key=by_joint.__getitem__)
    confidence = by_joint[best] if len(joints) > 1 else None
    return JointChoice(best, True, confidence, probabilities=by_joint, novelty=novelty)


def _nearest_centroid(
    loaded: LoadedModel, requested: str, sliced_for: Callable[[str], SlicedVolume], device: torch.device
) -> JointChoice:
    joints = loaded.manifest.joints
    distances = {joint: centroid_distance(loaded, sliced_for(joint), joint, device) for joint in joints}
    if requested != "auto":
        return JointChoice(requested, False, distances=distances, novelty=distances[requested])
    nearest = min(distances, key=distances.__getitem__)
    confidence = None
    if len(joints) > 1:
        weights = torch.softmax(-torch.tensor(list(distances.values())) / _temperature(loaded), dim=0)
        confidence = float(weights[joints.index(nearest)])
    return JointChoice(nearest, True, confidence, distances, novelty=distances[nearest])


def _detection_images(sliced: SlicedVolume, device: torch.device) -> torch.Tensor:
    indices = detection_slice_indices(len(sliced.slices))
    return torch.cat([sliced.network_input(int(i), int(i) + 1) for i in indices]).to(device)


def centroid_distance(loaded: LoadedModel, sliced: SlicedVolume, joint: str, device: torch.device) -> float:
    """Cosine distance between the volume's embedding under ``joint``'s domain and its centroid."""
    domain = loaded.domain_of(joint)
    images = _detection_images(sliced, device)
    embedding = volume_embedding(loaded.network, images, domain, detection_scale(loaded)).cpu()
    centroid = torch.nn.functional.normalize(loaded.centroids[domain].float(), dim=0)  # type: ignore[index]
    return float(1.0 - embedding @ centroid)


def detection_scale(loaded: LoadedModel) -> str:
    """The projection head the centroids were computed with."""
    scale = loaded.manifest.detection.scale
    return scale if scale is not None else loaded.manifest.architecture.projection_scales[-1]


def _temperature(loaded: LoadedModel) -> float:
    """The centroid confidence softmax's temperature."""
    threshold = loaded.manifest.detection.threshold
    return float(threshold) / 4 if threshold else DEFAULT_TEMPERATURE


def _mismatch_warnings(loaded: LoadedModel, choice: JointChoice) -> list[str]:
    """A requested joint that the detection clearly attributes to another joint, when the volume
    does look like a joint this model knows (within the threshold, if the model has one)."""
    if choice.auto_detected:
        return []
    threshold = loaded.manifest.detection.threshold
    if len(choice.probabilities) > 1:
        other = max((j for j in choice.probabilities if j != choice.joint), key=choice.probabilities.__getitem__)
        novel = threshold is not None and choice.novelty is not None and choice.novelty > float(threshold)
        if choice.probabilities[other] < MISMATCH_PROBABILITY or novel:
            return []
        evidence = (
            f"joint classifier: {other} {choice.probabilities[other]:.2f}, "
            f"{choice.joint} {choice.probabilities[choice.joint]:.2f}"
        )
    elif len(choice.distances) > 1:
        # "Clearly": nearer by at least the confidence softmax's temperature (the other joint then
        # weighs e times as much; model 1's phantoms are 0.08-0.14 nearer their own joint) and,
        # when the model has a threshold, within it, so the volume looks like that joint.
        forced = choice.distances[choice.joint]
        other = min((j for j in choice.distances if j != choice.joint), key=choice.distances.__getitem__)
        nearer = choice.distances[other]
        if forced - nearer < _temperature(loaded) or (threshold is not None and nearer > float(threshold)):
            return []
        evidence = f"embedding distance {nearer:.3f} to the {other} centroid, {forced:.3f} to the {choice.joint} one"
    else:
        return []
    article = "an" if other[0] in "aeiou" else "a"
    return [
        f"the {choice.joint} was requested but the volume looks like {article} {other} MR ({evidence}): the "
        f"{choice.joint} segmentation is likely wrong; use --joint auto or --joint {other}"
    ]


def _distribution_warnings(loaded: LoadedModel, choice: JointChoice) -> list[str]:
    threshold = loaded.manifest.detection.threshold
    novelty = choice.novelty
    if threshold is None or novelty is None or novelty <= float(threshold):
        return []
    known = ", ".join(loaded.manifest.joints)
    measure = f"distance {novelty:.3f} > threshold {float(threshold):.3f}"
    if choice.auto_detected:
        return [
            f"the volume does not look like a joint MR this model knows ({known}): the most likely is the "
            f"{choice.joint}, at {measure} from the training data; the result is unreliable (check the input, or "
            "choose the joint)"
        ]
    return [
        f"the volume does not look like the {choice.joint} MRs this model was trained on ({measure} from the "
        "training data); check the result"
    ]
