"""The joint catalog: the single source of truth for joints, bones, labels, names, colors and codes.

Nothing else in the project spells a bone name or a label number. Label values of a joint are the
1-based positions of its bones (0 is background); the *union* bone space numbers the eight distinct
bones of all joints (the tibia of the ankle and of the knee is one bone) and serves the multi-joint
shape prior and the fully shared baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

SNOMED_SCHEME = "SCT"
ANATOMICAL_STRUCTURE_CODE = ("123037004", "Anatomical Structure")


@dataclass(frozen=True)
class Bone:
    """One bone type. ``volume_range_ml`` is the plausible volume of the part of the bone that a
    joint MR of a 2–17-year-old shows (min, max), used to flag implausible segmentations."""

    key: str
    display_name: str
    color: tuple[int, int, int]
    snomed_code: str
    volume_range_ml: tuple[float, float]

    @property
    def color_float(self) -> tuple[float, float, float]:
        """Color as RGB floats in [0, 1] (VTK / MRML convention)."""
        return tuple(channel / 255.0 for channel in self.color)  # type: ignore[return-value]

    @property
    def terminology(self) -> str:
        """Slicer terminology entry string (``vtkSegment.SetTerminology``)."""
        category = f"{SNOMED_SCHEME}^{ANATOMICAL_STRUCTURE_CODE[0]}^{ANATOMICAL_STRUCTURE_CODE[1]}"
        bone_type = f"{SNOMED_SCHEME}^{self.snomed_code}^{self.display_name}"
        return (
            "Segmentation category and type - DICOM master list"
            f"~{category}~{bone_type}~^^~Anatomic codes - DICOM master list~^^~^^"
        )


@dataclass(frozen=True)
class Joint:
    """A joint: its bones in label order and the plane in which it is usually imaged."""

    key: str
    display_name: str
    bones: tuple[Bone, ...]
    usual_plane: str  # "sagittal", "coronal" or "axial": slicing plane of near-isotropic volumes

    @property
    def num_classes(self) -> int:
        """Bones + background."""
        return len(self.bones) + 1

    def label_of(self, bone_key: str) -> int:
        for index, bone in enumerate(self.bones):
            if bone.key == bone_key:
                return index + 1
        raise KeyError(f"{bone_key!r} is not a bone of the {self.key}")

    @property
    def labels(self) -> dict[str, int]:
        """``{"background": 0, bone key: label, ...}`` as written to ``dataset.json``."""
        return {"background": 0, **{bone.key: i + 1 for i, bone in enumerate(self.bones)}}

    def to_union(self) -> list[int]:
        """Lookup table: joint label -> union label (index 0 is background)."""
        return [0] + [union_label(bone.key) for bone in self.bones]


_BONES = {
    bone.key: bone
    for bone in (
        Bone("femur", "Femur", (241, 214, 145), "71341001", (8.0, 600.0)),
        Bone("tibia", "Tibia", (177, 122, 101), "12611008", (4.0, 450.0)),
        Bone("fibula", "Fibula", (111, 184, 210), "87342007", (0.3, 60.0)),
        Bone("patella", "Patella", (216, 101, 79), "64234005", (0.2, 45.0)),
        Bone("talus", "Talus", (183, 156, 220), "67453005", (1.0, 70.0)),
        Bone("calcaneus", "Calcaneus", (252, 208, 170), "80144004", (1.5, 120.0)),
        Bone("humerus", "Humerus", (230, 220, 70), "85050009", (4.0, 400.0)),
        Bone("scapula", "Scapula", (144, 238, 144), "79601000", (3.0, 250.0)),
    )
}

UNION_BONES: tuple[Bone, ...] = tuple(_BONES.values())
"""The eight distinct bones; union label = position + 1."""

JOINTS: dict[str, Joint] = {
    joint.key: joint
    for joint in (
        Joint("ankle", "Ankle", tuple(_BONES[k] for k in ("calcaneus", "talus", "tibia")), "sagittal"),
        Joint("knee", "Knee", tuple(_BONES[k] for k in ("femur", "tibia", "patella", "fibula")), "sagittal"),
        Joint("shoulder", "Shoulder", tuple(_BONES[k] for k in ("humerus", "scapula")), "coronal"),
    )
}

JOINT_KEYS: tuple[str, ...] = tuple(JOINTS)


def get_joint(key: str) -> Joint:
    """The joint named ``key`` (case-insensitive); a clear error lists the known joints."""
    try:
        return JOINTS[key.lower()]
    except KeyError:
        raise ValueError(f"unknown joint {key!r}; known joints: {', '.join(JOINT_KEYS)}") from None


def get_bone(key: str) -> Bone:
    try:
        return _BONES[key]
    except KeyError:
        raise ValueError(f"unknown bone {key!r}; known bones: {', '.join(_BONES)}") from None


def union_label(bone_key: str) -> int:
    """Label of a bone in the union bone space (1..8)."""
    return list(_BONES).index(get_bone(bone_key).key) + 1


NUM_UNION_CLASSES = len(UNION_BONES) + 1


RELATIVE_POSITIONS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "ankle": (("tibia", "superior", "talus"), ("talus", "superior", "calcaneus")),
    "knee": (("femur", "superior", "tibia"), ("femur", "superior", "fibula"), ("patella", "anterior", "femur")),
    "shoulder": (),  # humerus vs scapula depends on the side and arm pose: no robust rule
}
"""Relations that hold in every MR of a joint: (bone, direction, other bone) means the centroid of
``bone`` lies toward ``direction`` ("superior" or "anterior") of the centroid of ``other bone``.
Used to flag anatomically impossible segmentations."""
