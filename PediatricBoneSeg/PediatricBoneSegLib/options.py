"""The options of a case, validated in one place for every front end (the command line, the Slicer
logic and the Slicer panel's button), without importing PyTorch: a wrong type is a ``TypeError``
naming the option at construction, every invalid value a line of ``problems()``."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from .catalog import JOINT_KEYS

SURFACE_FORMATS = ("stl", "obj", "vtp", "ply")
SMOOTHING_ITERATIONS = 30  # windowed-sinc iterations at smoothing 1 (the default 0.5 gives 15)


def _cuda_available() -> bool:
    """Whether PyTorch sees a CUDA GPU (False when PyTorch is not installed: the panel's dependency
    check says so)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def _check_types(options: object, expected: dict[str, tuple[tuple[type, ...], str]]) -> None:
    """A wrong type is a programming error, refused at construction with one ``TypeError`` naming
    the option, instead of an AttributeError deep in the pipeline. ``True`` is no number here."""
    for name, (types, wanted) in expected.items():
        value = getattr(options, name)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            kind = type(options).__name__
            raise TypeError(f"{kind}.{name} must be {wanted}, got {type(value).__name__} {value!r}")


@dataclass
class SegmentOptions:
    """``joint``: "auto" or a joint key; ``model_path``: None for the bundled model; ``device``:
    "auto" (CUDA if available, else CPU), "cpu", "cuda" or "cuda:<n>"; ``precision``: "auto"
    (bf16/fp16 where the hardware computes it natively, else fp32: see ``acceleration``), "fp32",
    "bf16" or "fp16"; ``batch_size``: slices per forward pass."""

    joint: str = "auto"
    model_path: str | Path | None = None
    device: str = "auto"
    postprocess: bool = True
    precision: str = "auto"
    batch_size: int = 16

    def __post_init__(self) -> None:
        _check_types(
            self,
            {
                "joint": ((str,), "str"),
                "model_path": ((str, Path, type(None)), "str or Path or None"),
                "device": ((str,), "str"),
                "postprocess": ((bool,), "bool"),
                "precision": ((str,), "str"),
                "batch_size": ((int,), "int"),
            },
        )

    def problems(self) -> list[str]:
        """Every reason these options are invalid (empty when valid)."""
        found = []
        if self.joint != "auto" and self.joint.lower() not in JOINT_KEYS:
            found.append(f"unknown joint {self.joint!r} (auto, {', '.join(JOINT_KEYS)})")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            found.append(f"unknown device {self.device!r} ({', '.join(DEVICES)})")
        elif self.device.startswith("cuda") and not _cuda_available():
            found.append("device cuda was requested but no CUDA GPU is available to PyTorch")
        if self.precision not in PRECISIONS:
            found.append(f"unknown precision {self.precision!r} ({', '.join(PRECISIONS)})")
        if self.batch_size < 1:
            found.append(f"batch size must be at least 1, got {self.batch_size}")
        if self.model_path is not None and Path(self.model_path).is_dir():
            found.append(f"model file {self.model_path} is a folder; give the .safetensors file")
        elif self.model_path is not None and not Path(self.model_path).is_file():
            found.append(f"model file {self.model_path} not found")
        return found


class IfExists(Enum):
    """What to do when a case folder of that name exists: fail (``pbseg segment``'s default),
    replace it (``--overwrite``; only an earlier pbseg case folder), or take the next free name
    ``<case>_2``, ``<case>_3``... (Slicer's export, which never replaces)."""

    FAIL = "fail"
    REPLACE = "replace"
    NEW_NAME = "new-name"


@dataclass
class CaseOptions:
    """``segment``: the network stage's options. ``surfaces``: build one closed mesh per bone.
    ``smoothing``: mesh smoothing in [0, 1] (0: the voxel staircase's isosurface). ``surface_format``:
    mesh file format of the case folder."""

    segment: SegmentOptions = field(default_factory=SegmentOptions)
    surfaces: bool = True
    smoothing: float = 0.5
    surface_format: str = "stl"

    def __post_init__(self) -> None:
        _check_types(
            self,
            {
                "segment": ((SegmentOptions,), "SegmentOptions"),
                "surfaces": ((bool,), "True or False"),
                "smoothing": ((int, float), "a number in [0, 1]"),
                "surface_format": ((str,), "str"),
            },
        )

    def problems(self) -> list[str]:
        """Every reason these options are invalid (empty when valid)."""
        found = self.segment.problems()
        if not 0.0 <= self.smoothing <= 1.0:
            found.append(f"smoothing must be between 0 and 1, got {self.smoothing}")
        if self.surface_format not in SURFACE_FORMATS:
            found.append(f"unknown surface format {self.surface_format!r} ({', '.join(SURFACE_FORMATS)})")
        return found

    @property
    def smoothing_iterations(self) -> int:
        return round(SMOOTHING_ITERATIONS * self.smoothing)
