"""What a clinical measurement is: its definition (sentence, reference, units), its value or the
reason it could not be measured, and the landmarks it was computed from (patient LPS mm), so the
viewer can show where it comes from."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Definition:
    """One measure. ``bones``: the bones it needs (catalog keys); ``complete``: those of them that
    must lie wholly inside the field of view (a long bone only needs its joint end); ``needs``:
    the landmarks (names in its joint module) it is computed from; ``plane``: the patient plane
    closest to the one it is read in, where the QC picture draws its landmarks; ``sided_by``: a
    bone that only tells which side is lateral (its shape is not measured): it must be present,
    and when its segmentation is judged unreliable the value is still given, marked "check"
    (below ``SIDE_QUALITY_FLOOR`` it tells no side)."""

    key: str
    joint: str | None  # None: measured for every long bone (growth plates)
    name: str
    unit: str
    definition: str
    reference: str
    bones: tuple[str, ...]
    complete: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()  # a categorical measure: its value indexes these words
    plane: str = ""  # the patient plane it is read in (axial, coronal, sagittal): where qc.png draws it
    sided_by: str = ""


@dataclass
class Measurement:
    """A measure of one case. ``value`` None means not measurable, and ``reason`` says why (bone
    missing, cut by the field of view, unreliable segmentation, not found); a value with a
    ``reason`` is to be checked (status "check"), the reason says why. ``landmarks``: name ->
    (N, 3) LPS mm points used (one point, a line's two ends, an angle's three points); ``bone``:
    the long bone of a growth-plate measure."""

    definition: Definition
    value: float | None
    reason: str = ""
    landmarks: dict[str, np.ndarray] = field(default_factory=dict)
    bone: str | None = None

    @property
    def key(self) -> str:
        return self.definition.key if self.bone is None else f"{self.bone}_{self.definition.key}"

    @property
    def measurable(self) -> bool:
        return self.value is not None

    @property
    def text(self) -> str:
        """The value for people: "12.3 deg", "open", or "not measurable: <reason>"."""
        if self.value is None:
            return f"not measurable: {self.reason}"
        if self.definition.categories:
            shown = self.definition.categories[round(self.value)]
        else:
            shown = f"{self.value:.1f} {self.definition.unit}"
        return f"{shown} (check: {self.reason})" if self.reason else shown

    @property
    def status(self) -> str:
        """The status for people and files: ok, check (a value, with a reason to doubt it) or not measurable."""
        if self.value is None:
            return "not measurable"
        return "check" if self.reason else "ok"

    def to_json(self) -> dict:
        d = self.definition
        return {
            "key": self.key,
            "name": d.name if self.bone is None else f"{d.name} ({self.bone})",
            "value": None if self.value is None else round(float(self.value), 3),
            "unit": d.unit,
            "text": self.text,
            "status": self.status,
            "reason": self.reason,
            "definition": d.definition,
            "reference": d.reference,
            "landmarks_lps_mm": {name: np.round(points, 2).tolist() for name, points in self.landmarks.items()},
        }


def points_by_measure(
    definitions: tuple[Definition, ...], landmarks: dict[str, np.ndarray]
) -> dict[str, dict[str, np.ndarray]]:
    """Per measure whose landmarks (``needs``) are all present: those landmarks as (N, 3) LPS point
    arrays, the points its ``POINT_FUNCTIONS`` entry reads and the viewer shows."""
    return {
        d.key: {name: np.atleast_2d(np.asarray(landmarks[name], float)) for name in d.needs}
        for d in definitions
        if all(name in landmarks for name in d.needs)
    }


class NotMeasurable(Exception):  # noqa: N818 - a verdict, not a failure of the program
    """Raised by a landmark finder: the reason becomes the measurement's ``reason``."""


def unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if norm < 1e-9:
        raise NotMeasurable("degenerate geometry (zero-length axis)")
    return np.asarray(vector, float) / norm


def project(vector: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """``vector`` projected on the plane of unit ``normal``."""
    vector = np.asarray(vector, float)
    return vector - float(vector @ normal) * normal


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Unsigned angle between two vectors, degrees."""
    cos = float(unit(a) @ unit(b))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


SUPERIOR = np.array([0.0, 0.0, 1.0])  # LPS: +z is the patient's head
ANTERIOR = np.array([0.0, -1.0, 0.0])  # LPS: +y is posterior
