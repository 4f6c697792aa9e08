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
        """A wrong type is a programming error, refused here with one ``TypeError`` naming the
        option, instead of an AttributeError deep in the pipeline."""
        expected: dict[str, tuple[type, ...]] = {
            "joint": (str,),
            "model_path": (str, Path, type(None)),
            "device": (str,),
            "postprocess": (bool,),
            "precision": (str,),
            "batch_size": (int,),
        }
        for name, types in expected.items():
            value = getattr(self, name)
            if not isinstance(value, types) or (types == (int,) and isinstance(value, bool)):
                wanted = " or ".join("None" if t is type(None) else t.__name__ for t in types)
                raise TypeError(f"SegmentOptions.{name} must be {wanted}, got {type(value).__name__} {value!r}")

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
        if not isinstance(self.segment, SegmentOptions):
            raise TypeError(f"CaseOptions.segment must be SegmentOptions, got {type(self.segment).__name__}")
        if not isinstance(self.surfaces, bool):
            raise TypeError(f"surfaces must be True or False, got {type(self.surfaces).__name__} {self.surfaces!r}")
        if isinstance(self.smoothing, bool) or not isinstance(self.smoothing, (int, float)):
            raise TypeError(f"smoothing must be a number in [0, 1], got {type(self.smoothing).__name__}")
        if not isinstance(self.surface_format, str):
            raise TypeError(f"surface_format must be str, got {type(self.surface_format).__name__}")

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
