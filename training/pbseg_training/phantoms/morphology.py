"""Generator 2.0's clinical morphology: the quantities that define the joint measurements, drawn
per case over the range seen in children (healthy and pathological), and handed to the builders.

Shoulder: glenoid version from healthy (about -5 deg) to the retroversion of obstetric brachial
plexus palsy (down to -40 deg) with posterior subluxation of the humeral head, glenoid
inclination. Knee: trochlear facet slopes from normal (sulcus ~138 deg) to dysplastic (~165 deg,
shallow groove), tibial tubercle lateralization, patellar tilt. Ankle: the calcaneus turned
about the subtalar joint (pitch and divergence change both talocalcaneal angles). Growth plates
open or closed by age come from ``anatomy.Growth``. Drawn from a stream of their own, so the other
draws of a case stay as they were. Adult-frame degrees and millimetres.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ShoulderMorphology:
    version_deg: float  # glenoid face vs the lateral scapular axis; negative = retroversion
    inclination_deg: float  # face tilted superiorly
    subluxation: float  # posterior head translation, fraction of the head radius
    palsy: bool


@dataclass(frozen=True)
class KneeMorphology:
    dysplasia: float  # 0 normal .. 1 flat trochlea
    lateral_facet_deg: float  # slope of each trochlear facet from the mediolateral axis
    medial_facet_deg: float
    groove_depth: float  # adult mm of the groove apex behind the trochlea's front
    tubercle_lateral_mm: float  # adult mm of the tibial tubercle lateral of the groove
    patellar_tilt_deg: float  # positive = lateral tilt (medial edge anterior)


@dataclass(frozen=True)
class AnkleMorphology:
    calcaneus_pitch_deg: float  # turn about the mediolateral axis (sagittal talocalcaneal angle)
    calcaneus_divergence_deg: float  # turn about the vertical axis (axial talocalcaneal angle)


Morphology = ShoulderMorphology | KneeMorphology | AnkleMorphology


def draw_morphology(joint: str, rng: np.random.Generator, pathology: bool | None = None) -> Morphology:
    """The case's morphology. ``pathology``: None draws healthy and pathological cases as children
    present them; True forces the pathological range (brachial plexus palsy, trochlear dysplasia,
    a calcaneus turned far from neutral), False the typical one (a cohort's shift test)."""
    if joint == "shoulder":
        palsy = bool(rng.random() < 0.5) if pathology is None else pathology
        if palsy:
            version, subluxation = rng.uniform(-40.0, -12.0), rng.uniform(0.05, 0.35)
        else:
            version, subluxation = rng.uniform(-10.0, 2.0), rng.uniform(0.0, 0.08)
        return ShoulderMorphology(float(version), float(rng.uniform(-2.0, 12.0)), float(subluxation), palsy)
    if joint == "knee":
        if pathology is None:
            dysplasia = float(rng.uniform(0.0, 1.0) ** 1.5)  # most trochleae are normal
        else:
            dysplasia = float(rng.uniform(0.6, 1.0) if pathology else rng.uniform(0.0, 0.25))
        return KneeMorphology(
            dysplasia=dysplasia,
            lateral_facet_deg=24.0 - 14.0 * dysplasia + float(rng.uniform(-2.0, 2.0)),
            medial_facet_deg=18.0 - 10.0 * dysplasia + float(rng.uniform(-2.0, 2.0)),
            groove_depth=5.0 - 2.5 * dysplasia,
            tubercle_lateral_mm=float(rng.uniform(4.0, 20.0)),
            patellar_tilt_deg=float(rng.uniform(-4.0, 8.0) + 12.0 * dysplasia),
        )
    if pathology is None:
        return AnkleMorphology(float(rng.uniform(-8.0, 8.0)), float(rng.uniform(-10.0, 10.0)))
    if not pathology:
        return AnkleMorphology(float(rng.uniform(-4.0, 4.0)), float(rng.uniform(-5.0, 5.0)))
    signs = np.where(rng.random(2) < 0.5, -1.0, 1.0)
    return AnkleMorphology(float(signs[0] * rng.uniform(8.0, 14.0)), float(signs[1] * rng.uniform(10.0, 16.0)))


def to_json(morphology: Morphology) -> dict:
    return asdict(morphology)


def axis_rotation(axis: str, degrees: float) -> np.ndarray:
    """Right-handed rotation about the frame's ``axis`` ("x", "y" or "z")."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r
