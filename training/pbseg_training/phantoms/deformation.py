"""Anatomical variation of generator 2.0 as coordinate warps of the adult frame: smooth random
shape deformations (per bone and of the whole limb) and the joint's flexion about its hinge.

A structure is rendered by evaluating its signed-distance function at warped coordinates, so the
image, the labels and the tissue map stay consistent; warps are smooth and small against their
wavelength, so the fields stay close to distances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import Bounds
from .shapes import Points


@dataclass(frozen=True)
class SmoothWarp:
    """Displacement d(p) = sum_m amplitude_m * sin(frequency_m . p + phase_m) (adult mm)."""

    amplitudes: np.ndarray  # [modes, 3]
    frequencies: np.ndarray  # [modes, 3], radians per mm
    phases: np.ndarray  # [modes]

    @classmethod
    def draw(cls, rng: np.random.Generator, amplitude: float, wavelength: tuple[float, float], modes: int = 3):
        directions = rng.normal(size=(modes, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        frequencies = directions * (2 * np.pi / rng.uniform(*wavelength, (modes, 1)))
        amplitudes = rng.normal(size=(modes, 3)) * (amplitude / np.sqrt(3 * modes))
        return cls(amplitudes.astype(np.float32), frequencies.astype(np.float32), rng.uniform(0, 2 * np.pi, modes))

    @property
    def size(self) -> float:
        """Root-mean-square displacement in mm."""
        return float(np.sqrt((self.amplitudes**2).sum() / 2))

    def __call__(self, p: Points) -> Points:
        out = [c.copy() for c in p]
        for amplitude, frequency, phase in zip(self.amplitudes, self.frequencies, self.phases):
            wave = np.sin(p[0] * frequency[0] + p[1] * frequency[1] + p[2] * frequency[2] + np.float32(phase))
            for axis in range(3):
                out[axis] += amplitude[axis] * wave
        return tuple(out)  # type: ignore[return-value]


@dataclass(frozen=True)
class Hinge:
    """A joint's main rotation. Bones whose bounds centre lies on the side of the plane through
    ``plane_point`` that ``plane_normal`` points to are distal and turn by the whole angle about
    the axis through ``center``; soft tissue and the body follow with a weight that ramps up over
    ``blend`` mm across that plane (when ``soft_follow``). Angles in degrees."""

    center: tuple[float, float, float]
    axis: tuple[float, float, float]
    plane_point: tuple[float, float, float]
    plane_normal: tuple[float, float, float]
    angles: tuple[float, float]
    soft_follow: bool
    blend: float = 25.0

    def is_distal(self, bounds: Bounds) -> bool:
        centre = (np.asarray(bounds[0]) + np.asarray(bounds[1])) / 2
        return float((centre - np.asarray(self.plane_point)) @ np.asarray(self.plane_normal)) > 0

    def soft_weight(self, p: Points) -> np.ndarray | float:
        if not self.soft_follow:
            return 0.0
        n = np.asarray(self.plane_normal, np.float32)
        side = sum((p[a] - np.float32(self.plane_point[a])) * n[a] for a in range(3))
        return np.clip(0.5 + side / np.float32(self.blend), 0.0, 1.0)

    def rotate(self, p: Points, angle_deg: float, weight: np.ndarray | float = 1.0) -> Points:
        """Coordinates at which to evaluate the unflexed anatomy so that it appears turned by
        ``weight * angle_deg``: the inverse rotation (Rodrigues) about the hinge axis."""
        if angle_deg == 0.0 or (np.isscalar(weight) and weight == 0.0):
            return p
        k = np.asarray(self.axis, np.float32) / np.linalg.norm(self.axis)
        theta = -np.radians(angle_deg) * weight
        cos, sin = np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)
        v = [p[a] - np.float32(self.center[a]) for a in range(3)]
        dot = v[0] * k[0] + v[1] * k[1] + v[2] * k[2]
        cross = (k[1] * v[2] - k[2] * v[1], k[2] * v[0] - k[0] * v[2], k[0] * v[1] - k[1] * v[0])
        return tuple(  # type: ignore[return-value]
            np.float32(self.center[a]) + v[a] * cos + cross[a] * sin + k[a] * dot * (1 - cos) for a in range(3)
        )


HINGES = {
    # Knee flexion: tibia and fibula turn about the femoral condyles' centre (posterior = +y).
    "knee": Hinge((0.0, 8.0, 20.0), (1.0, 0.0, 0.0), (0.0, 0.0, -4.0), (0.0, 0.0, -1.0), (0.0, 30.0), True),
    # Ankle dorsi/plantar flexion: the foot turns about the talar dome's centre.
    "ankle": Hinge((0.0, 6.0, -16.0), (1.0, 0.0, 0.0), (0.0, 0.0, -8.0), (0.0, 0.0, -1.0), (-20.0, 20.0), True),
    # Shoulder internal/external rotation: the humerus turns about its shaft through the head.
    "shoulder": Hinge((-24.0, 2.0, 2.0), (0.0, 0.0, 1.0), (-10.0, 0.0, 0.0), (-1.0, 0.0, 0.0), (-35.0, 35.0), False),
}
