"""The anatomical description a joint builder returns and the generator renders.

Frame: a RIGHT limb in patient LPS millimetres of an adult-sized joint (x to the patient's left, so
medial for a right limb; y posterior; z superior). The generator scales it to the simulated age,
mirrors it for a left limb and poses it in the scanner. Distances returned by ``Sdf`` functions
are in the same adult millimetres; the generator converts them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .shapes import Points

Sdf = Callable[[Points], np.ndarray]
Bounds = tuple[tuple[float, float, float], tuple[float, float, float]]  # (low corner, high corner)


@dataclass(frozen=True)
class Physis:
    """A growth plate: ``side`` is the signed distance to its mid-surface, negative on the
    epiphysis side; ``thickness`` in real mm. Closed plates leave no gap (``open`` False)."""

    side: Sdf
    thickness: float
    open: bool


@dataclass(frozen=True)
class BoneModel:
    """One bone. ``key``: catalog bone key, or None for a bone that is imaged but not labeled.
    ``cartilage``: real-mm thickness of its articular/epiphyseal cartilage cap, laid where
    ``articular`` is negative. ``cortex``: real-mm cortical thickness near the joint, plus
    ``shaft_cortex`` where ``shaft`` (0..1) says the bone is diaphysis."""

    key: str | None
    sdf: Sdf
    bounds: Bounds
    cortex: float
    cartilage: float
    articular: Sdf | None
    physes: tuple[Physis, ...] = ()
    shaft: Callable[[Points], np.ndarray] | None = None
    shaft_cortex: float = 0.0
    red_marrow: float = 0.0  # fraction of haematopoietic marrow in the metaphysis (young bones)


@dataclass(frozen=True)
class SoftStructure:
    """A non-bone structure drawn above muscle: tendon, ligament, meniscus, fat pad, fluid..."""

    tissue: str
    sdf: Sdf
    bounds: Bounds


@dataclass(frozen=True)
class JointModel:
    """Everything the generator renders for one joint.

    ``body``: skin surface. ``fov_center``: centre of the field of view (adult frame).
    ``fov_inplane``: real-mm in-plane field of view; ``slab``: real-mm coverage along the slices.
    ``landmarks`` (generator 2.0): name -> (index of the bone in ``bones``, (N, 3) points of that
    bone's frame) from which the ground truth of the measurements is computed; ``hinge_center``:
    the joint's hinge turns about this point instead of its default centre (the subluxed head).
    """

    bones: tuple[BoneModel, ...]
    soft: tuple[SoftStructure, ...]
    body: Sdf
    skin: float
    fat: float
    fov_center: tuple[float, float, float]
    fov_inplane: float
    slab: float
    slice_thickness: tuple[float, float]
    pixel_spacing: tuple[float, float]
    landmarks: dict[str, tuple[int, np.ndarray]] = field(default_factory=dict)
    hinge_center: tuple[float, float, float] | None = None


def bounds_around(center: tuple[float, float, float], half: tuple[float, float, float]) -> Bounds:
    return (
        (center[0] - half[0], center[1] - half[1], center[2] - half[2]),
        (center[0] + half[0], center[1] + half[1], center[2] + half[2]),
    )


@dataclass(frozen=True)
class Growth:
    """Age-dependent sizes. ``scale``: joint size relative to the adult-sized frame;
    ``cartilage`` and ``physis``: real-mm thicknesses; physes close at ``closure_age``."""

    age: float
    scale: float
    cartilage: float
    physis: float
    closure_age: float

    @classmethod
    def draw(cls, age: float, rng: np.random.Generator) -> Growth:
        size = 0.43 + 0.57 * np.clip((age - 2.0) / 15.0, 0.0, 1.0) ** 0.8
        size *= float(np.clip(rng.normal(1.0, 0.05), 0.9, 1.1))
        young = float(np.clip((11.0 - age) / 9.0, 0.0, 1.0))
        return cls(
            age=age,
            scale=float(size),
            cartilage=1.8 + 3.2 * young + float(rng.uniform(-0.2, 0.2)),
            physis=2.6 - 0.8 * float(np.clip((age - 8.0) / 6.0, 0.0, 1.0)),
            closure_age=float(rng.uniform(13.0, 15.5)),
        )

    def is_open(self, offset: float = 0.0) -> bool:
        return self.age < self.closure_age + offset

    @property
    def red_marrow(self) -> float:
        """Fraction of red (haematopoietic) marrow left in metaphyses."""
        return float(np.clip(0.8 - self.age / 20.0, 0.0, 1.0))

    def joint_shift(self, adult_gap: float) -> float:
        """Extra adult-frame distance to move two facing bones apart so that their (real-mm)
        cartilage caps fit: thick epiphyseal cartilage keeps young ossification centres apart."""
        return max(0.0, (2.0 * self.cartilage + 0.8) / self.scale - adult_gap)
