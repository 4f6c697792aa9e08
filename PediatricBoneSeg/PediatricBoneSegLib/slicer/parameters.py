"""The module's inputs as one plain object that can say why it is not ready to run.

The widget keeps its state in a ``parameterNodeWrapper`` with the same field names (saved with the
scene); ``SegmentParameters.fromObject`` reads it, ``problems()`` explains what blocks the
"Segment bones" button, and ``logicArguments()`` gives the keyword arguments of
``PediatricBoneSegLogic.segment``. Choices are the labels the user sees; the catalog names the joints.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..catalog import JOINT_KEYS, JOINTS
from ..options import CaseOptions, SegmentOptions

AUTO = "Auto"
JOINT_CHOICES: tuple[str, ...] = (AUTO, *(JOINTS[key].display_name for key in JOINT_KEYS))
DEVICE_CHOICES: dict[str, str] = {AUTO: "auto", "CPU": "cpu", "GPU": "cuda"}


@dataclass
class SegmentParameters:
    """``inputVolume``: a vtkMRMLScalarVolumeNode or None. ``joint``/``device``: one of
    ``JOINT_CHOICES``/``DEVICE_CHOICES``. ``modelPath`` is used when ``useBundledModel`` is off.
    ``smoothing``: surface smoothing in [0, 1] (``pbseg segment --smoothing``). ``exportFolder`` is used when
    ``export`` is on."""

    inputVolume: Any = None
    joint: str = AUTO
    useBundledModel: bool = True
    modelPath: Path | None = None
    device: str = AUTO
    postprocess: bool = True
    surfaces: bool = True
    smoothing: float = 0.5
    export: bool = False
    exportFolder: Path | None = None

    @classmethod
    def fromObject(cls, source: Any) -> SegmentParameters:
        """Read the fields of the same name from ``source`` (e.g. the widget's parameter node)."""
        return cls(**{field.name: getattr(source, field.name) for field in fields(cls)})

    def problems(self) -> list[str]:
        """Every reason these parameters cannot run (empty when they can): the panel's own (a
        volume, valid choices, a selected file or folder), then the case options' validation,
        the very one ``PediatricBoneSegLogic.segment`` applies."""
        found = []
        volume = self.inputVolume
        if volume is None:
            found.append("Select an input volume.")
        elif volume.GetImageData() is None or volume.GetImageData().GetNumberOfPoints() == 0:
            found.append(f"The input volume {volume.GetName()!r} has no voxels.")
        if self.joint not in JOINT_CHOICES:
            found.append(f"Unknown joint {self.joint!r}; choose one of {', '.join(JOINT_CHOICES)}.")
        if self.device not in DEVICE_CHOICES:
            found.append(f"Unknown device {self.device!r}; choose one of {', '.join(DEVICE_CHOICES)}.")
        if not self.useBundledModel and not _isSelected(self.modelPath):
            found.append("Model file not found: (none selected).")
        if self.export and not _isDirectory(self.exportFolder):
            found.append(f"Export folder not found: {self.exportFolder or '(none selected)'}.")
        if self.joint in JOINT_CHOICES and self.device in DEVICE_CHOICES:
            arguments = self.logicArguments()
            model = arguments["modelPath"] if _isSelected(self.modelPath) or self.useBundledModel else None
            segment = SegmentOptions(
                joint=arguments["joint"], model_path=model, device=arguments["device"], postprocess=self.postprocess
            )
            options = CaseOptions(segment, surfaces=self.surfaces, smoothing=float(self.smoothing))
            found += [problem[0].upper() + problem[1:] + "." for problem in options.problems()]
        return found

    def logicArguments(self) -> dict[str, Any]:
        """Keyword arguments of ``PediatricBoneSegLogic.segment`` (volume node excluded)."""
        return {
            "joint": "auto" if self.joint == AUTO else _jointKey(self.joint),
            "modelPath": None if self.useBundledModel else str(self.modelPath),
            "device": DEVICE_CHOICES[self.device],
            "postprocess": self.postprocess,
            "surfaces": self.surfaces,
            "smoothing": self.smoothing,
            "exportFolder": str(self.exportFolder) if self.export else None,
        }


def _jointKey(displayName: str) -> str:
    return next(key for key in JOINT_KEYS if JOINTS[key].display_name == displayName)


def _isSelected(path: Path | None) -> bool:
    # An empty path widget reads back as Path("") == Path("."): treat it as "nothing selected".
    return path is not None and str(path) not in ("", ".")


def _isDirectory(path: Path | None) -> bool:
    return _isSelected(path) and Path(path).is_dir()  # type: ignore[arg-type]
