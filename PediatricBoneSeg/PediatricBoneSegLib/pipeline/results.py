"""What the pipeline returns, in a module light enough for the file writers and the Slicer logic to
import without PyTorch."""

from __future__ import annotations

from dataclasses import dataclass, field

import SimpleITK as sitk

from ..catalog import get_joint
from ..labelmaps import bone_boxes
from .quality import BoneQuality, unreliable_bones


@dataclass
class InferenceResult:
    """``labels``: UInt8 label volume with exactly the input's size, origin, spacing and direction,
    values from the catalog (the joint's label space). ``timings``: seconds per stage.
    ``joint_probabilities``: the joint classifier's probability of each joint; ``joint_distances``:
    embedding distance to each joint's centroid (older models); ``joint_novelty``: distance of the
    volume from the model's training data, in the units of its out-of-distribution threshold.
    ``quality``: bone key -> ``BoneQuality`` from the network's evidence (empty when the labels
    did not come from the network). ``boxes``: each bone's bounding box in ``labels`` (array axes,
    None where absent; ``bone_boxes()`` finds them when not given), shared by every later step."""

    labels: sitk.Image
    joint: str
    auto_detected: bool
    joint_confidence: float | None
    warnings: list[str]
    timings: dict[str, float]
    model_name: str
    model_version: str
    joint_distances: dict[str, float] = field(default_factory=dict)
    joint_probabilities: dict[str, float] = field(default_factory=dict)
    joint_novelty: float | None = None
    device: str = "cpu"
    precision: str = "fp32"
    quality: dict[str, BoneQuality] = field(default_factory=dict)
    boxes: list[tuple[slice, ...] | None] | None = None

    def bone_boxes(self) -> list[tuple[slice, ...] | None]:
        """``boxes``, found from ``labels`` the first time when the result did not bring them."""
        if self.boxes is None:
            array = sitk.GetArrayViewFromImage(self.labels)
            self.boxes = bone_boxes(array, get_joint(self.joint).num_classes)
        return self.boxes

    def unreliable_bones(self) -> list[str]:
        """Display names of the bones judged unreliable (missing ones included), in catalog order."""
        return unreliable_bones(self.quality, self.joint) if self.quality else []
