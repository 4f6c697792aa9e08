"""PediatricBoneSegLogic: the Slicer scripting API (no Qt). A volume node in; a segmentation node,
bone surface models, a morphometry table and optional files out.

The network runs first; nodes are created only after it succeeded, inside a ``SceneTransaction``,
so an error or a cancel at any point leaves the scene exactly as it was. This is the only file of
the library that imports ``slicer``, and only to find Slicer's scene and segmentations logic when
they are not given (``from PediatricBoneSegLib import PediatricBoneSegLogic`` resolves it lazily).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..catalog import get_joint
from ..options import CaseOptions, IfExists, SegmentOptions
from ..progress import CancelToken, ProgressCallback, check_cancelled, sub_progress
from .hierarchy import parent_item_of, place_node
from .measurements import add_measurement_nodes, follow_scene_loads
from .models import add_bone_models, lps_to_ras
from .scene_transaction import SceneTransaction
from .segmentation import add_segmentation_node
from .table import add_table_node
from .volume import image_from_volume_node

if TYPE_CHECKING:
    from ..case import CaseResult
    from ..pipeline.morphometry import BoneMeasurement
    from ..pipeline.results import InferenceResult

CASE_SHARE = 0.85  # of the progress bar: the case workflow; the nodes and the export share the rest


@dataclass
class SegmentationResult:
    """What ``PediatricBoneSegLogic.segment`` added to the scene, and what it learned.

    ``jointConfidence``: auto-detection confidence in [0, 1] (None when the joint was given).
    ``modelNodes``: one vtkMRMLModelNode per bone (empty without surfaces), under the
    subject-hierarchy folder ``modelsFolderItemID`` (0 when none). ``exportFolder``: the case
    folder written by the export, or None. ``boneQuality``: bone key -> quality in [0, 1] from the
    network's evidence (empty for labels that did not come from the network); ``unreliableBones``:
    display names of the bones below the model's quality threshold (missing ones included).
    ``clinicalTableNode``: the clinical measurements (value or why not measurable, per measure);
    ``landmarkNodes``: the Markups (fiducial, line, angle) the values were taken from, one per
    distinct landmark set (shared by the measures that read it), under the volume's parent
    transform and the subject-hierarchy folder ``landmarksFolderItemID`` (0 when none);
    ``landmarkLinks``: the observers (``slicer.measurements.LandmarkLinks``) that rewrite the rows
    of the measures a Markups node serves when one of its control points moves (measures that are
    functions of their points only)."""

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
    boneQuality: dict[str, float] = field(default_factory=dict)
    unreliableBones: list[str] = field(default_factory=list)
    clinicalTableNode: Any = None
    landmarkNodes: list[Any] = field(default_factory=list)
    landmarksFolderItemID: int = 0
    landmarkLinks: Any = None

    def summary(self) -> str:
        """One status line: the joint used (and the auto-detection confidence), the bones found,
        the unreliable bones, the warnings and where files were written."""
        joint = get_joint(self.joint).display_name
        if self.autoDetected:
            confidence = "" if self.jointConfidence is None else f", confidence {self.jointConfidence:.0%}"
            joint += f" (auto-detected{confidence})"
        bones = self.segmentationNode.GetSegmentation().GetNumberOfSegments()
        text = f"{joint}: {bones} bone{'' if bones == 1 else 's'} segmented."
        if self.unreliableBones:
            text += f" Check: unreliable {', '.join(self.unreliableBones)}."
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
        follow_scene_loads(scene)  # a saved scene's clinical tables follow their Markups again once loaded

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
        """Segment ``volumeNode``'s bones and add the results to the scene: the command line's case
        workflow (``case.run_case``), so an export gives the command line's files.

        ``joint``: "auto" or a catalog joint key; ``device``: "auto", "cpu" or "cuda";
        ``smoothing``: surface smoothing (0..1, None: the default 0.5); ``exportFolder``: also
        write the case folder there (``<volume name>``, ``_2``, ``_3``... when taken);
        ``batchSize``: slices per forward pass. ``progress(fraction, message)`` may raise
        ``Cancelled``; ``cancel`` is checked between slice batches and between output steps.
        Raises TypeError/ValueError (bad arguments or input), ModelFileError, Cancelled; in every
        such case nothing was added to the scene or written to disk."""
        from ..case import run_case
        from ..pipeline.inference import get_model

        segment = SegmentOptions(
            joint=joint, model_path=modelPath, device=device, postprocess=postprocess, batch_size=batchSize
        )
        options = _caseOptions(volumeNode, segment, surfaces, smoothing)
        _checkExportFolder(exportFolder)
        image = image_from_volume_node(volumeNode)
        model = get_model(modelPath)  # stays loaded between runs while the file is unchanged
        case = run_case(image, options, model, sub_progress(progress, 0.0, CASE_SHARE), cancel)
        return self._addCaseNodes(
            volumeNode, case, options, image, exportFolder, sub_progress(progress, CASE_SHARE, 1.0), cancel
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
        """Turn labels on ``volumeNode``'s grid (an inference result: from the network or known
        labels) into scene nodes (all or nothing), through the same surfaces and measurements as
        ``segment``."""
        from ..case import finish_case

        options = _caseOptions(volumeNode, SegmentOptions(joint=inference.joint), surfaces, smoothing)
        _checkExportFolder(exportFolder)
        case = finish_case(inference, options, sub_progress(progress, 0.0, 0.5))
        image = image_from_volume_node(volumeNode) if exportFolder else None
        return self._addCaseNodes(
            volumeNode, case, options, image, exportFolder, sub_progress(progress, 0.5, 1.0), cancel
        )

    def _addCaseNodes(
        self,
        volumeNode: Any,
        case: CaseResult,
        options: CaseOptions,
        image: Any,
        exportFolder: str | Path | None,
        progress: ProgressCallback | None,
        cancel: CancelToken | None,
    ) -> SegmentationResult:
        """The segmentation (closed surfaces = the case's meshes), one model per bone, the
        morphometry table and the optional export, inside one scene transaction."""
        from ..case import write_case_folder

        report = sub_progress(progress, 0.0, 1.0)
        inference = case.inference
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
                closed_surfaces={key: lps_to_ras(mesh) for key, mesh in case.surfaces.items()},
            )
            place_node(self.scene, segmentationNode, parent)
            check_cancelled(cancel)
            folder, models = 0, []
            if case.surfaces:
                report(0.4, "Creating the bone surface models")
                folder, models = add_bone_models(self.scene, segmentationNode, f"{name} bone surfaces", parent)
                check_cancelled(cancel)
            report(0.6, "Creating the morphometry table")
            rows = [m.as_row() for m in case.measurements]
            tableNode = add_table_node(self.scene, f"{name} morphometry", rows)
            place_node(self.scene, tableNode, parent)
            report(0.7, "Creating the clinical measurements and their landmarks")
            clinicalTable, landmarks, landmarksFolder, landmarkLinks = add_measurement_nodes(
                self.scene, case.clinical, name, parent, volumeNode
            )  # installs the observers that recompute a row when its Markups move; removed with the nodes
            check_cancelled(cancel)
            caseFolder = None
            if exportFolder:
                # Last step: once the files are in place nothing can fail any more.
                report(0.8, "Writing the files")
                caseFolder = write_case_folder(
                    Path(exportFolder),
                    name,
                    image,
                    case,
                    options,
                    IfExists.NEW_NAME,
                    report_extra={"input": _volumeSource(volumeNode)},
                    cancel=cancel,
                )
        return SegmentationResult(
            segmentationNode=segmentationNode,
            tableNode=tableNode,
            modelNodes=models,
            modelsFolderItemID=folder,
            joint=joint.key,
            autoDetected=inference.auto_detected,
            jointConfidence=inference.joint_confidence,
            warnings=list(inference.warnings),
            measurements=case.measurements,
            exportFolder=caseFolder,
            timings=dict(inference.timings),
            boneQuality={key: quality.score for key, quality in inference.quality.items()},
            unreliableBones=inference.unreliable_bones(),
            clinicalTableNode=clinicalTable,
            landmarkNodes=landmarks,
            landmarksFolderItemID=landmarksFolder,
            landmarkLinks=landmarkLinks,
        )


def _caseOptions(volumeNode: Any, segment: SegmentOptions, surfaces: bool, smoothing: float | None) -> CaseOptions:
    """The case workflow's options from the API's arguments, validated there (one validation)."""

    if volumeNode is None:
        raise ValueError("no input volume given")
    _checkVolumeNode(volumeNode)
    options = CaseOptions(segment, surfaces=surfaces, smoothing=0.5 if smoothing is None else smoothing)
    problems = options.problems()
    if problems:
        raise ValueError("; ".join(problems))
    return options


def _volumeSource(volumeNode: Any) -> str:
    """What report.json's ``input`` says for a volume node: its file, or its name."""
    storage = volumeNode.GetStorageNode()
    fileName = storage.GetFileName() if storage is not None else None
    return fileName or f"Slicer volume node {volumeNode.GetName()!r}"


def _checkVolumeNode(volumeNode: Any) -> None:
    """A wrong argument is refused at the API with one TypeError, not deep inside VTK or SimpleITK."""
    if not callable(getattr(volumeNode, "IsA", None)) or not volumeNode.IsA("vtkMRMLScalarVolumeNode"):
        raise TypeError(f"volumeNode must be a vtkMRMLScalarVolumeNode, got {type(volumeNode).__name__}")


def _checkExportFolder(exportFolder: Any) -> None:
    if exportFolder is not None and not isinstance(exportFolder, (str, Path)):
        raise TypeError(f"exportFolder must be a folder path or None, got {type(exportFolder).__name__}")
    if exportFolder and not Path(exportFolder).is_dir():
        raise ValueError(f"export folder {exportFolder} does not exist")
