"""Per-bone quality of a segmentation, from the network's own evidence, and a verdict: reliable or not.

For each bone the network predicted, seven features (``FEATURES``) are measured:

- ``confidence``: mean probability, by the network, of the bone's label over the bone's voxels;
- ``uncertain``: share of the bone's voxels where that probability is below 0.5;
- ``outside_main``: share of the bone's predicted volume outside its main body (before
  post-processing). The main body is the largest 3D piece and, when one lies within
  ``PHYSIS_GAP_MM`` of it, the largest such other piece: a child's epiphysis, which its open
  growth plate separates from the metaphysis, belongs to the bone, and is no fragment;
- ``components``: ln(1 + number of 3D pieces of the predicted bone of at least
  ``MIN_FRAGMENT_FRACTION`` of the largest, the main body counting as one: noise specks do not
  count);
- ``removed``: share of the predicted volume that the anatomical post-processing removed;
- ``volume_z``: |ln(volume) - mean| / std, the final volume against the bone's volumes in the
  training-like data (``QualityModel.volume_log_ml``);
- ``joint_distance``: the volume's embedding distance to the segmented joint's centroid, in units
  of the model's out-of-distribution threshold (one value for the case: a forced wrong joint or an
  unknown-looking volume; 0 when the model has no detection data).

A ``QualityModel`` (logistic, stored in the model file's manifest as its ``quality`` section by
``pbseg_training.calibrate_quality``) turns them into a quality in [0, 1]; a bone is reliable when
its quality reaches the model's threshold and its main body holds at least half of it (more
than half outside it is scattered patches, however confident). A model file without a ``quality`` section gets
``DEFAULT_QUALITY``: hand-set and conservative (it flags a bone unless the network is confident,
the bone is in one piece and its volume is within the catalog's pediatric range). A missing bone
has quality 0 and is never reliable. NumPy and SciPy only: the report writers import this.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..catalog import get_joint
from .components import BoneComponents, bone_components
from .postprocess import MIN_FRAGMENT_FRACTION

FEATURES = ("confidence", "uncertain", "outside_main", "components", "removed", "volume_z", "joint_distance")
# The widest gap, as segmented, between a child's epiphysis and its metaphysis: the physis's
# cartilage (about 1-2 mm) and a voxel of partial volume on each side.
PHYSIS_GAP_MM = 3.0
UNCERTAIN_BELOW = 0.5  # probability of the bone's label under which a voxel counts as uncertain
_REASONS = {
    "confidence": "low network confidence",
    "uncertain": "many uncertain voxels",
    "outside_main": "fragmented",
    "components": "many pieces",
    "removed": "much removed by the post-processing",
    "volume_z": "implausible volume",
    "joint_distance": "the volume looks unlike this joint",
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def catalog_volume_stats(bone: str, joint: str) -> tuple[float, float]:
    """(mean, std) of ln(volume in ml) read from the catalog's plausible range as mean +- 2 std."""
    spec = get_joint(joint)
    low, high = spec.bones[spec.label_of(bone) - 1].volume_range_ml
    return (math.log(low) + math.log(high)) / 2, (math.log(high) - math.log(low)) / 4


@dataclass
class NetworkEvidence:
    """What the network said about every voxel, in two uint8 volumes instead of C float ones.

    ``labels``: [z, y, x] uint8 argmax of the softmax (the joint's label space); ``confidence``:
    [z, y, x] uint8, the argmax's softmax probability x 255 (rounded)."""

    labels: np.ndarray
    confidence: np.ndarray

    @classmethod
    def from_probabilities(cls, probabilities: np.ndarray) -> NetworkEvidence:
        """``probabilities``: [C, z, y, x] softmax (each voxel sums to 1)."""
        labels = np.argmax(probabilities, axis=0).astype(np.uint8)
        confidence = np.rint(255 * np.max(probabilities, axis=0)).astype(np.uint8)
        return cls(labels, confidence)

    def label_probability(self, box: tuple[slice, ...], value: int, mask: np.ndarray | None = None) -> np.ndarray:
        """Probability (float32, [0, 1]) of label ``value`` in ``box``: the confidence where it is the
        argmax, else 1 - confidence (an upper bound: what the argmax leaves to the other labels).
        ``mask``: [box shape] bool, only those voxels (1D, in array order)."""
        confidence, labels = self.confidence[box], self.labels[box]
        if mask is not None:
            confidence, labels = confidence[mask], labels[mask]
        confidence = confidence.astype(np.float32) / 255.0
        return np.where(labels == value, confidence, 1.0 - confidence)


class QualityFeaturesError(ValueError):
    """A quality section fitted on the features of another version of this code."""


@dataclass(frozen=True)
class QualityModel:
    """Logistic model of a bone's reliability: quality = sigmoid(bias + sum of ``weights`` x
    (feature - ``means``) / ``scales``), all three in ``FEATURES`` order; reliable when quality >=
    ``threshold`` and ``outside_main`` <= ``fragmented_above``. ``volume_log_ml``: bone key ->
    (mean, std) of ln(volume in ml) in training-like data (bones not listed: from the catalog's
    range). ``calibration``: the figures measured when it was fitted (free-form, kept in the
    manifest)."""

    weights: tuple[float, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]
    bias: float
    threshold: float
    volume_log_ml: dict[str, tuple[float, float]] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    fragmented_above: float = 0.5

    def __post_init__(self) -> None:
        for name in ("weights", "means", "scales"):
            values = getattr(self, name)
            if len(values) != len(FEATURES) or not all(_is_number(v) for v in values):
                raise ValueError(f"quality {name} must be {len(FEATURES)} numbers ({', '.join(FEATURES)})")
        if not all(s > 0 for s in self.scales):
            raise ValueError("quality scales must be positive")
        if not _is_number(self.bias) or not _is_number(self.threshold) or not 0 < self.threshold < 1:
            raise ValueError("quality bias must be a number and threshold a number in (0, 1)")
        if not _is_number(self.fragmented_above) or not 0 < self.fragmented_above <= 1:
            raise ValueError("quality fragmented_above must be a number in (0, 1]")
        for bone, stats in self.volume_log_ml.items():
            if len(stats) != 2 or not all(_is_number(v) for v in stats) or stats[1] <= 0:
                raise ValueError(f"quality volume_log_ml of {bone!r} must be [mean, positive std]")

    def contributions(self, features: dict[str, float]) -> np.ndarray:
        """Each feature's term of the logit (negative: it lowers the quality)."""
        values = np.array([features[name] for name in FEATURES])
        return np.asarray(self.weights) * (values - np.asarray(self.means)) / np.asarray(self.scales)

    def score(self, features: dict[str, float]) -> float:
        """Quality in [0, 1] of one bone's ``FEATURES``."""
        logit = self.bias + float(self.contributions(features).sum())
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, logit))))

    def reliable(self, features: dict[str, float]) -> bool:
        """The verdict on one bone's ``FEATURES``: quality at the threshold or above, not fragmented."""
        return self.score(features) >= self.threshold and features["outside_main"] <= self.fragmented_above

    def volume_stats(self, bone: str, joint: str) -> tuple[float, float]:
        """(mean, std) of ln(volume in ml) of ``joint``'s ``bone``: calibrated, else the catalog's."""
        return self.volume_log_ml.get(bone) or catalog_volume_stats(bone, joint)

    def to_json(self) -> dict[str, Any]:
        return {
            "features": list(FEATURES),
            "weights": list(self.weights),
            "means": list(self.means),
            "scales": list(self.scales),
            "bias": self.bias,
            "threshold": self.threshold,
            "fragmented_above": self.fragmented_above,
            "volume_log_ml": {bone: list(stats) for bone, stats in self.volume_log_ml.items()},
            "calibration": self.calibration,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QualityModel:
        """Raises ValueError for a section this version cannot use (other features, bad numbers)."""
        if not isinstance(data, dict):
            raise ValueError("the quality section is not a JSON object")
        if data.get("features") != list(FEATURES):
            raise QualityFeaturesError(f"quality features {data.get('features')} are not {list(FEATURES)}")
        try:
            return cls(
                weights=tuple(data["weights"]),
                means=tuple(data["means"]),
                scales=tuple(data["scales"]),
                bias=data["bias"],
                threshold=data["threshold"],
                fragmented_above=data.get("fragmented_above", 0.5),
                volume_log_ml={bone: tuple(stats) for bone, stats in data.get("volume_log_ml", {}).items()},
                calibration=dict(data.get("calibration", {})),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"invalid quality section ({error!r})") from None


# Hand-set, for model files without a quality section. At the means the logit is -1.5 (quality
# 0.18, not reliable); it reaches the threshold only with confidence >= ~0.93, < 3 % uncertain or
# fragmented voxels, a volume within ~2 std of the catalog's range centre and a volume that looks
# like the joint (well within the out-of-distribution threshold).
DEFAULT_QUALITY = QualityModel(
    weights=(3.0, -1.0, -1.0, -0.5, -1.0, -1.0, -1.0),
    means=(0.9, 0.05, 0.05, 1.0, 0.05, 1.0, 0.5),
    scales=(0.03, 0.03, 0.03, 0.7, 0.03, 1.0, 0.25),
    bias=0.0,
    threshold=0.5,
    calibration={"source": "default: hand-set, conservative (the model file has no quality section)"},
)


@dataclass(frozen=True)
class BoneQuality:
    """``score``: quality in [0, 1]; ``reliable``: score >= the model's threshold; ``features``:
    the measured ``FEATURES`` plus ``volume_ml`` (empty for a missing bone); ``reasons``: the
    features that pulled the score down most, in words, when not reliable."""

    score: float
    reliable: bool
    features: dict[str, float] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()


def main_body(parts: BoneComponents, spacing_zyx: Sequence[float]) -> tuple[int, int]:
    """(voxels of the bone's main body, 1 if a second piece is part of it else 0): the largest
    piece, plus the largest other piece of at least ``MIN_FRAGMENT_FRACTION`` of it that comes
    within ``PHYSIS_GAP_MM`` of it (an epiphysis across its open growth plate)."""
    largest = parts.largest
    order = np.argsort(parts.sizes, kind="stable")[::-1]
    candidates = [
        int(i) for i in order if i != parts.main and i != 0 and parts.sizes[i] >= MIN_FRAGMENT_FRACTION * largest
    ]
    for piece in candidates:
        if parts.near_main(piece, spacing_zyx, PHYSIS_GAP_MM):
            return largest + int(parts.sizes[piece]), 1
    return largest, 0


def bone_features(
    predicted: np.ndarray,
    final: np.ndarray,
    evidence: NetworkEvidence,
    spacing_zyx: Sequence[float],
    joint: str,
    model: QualityModel,
    joint_distance: float = 0.0,
    components: Sequence[BoneComponents | None] | None = None,
) -> dict[str, dict[str, float]]:
    """``predicted``: [z, y, x] labels before post-processing (the network's argmax, or any mask to
    judge); ``final``: the labels reported (after post-processing; ``predicted`` when there was
    none); ``evidence``: the network's output on the same grid; ``spacing_zyx``: mm per voxel;
    ``joint_distance``: the case's ``joint_distance`` feature; ``components``: the pieces of each
    bone of ``predicted`` (``components.bone_components``) when already found: then each bone of
    ``final`` must lie within its box of ``predicted`` (true of the post-processing's output).
    Returns, for every bone present in ``final``, its ``FEATURES`` and ``volume_ml``."""
    spec = get_joint(joint)
    voxel_ml = float(np.prod(np.asarray(spacing_zyx, dtype=float))) / 1000.0
    if components is None:
        components = bone_components(predicted, spec.num_classes)
        final_counts = np.bincount(final.ravel(), minlength=spec.num_classes)
    else:
        final_counts = np.zeros(spec.num_classes, dtype=np.int64)
        for value, parts in enumerate(components, start=1):
            if parts is not None:
                final_counts[value] = np.count_nonzero(final[parts.box] == value)
    result = {}
    for value, bone in enumerate(spec.bones, start=1):
        parts = components[value - 1]
        if parts is None or final_counts[value] == 0:
            continue
        box = parts.box
        mask = parts.labels != 0
        count = parts.voxels
        probability = evidence.label_probability(box, value, mask)
        body, attached = main_body(parts, spacing_zyx)
        significant = int(np.count_nonzero(parts.sizes[1:] >= MIN_FRAGMENT_FRACTION * parts.largest))
        kept = int(np.count_nonzero(mask & (final[box] == value)))
        volume_ml = float(final_counts[value]) * voxel_ml
        mean, std = model.volume_stats(bone.key, joint)
        result[bone.key] = {
            "confidence": float(probability.mean()),
            "uncertain": float(np.mean(probability < UNCERTAIN_BELOW)),
            "outside_main": 1.0 - body / count,
            "components": math.log1p(significant - attached),
            "removed": 1.0 - kept / count,
            "volume_z": abs(math.log(volume_ml) - mean) / std,
            "joint_distance": joint_distance,
            "volume_ml": volume_ml,
        }
    return result


def assess_bones(
    predicted: np.ndarray,
    final: np.ndarray,
    evidence: NetworkEvidence,
    spacing_zyx: Sequence[float],
    joint: str,
    model: QualityModel = DEFAULT_QUALITY,
    joint_distance: float = 0.0,
    components: Sequence[BoneComponents | None] | None = None,
) -> dict[str, BoneQuality]:
    """``BoneQuality`` of every bone of ``joint`` (arguments as ``bone_features``); a bone missing
    from ``final`` gets quality 0, not reliable."""
    measured = bone_features(predicted, final, evidence, spacing_zyx, joint, model, joint_distance, components)
    qualities = {}
    for bone in get_joint(joint).bones:
        features = measured.get(bone.key)
        if features is None:
            qualities[bone.key] = BoneQuality(0.0, False, reasons=("not found",))
            continue
        score, reliable = model.score(features), model.reliable(features)
        reasons: tuple[str, ...] = ()
        if features["outside_main"] > model.fragmented_above:
            reasons = (f"fragmented: {features['outside_main']:.0%} outside its main piece",)
        elif not reliable:
            terms = model.contributions(features)
            reasons = tuple(_REASONS[FEATURES[i]] for i in np.argsort(terms)[:2] if terms[i] < 0)
        qualities[bone.key] = BoneQuality(score, reliable, features, reasons)
    return qualities


def quality_warnings(qualities: dict[str, BoneQuality], joint: str) -> list[str]:
    """One warning per bone that is present but not reliable (a missing bone has its own warning)."""
    spec = get_joint(joint)
    return [
        f"{spec.bones[spec.label_of(key) - 1].display_name}: unreliable segmentation (quality {quality.score:.2f}"
        + (f": {', '.join(quality.reasons)}" if quality.reasons else "")
        + "); check it before using its surface or measurements"
        for key, quality in qualities.items()
        if quality.features and not quality.reliable
    ]


def unreliable_bones(qualities: dict[str, BoneQuality], joint: str) -> list[str]:
    """Display names of the bones that are not reliable (missing ones included), in catalog order."""
    spec = get_joint(joint)
    return [spec.bones[spec.label_of(key) - 1].display_name for key, q in qualities.items() if not q.reliable]
