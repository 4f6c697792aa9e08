"""PediatricBoneSegLogic: the Slicer scripting API (no Qt). A volume node in; a segmentation node,
bone surface models, a morphometry table and optional files out.

The network runs first; nodes are created only after it succeeded, inside a ``SceneTransaction``,
so an error or a cancel at any point leaves the scene exactly as it was. This is the only file of
the library that imports ``slicer``, and only to find Slicer's scene and segmentations logic when
they are not given (``from PediatricBoneSegLib import PediatricBoneSegLogic`` resolves it lazily).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..catalog import get_joint
from ..progress import CancelToken, ProgressCallback, check_cancelled, sub_progress
from .hierarchy import parent_item_of, place_node
from .models import add_bone_models, lps_surfaces
from .scene_transaction import SceneTransaction
from .segmentation import add_segmentation_node
from .table import add_table_node
from .volume import image_from_volume_node

if TYPE_CHECKING:
    from ..pipeline.morphometry import BoneMeasurement
    from ..pipeline.results import InferenceResult

INFERENCE_SHARE = 0.8  # of the progress bar; node creation, surfaces and export share the rest


@dataclass
class SegmentationResult:
    """What ``PediatricBoneSegLogic.segment`` added to the scene, and what it learned.

    ``jointConfidence``: auto-detection confidence in [0, 1] (None when the joint was given).
    ``modelNodes``: one vtkMRMLModelNode per bone (empty without surfaces), under the
    subject-hierarchy folder ``modelsFolderItemID`` (0 when none). ``exportFolder``: the case
    folder written by the export, or None."""

    segmentationNode: Any
    tableNode: Any
    modelNodes: list[Any]
    modelsFolderItemID: int
    joint: str
    autoDetected: bool
    jointConfidence: float | None
    warnings: list[str]
    measurements: list[BoneMeasurement] = field(default_factory=list)
    exportFolder: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """One status line: the joint used (and the auto-detection confidence), the bones found,
        the warnings and where files were written."""
        joint = get_joint(self.joint).display_name
        if self.autoDetected:
            confidence = "" if self.jointConfidence is None else f", confidence {self.jointConfidence:.0%}"
            joint += f" (auto-detected{confidence})"
        bones = self.segmentationNode.GetSegmentation().GetNumberOfSegments()
        text = f"{joint}: {bones} bone{'' if bones == 1 else 's'} segmented."
        if self.warnings:
            text += f" {len(self.warnings)} warning(s): " + " ".join(self.warnings)
        if self.exportFolder is not None:
            text += f" Files written to {self.exportFolder}."
        return text


class PediatricBoneSegLogic:
    """Segments the bones of a pediatric joint MR volume into an MRML scene.

    ``scene``/``segmentationsLogic``: default to Slicer's ``slicer.mrmlScene`` and the
    Segmentations module logic; outside the application pass a vtkMRMLScene and a
    vtkSlicerSegmentationsModuleLogic whose scene was set before any segmentation node existed."""

    def __init__(self, scene: Any = None, segmentationsLogic: Any = None) -> None:
        if scene is None or segmentationsLogic is None:
            import slicer

            scene = scene if scene is not None else slicer.mrmlScene
            if segmentationsLogic is None:
                segmentationsLogic = slicer.modules.segmentations.logic()
        self.scene = scene
        self.segmentationsLogic = segmentationsLogic

    def segment(
        self,
        volumeNode: Any,
        joint: str = "auto",
        modelPath: str | Path | None = None,
        device: str = "auto",
        postprocess: bool = True,
        surfaces: bool = True,
        smoothing: float | None = None,
        exportFolder: str | Path | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        batchSize: int = 16,
    ) -> SegmentationResult:
        """Segment ``volumeNode``'s bones and add the results to the scene.

        ``joint``: "auto" or a catalog joint key; ``device``: "auto", "cpu" or "cuda";
        ``smoothing``: closed-surface smoothing factor (0..1, None: Slicer's default);
        ``exportFolder``: also write the case's files there; ``batchSize``: slices per forward pass.
        ``progress(fraction, message)`` may raise ``Cancelled``; ``cancel`` is checked between
        slice batches and between output steps. Raises ValueError (bad input), ModelFileError,
        Cancelled; in every such case nothing was added to the scene or written to disk."""
        from ..pipeline.inference import SegmentOptions, get_model, segment_image

        if volumeNode is None:
            raise ValueError("no input volume given")
        _checkVolumeNode(volumeNode)
        options = SegmentOptions(
            joint=joint, model_path=modelPath, device=device, postprocess=postprocess, batch_size=batchSize
        )
        problems = options.problems()
        if problems:
            raise ValueError("; ".join(problems))
        _checkOutputOptions(surfaces, smoothing, exportFolder)
        image = image_from_volume_node(volumeNode)
        model = get_model(modelPath)  # stays loaded between runs while the file is unchanged
        inference = segment_image(
            image, options, progress=sub_progress(progress, 0.0, INFERENCE_SHARE), cancel=cancel, model=model
        )
        return self.createOutputNodes(
            volumeNode,
            inference,
            surfaces=surfaces,
            smoothing=smoothing,
            exportFolder=exportFolder,
            progress=sub_progress(progress, INFERENCE_SHARE, 1.0),
            cancel=cancel,
        )

    def createOutputNodes(
        self,
        volumeNode: Any,
        inference: InferenceResult,
        surfaces: bool = True,
        smoothing: float | None = None,
        exportFolder: str | Path | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> SegmentationResult:
        """Turn an inference result on ``volumeNode``'s grid into scene nodes (all or nothing)."""
        from ..pipeline.morphometry import measure_bones

        _checkVolumeNode(volumeNode)
        _checkOutputOptions(surfaces, smoothing, exportFolder)
        report = sub_progress(progress, 0.0, 1.0)
        joint = get_joint(inference.joint)
        name = volumeNode.GetName()
        with SceneTransaction(self.scene):
            report(0.0, "Creating the segmentation")
            parent = parent_item_of(self.scene, volumeNode)
            segmentationNode = add_segmentation_node(
                self.scene,
                self.segmentationsLogic,
                volumeNode,
                inference.labels,
                joint,
                f"{name} bones",
                surfaces=surfaces,
                smoothing=smoothing,
            )
            place_node(self.scene, segmentationNode, parent)
            check_cancelled(cancel)
            folder, models = 0, []
            if surfaces:
                report(0.4, "Creating the bone surface models")
                folder, models = add_bone_models(self.scene, segmentationNode, f"{name} bone surfaces", parent)
                check_cancelled(cancel)
            report(0.6, "Measuring the bones")
            surfacesLPS = lps_surfaces(models, joint)
            measurements = measure_bones(inference.labels, joint.key, surfacesLPS or None)
            tableNode = add_table_node(self.scene, f"{name} morphometry", [m.as_row() for m in measurements])
            place_node(self.scene, tableNode, parent)
            check_cancelled(cancel)
            caseFolder = None
            if exportFolder:
                # Last step: once the files are in place nothing can fail any more.
                report(0.8, "Writing the files")
                caseFolder = self._export(volumeNode, inference, Path(exportFolder), surfacesLPS, measurements, cancel)
        return SegmentationResult(
            segmentationNode=segmentationNode,
            tableNode=tableNode,
            modelNodes=models,
            modelsFolderItemID=folder,
            joint=joint.key,
            autoDetected=inference.auto_detected,
            jointConfidence=inference.joint_confidence,
            warnings=list(inference.warnings),
            measurements=measurements,
            exportFolder=caseFolder,
            timings=dict(inference.timings),
        )

    def _export(
        self,
        volumeNode: Any,
        inference: InferenceResult,
        exportFolder: Path,
        surfaces: dict[str, Any],
        measurements: list[BoneMeasurement],
        cancel: CancelToken | None,
    ) -> Path:
        """Write ``exportFolder/<volume name>/`` (``_2``, ``_3``... when taken; never overwrites)."""
        from ..io.outputs import write_case

        base = re.sub(r"[^A-Za-z0-9._-]+", "_", volumeNode.GetName()).strip("._") or "volume"
        case, number = base, 1
        while (exportFolder / case).exists():
            number += 1
            case = f"{base}_{number}"
        image = image_from_volume_node(volumeNode)
        return write_case(exportFolder, case, image, inference, surfaces, measurements, cancel=cancel)


def _checkVolumeNode(volumeNode: Any) -> None:
    """A wrong argument is refused at the API with one TypeError, not deep inside VTK or SimpleITK."""
    if not callable(getattr(volumeNode, "IsA", None)) or not volumeNode.IsA("vtkMRMLScalarVolumeNode"):
        raise TypeError(f"volumeNode must be a vtkMRMLScalarVolumeNode, got {type(volumeNode).__name__}")


def _checkOutputOptions(surfaces: Any, smoothing: Any, exportFolder: Any) -> None:
    if not isinstance(surfaces, bool):
        raise TypeError(f"surfaces must be True or False, got {type(surfaces).__name__} {surfaces!r}")
    if smoothing is not None:
        if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)):
            raise TypeError(f"smoothing must be a number in [0, 1] or None, got {type(smoothing).__name__}")
        if not 0.0 <= smoothing <= 1.0:
            raise ValueError(f"smoothing must be between 0 and 1, got {smoothing}")
    if exportFolder is not None and not isinstance(exportFolder, (str, Path)):
        raise TypeError(f"exportFolder must be a folder path or None, got {type(exportFolder).__name__}")
    if exportFolder and not Path(exportFolder).is_dir():
        raise ValueError(f"export folder {exportFolder} does not exist")
