"""3D Slicer module "Pediatric Bone Segmentation": the panel around PediatricBoneSegLogic.

Thin on purpose: the work happens in PediatricBoneSegLib (Slicer-free pipeline, Qt-free logic).
This is the only file of the extension that may import qt or ctk, and the only one that imports
slicer.ScriptedLoadableModule.
"""

import logging
import pathlib
from typing import Annotated

import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from PediatricBoneSegLib import PediatricBoneSegLogic
from PediatricBoneSegLib.progress import Cancelled, CancelToken
from PediatricBoneSegLib.resources import bundled_sample_path
from PediatricBoneSegLib.slicer.dependencies import PIP_REQUIREMENTS, TORCH, TORCH_REQUIREMENT, missing_modules
from PediatricBoneSegLib.slicer.parameters import DEVICE_CHOICES, JOINT_CHOICES, SegmentParameters

_DEFAULTS = SegmentParameters()


class PediatricBoneSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Pediatric Bone Segmentation"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["PediatricBoneSeg developers"]
        self.parent.helpText = (
            "Segments the bones of a pediatric ankle, knee or shoulder MR volume with one click: "
            "a segmentation with one named, colored segment per bone (SNOMED CT terminology), "
            "closed surfaces, one surface model per bone and a morphometry table. "
            "Choose the volume, keep the joint on Auto or name it, and press <b>Segment bones</b>. "
            "Scripting: <code>from PediatricBoneSegLib import PediatricBoneSegLogic</code>."
        )
        self.parent.acknowledgementText = (
            "Method: A. Boutillon et al., Generalizable multi-task, multi-domain deep segmentation of "
            "sparse pediatric imaging datasets via multi-scale contrastive regularization and multi-joint "
            "anatomical priors, Medical Image Analysis 2022 (arXiv 2207.13502). The bundled model was "
            "trained on synthetic phantoms; see the extension's README for its model card."
        )
        # A saved scene's clinical tables follow their Markups again once loaded, also when this
        # module's panel is never opened (its logic is then never created).
        slicer.app.connect("startupCompleted()", followSavedMeasurements)


def followSavedMeasurements() -> None:
    """Restore the landmark links of the application scene's clinical tables, now and after every load."""
    from PediatricBoneSegLib.slicer.measurements import follow_scene_loads

    follow_scene_loads(slicer.mrmlScene)


@parameterNodeWrapper
class PediatricBoneSegParameterNode:
    """The panel's state, saved with the scene. Field names are those of SegmentParameters."""

    inputVolume: vtkMRMLScalarVolumeNode
    joint: Annotated[str, Choice(list(JOINT_CHOICES))] = _DEFAULTS.joint
    useBundledModel: bool = _DEFAULTS.useBundledModel
    modelPath: pathlib.Path = pathlib.Path()
    device: Annotated[str, Choice(list(DEVICE_CHOICES))] = _DEFAULTS.device
    postprocess: bool = _DEFAULTS.postprocess
    surfaces: bool = _DEFAULTS.surfaces
    smoothing: Annotated[float, WithinRange(0.0, 1.0)] = _DEFAULTS.smoothing
    export: bool = _DEFAULTS.export
    exportFolder: pathlib.Path = pathlib.Path()


class PediatricBoneSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._cancelToken: CancelToken | None = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/PediatricBoneSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = PediatricBoneSegLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.loadSampleButton.connect("clicked(bool)", self.onLoadSample)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        if self._cancelToken is not None:
            self._cancelToken.cancel()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateApplyButton)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        logic = ScriptedLoadableModuleLogic()
        logic.moduleName = "PediatricBoneSeg"  # the singleton tag of the module's parameter node
        self.setParameterNode(PediatricBoneSegParameterNode(logic.getParameterNode()))
        if not self._parameterNode.inputVolume:
            volume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if volume:
                self._parameterNode.inputVolume = volume

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateApplyButton)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateApplyButton)
            self._updateApplyButton()

    def _updateApplyButton(self, caller=None, event=None) -> None:
        if self._cancelToken is not None:
            return  # running: the button is the Cancel button
        problems = SegmentParameters.fromObject(self._parameterNode).problems() if self._parameterNode else ["-"]
        self.ui.applyButton.enabled = not problems
        self.ui.applyButton.toolTip = "\n".join(problems) or "Segment the bones of the input volume."

    def onLoadSample(self) -> None:
        # Package data of PediatricBoneSegLib, where the CLI and a pip install find it too.
        volume = slicer.util.loadVolume(str(bundled_sample_path()))
        self._parameterNode.inputVolume = volume

    def onApplyButton(self) -> None:
        if self._cancelToken is not None:
            self._cancelToken.cancel()
            self.ui.statusLabel.text = "Cancelling..."
            return
        parameters = SegmentParameters.fromObject(self._parameterNode)
        problems = parameters.problems()
        if problems:
            slicer.util.errorDisplay("\n".join(problems))
            return
        if not self._ensureDependencies():
            return
        self._setRunning(CancelToken())
        try:
            result = self.logic.segment(
                parameters.inputVolume,
                **parameters.logicArguments(),
                progress=self._onProgress,
                cancel=self._cancelToken,
            )
        except Cancelled:
            self.ui.statusLabel.text = "Cancelled; the scene is unchanged."
        except Exception as error:
            logging.exception("Bone segmentation failed")
            self.ui.statusLabel.text = "Failed; the scene is unchanged."
            slicer.util.errorDisplay(f"Bone segmentation failed: {error}")
        else:
            self.ui.progressBar.value = 100
            self.ui.statusLabel.text = result.summary()
            slicer.util.setSliceViewerLayers(background=parameters.inputVolume)
            if result.warnings:
                slicer.util.warningDisplay("\n".join(result.warnings), windowTitle="Check the segmentation")
        finally:
            self._setRunning(None)

    def _setRunning(self, token: CancelToken | None) -> None:
        self._cancelToken = token
        running = token is not None
        self.ui.applyButton.text = "Cancel" if running else "Segment bones"
        self.ui.applyButton.enabled = True
        self.ui.inputsCollapsibleButton.enabled = not running
        self.ui.advancedCollapsibleButton.enabled = not running
        if running:
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = "Starting..."
        else:
            self._updateApplyButton()

    def _onProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.value = round(100 * fraction)
        self.ui.statusLabel.text = message[:1].upper() + message[1:]
        slicer.app.processEvents()  # lets the Cancel click through between slice batches

    def _ensureDependencies(self) -> bool:
        """PyTorch through the PyTorch extension, small pure additions through pip; Slicer's own
        packages are never replaced. False when something is still missing."""
        missing = missing_modules()
        if TORCH in missing:
            if not slicer.util.confirmOkCancelDisplay(
                "Bone segmentation needs PyTorch. Install it now through the PyTorch extension? "
                "It picks the build that matches this computer (CPU or GPU) and takes a few minutes."
            ):
                return False
            try:
                import PyTorchUtils
            except ModuleNotFoundError:
                slicer.util.errorDisplay(
                    "The PyTorch extension is not installed. Install 'PyTorch' from the Extensions Manager, "
                    "restart Slicer, and try again."
                )
                return False
            torchLogic = PyTorchUtils.PyTorchUtilsLogic()
            if torchLogic.installTorch(askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT) is None:
                slicer.util.errorDisplay("PyTorch could not be installed; see the Python console for details.")
                return False
        pipMissing = [PIP_REQUIREMENTS[name] for name in missing if name in PIP_REQUIREMENTS]
        if pipMissing:
            if not slicer.util.confirmOkCancelDisplay(f"Install the missing Python packages {', '.join(pipMissing)}?"):
                return False
            slicer.util.pip_install(" ".join(pipMissing))
        others = [name for name in missing_modules() if name != TORCH and name not in PIP_REQUIREMENTS]
        if others:
            slicer.util.errorDisplay(f"This Slicer lacks the Python packages {', '.join(others)}.")
        return not missing_modules()


class PediatricBoneSegTest(ScriptedLoadableModuleTest):
    """Runs PediatricBoneSegLib.slicer.self_test, the same scenario pytest runs outside Slicer."""

    modelPath = None  # None: the bundled model; pytest points it at a small model file
    requireBones = True  # a trained model must find bones in the phantom; pytest's untrained one may not

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_SegmentBonesScenario()

    def test_SegmentBonesScenario(self) -> None:
        from PediatricBoneSegLib.slicer import self_test

        logic = PediatricBoneSegLogic()
        self_test.run_all(logic, self.modelPath, self.requireBones, log=self.delayDisplay)
