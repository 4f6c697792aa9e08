"""Clinical MR protocols of generator 2.0: the contrast family, field strength and acquisition of
one case, drawn per case for every joint.

Signal ranges are relative (1.0 = the brightest tissue of a protocol) and follow the tissues'
usual appearance: T1 bright fat and yellow marrow, dark fluid; T2 bright fluid, intermediate fat;
PD intermediate-bright everything, bright fat; fat suppression (and STIR) darkens fat and yellow
marrow and leaves red marrow intermediate; 3D gradient echo (DESS / FLASH / VIBE, water
excitation or not) gives bright cartilage and fluid and darkened marrow (trabecular
susceptibility).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from PediatricBoneSegLib.catalog import get_joint

from .appearance import TISSUES
from .scanner import DIRECTIONS

Range = tuple[float, float]

_COMMON: dict[str, Range] = {"air": (0.0, 0.0), "cortex": (0.0, 0.05), "tendon": (0.0, 0.08)}

SIGNAL_RANGES: dict[str, dict[str, Range]] = {
    "T1": {
        "skin": (0.35, 0.55),
        "fat": (0.85, 1.0),
        "muscle": (0.25, 0.40),
        "cartilage": (0.30, 0.45),
        "physis": (0.25, 0.40),
        "marrow": (0.75, 0.95),
        "red_marrow": (0.35, 0.55),
        "fluid": (0.08, 0.22),
        "vessel": (0.05, 0.30),
    },
    "T1_FS": {
        "skin": (0.30, 0.50),
        "fat": (0.04, 0.14),
        "muscle": (0.35, 0.50),
        "cartilage": (0.50, 0.70),
        "physis": (0.40, 0.60),
        "marrow": (0.05, 0.15),
        "red_marrow": (0.22, 0.38),
        "fluid": (0.15, 0.30),
        "vessel": (0.05, 0.40),
    },
    "T2": {
        "skin": (0.30, 0.50),
        "fat": (0.55, 0.80),
        "muscle": (0.12, 0.26),
        "cartilage": (0.25, 0.45),
        "physis": (0.50, 0.75),
        "marrow": (0.50, 0.75),
        "red_marrow": (0.32, 0.50),
        "fluid": (0.90, 1.0),
        "vessel": (0.05, 0.50),
    },
    "T2_FS": {
        "skin": (0.25, 0.45),
        "fat": (0.04, 0.14),
        "muscle": (0.12, 0.28),
        "cartilage": (0.30, 0.50),
        "physis": (0.60, 0.85),
        "marrow": (0.05, 0.15),
        "red_marrow": (0.22, 0.42),
        "fluid": (0.90, 1.0),
        "vessel": (0.05, 0.50),
    },
    "PD": {
        "skin": (0.40, 0.60),
        "fat": (0.80, 1.0),
        "muscle": (0.28, 0.42),
        "cartilage": (0.50, 0.70),
        "physis": (0.55, 0.75),
        "marrow": (0.72, 0.92),
        "red_marrow": (0.45, 0.60),
        "fluid": (0.60, 0.85),
        "vessel": (0.05, 0.40),
    },
    "PD_FS": {
        "skin": (0.30, 0.45),
        "fat": (0.08, 0.18),
        "muscle": (0.25, 0.40),
        "cartilage": (0.50, 0.70),
        "physis": (0.65, 0.85),
        "marrow": (0.10, 0.22),
        "red_marrow": (0.30, 0.50),
        "fluid": (0.85, 1.0),
        "vessel": (0.05, 0.40),
    },
    "STIR": {
        "skin": (0.25, 0.45),
        "fat": (0.02, 0.10),
        "muscle": (0.15, 0.30),
        "cartilage": (0.30, 0.50),
        "physis": (0.60, 0.90),
        "marrow": (0.03, 0.12),
        "red_marrow": (0.30, 0.50),
        "fluid": (0.90, 1.0),
        "vessel": (0.05, 0.50),
    },
    "GRE": {
        "skin": (0.30, 0.50),
        "fat": (0.10, 0.80),
        "muscle": (0.20, 0.40),
        "cartilage": (0.70, 0.95),
        "physis": (0.60, 0.90),
        "marrow": (0.08, 0.45),
        "red_marrow": (0.20, 0.45),
        "fluid": (0.75, 1.0),
        "vessel": (0.30, 0.90),
    },
}
for _table in SIGNAL_RANGES.values():
    _table.update(_COMMON)
FAMILIES = tuple(SIGNAL_RANGES)
FAT_SUPPRESSED = frozenset({"T1_FS", "T2_FS", "PD_FS", "STIR"})
MAX_VOXELS = 8_000_000  # generation time and memory: a finer 3D grid gets larger voxels
MAX_MATRIX = 512


@dataclass(frozen=True)
class Protocol:
    """One case's acquisition. Lengths in mm, angles in degrees. ``pixel``: in-plane spacing;
    ``thickness``: slice thickness (the partial-volume extent); ``spacing``: slice spacing
    (``thickness`` plus the gap; equal to it in 3D); ``tilt``: rotation of the slice stack's
    direction cosines away from the pure plane (an oblique acquisition)."""

    family: str
    field_strength: float  # tesla
    acquisition: str  # "2D" or "3D"
    plane: str
    pixel: float
    thickness: float
    spacing: float
    tilt: tuple[float, float, float]

    def to_json(self) -> dict:
        return {**asdict(self), "tilt": list(self.tilt), "fat_suppressed": self.family in FAT_SUPPRESSED}


def draw_signals(family: str, rng: np.random.Generator) -> dict[str, float]:
    """Relative signal of every tissue, each drawn within its protocol's range."""
    table = SIGNAL_RANGES[family]
    return {tissue: float(rng.uniform(*table[tissue])) for tissue in TISSUES}


def draw_protocol(
    joint: str, fov_inplane: float, slab: float, rng: np.random.Generator, family: str | None = None
) -> Protocol:
    """A protocol for ``joint``: ``family`` if given, else one of ``FAMILIES`` uniformly; 3D for
    most gradient-echo cases and some others; the usual plane in 60 % of cases."""
    drawn_family = FAMILIES[int(rng.integers(len(FAMILIES)))]
    family = family if family is not None else drawn_family
    if family not in SIGNAL_RANGES:
        raise ValueError(f"unknown protocol family {family!r}; choose one of {', '.join(FAMILIES)}")
    field_strength = 3.0 if rng.random() < 0.5 else 1.5
    three_d = rng.random() < (0.8 if family == "GRE" else 0.15)
    usual = get_joint(joint).usual_plane
    others = [p for p in DIRECTIONS if p != usual]
    plane = usual if rng.random() < 0.6 else others[int(rng.integers(2))]
    tilt = np.clip(rng.normal(0.0, 6.0, 3), -15.0, 15.0) if rng.random() < 0.5 else np.zeros(3)
    if three_d:
        thickness = float(rng.uniform(0.4, 1.0))
        pixel = thickness * float(rng.uniform(0.8, 1.0))
        spacing = thickness
    else:
        pixel = float(rng.uniform(0.25, 0.8))
        thickness = float(rng.uniform(2.0, 5.0))
        spacing = thickness * (1.0 + (float(rng.uniform(0.0, 0.3)) if rng.random() < 0.5 else 0.0))
    pixel = max(pixel, fov_inplane / MAX_MATRIX)
    voxels = (fov_inplane / pixel) ** 2 * slab / spacing
    if voxels > MAX_VOXELS:
        grow = (voxels / MAX_VOXELS) ** (1.0 / 3.0)
        pixel, thickness, spacing = pixel * grow, thickness * grow, spacing * grow
    acquisition = "3D" if three_d else "2D"
    return Protocol(family, field_strength, acquisition, plane, pixel, thickness, spacing, tuple(map(float, tilt)))


def noise_fraction(protocol: Protocol, rng: np.random.Generator) -> float:
    """Rician sigma as a fraction of the brightest tissue: higher at 1.5 T and in small voxels
    (SNR grows with the voxel volume; 3D sequences average over many partitions)."""
    reference = 0.25 if protocol.acquisition == "3D" else 0.75  # mm^3 of a typical voxel
    volume = protocol.pixel**2 * protocol.thickness
    sigma = float(rng.uniform(0.012, 0.035)) * (1.6 if protocol.field_strength < 2.0 else 1.0)
    return float(np.clip(sigma * np.sqrt(reference / volume), 0.006, 0.15))
