"""The case folder: every file in its real format, read back by real readers (slicer-core, VTK,
SimpleITK); atomic writing, overwrite protection, cancellation."""

from __future__ import annotations

import csv
import json
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk

from pbseg_training.phantoms import generate_phantom
from PediatricBoneSegLib import atomic
from PediatricBoneSegLib.atomic import place_folder, staging_folder
from PediatricBoneSegLib.catalog import get_joint
from PediatricBoneSegLib.io.case_folder import CaseFolderExistsError, OutputError
from PediatricBoneSegLib.io.outputs import write_case, write_surface
from PediatricBoneSegLib.io.qc import write_qc_png
from PediatricBoneSegLib.pipeline.morphometry import COLUMNS, measure_bones
from PediatricBoneSegLib.pipeline.results import InferenceResult
from PediatricBoneSegLib.pipeline.surfaces import bone_surfaces, open_edge_count
from PediatricBoneSegLib.progress import Cancelled, CancelToken

_KEEP_ALIVE: list[Any] = []  # MRML scenes and module logics must outlive their nodes


@pytest.fixture(scope="module")
def case() -> dict[str, Any]:
    """A knee phantom's truth as if the pipeline had produced it, with its surfaces."""
    phantom = generate_phantom("knee", seed=5, voxel_scale=2.0)
    labels = sitk.Cast(phantom.labels, sitk.sitkUInt8)
    result = InferenceResult(
        labels=labels,
        joint="knee",
        auto_detected=True,
        joint_confidence=0.93,
        warnings=["a warning for the report"],
        timings={"preprocess": 0.1, "network": 1.0, "postprocess": 0.2},
        model_name="test-model",
        model_version="7",
        joint_distances={"knee": 0.01, "ankle": 0.4},
    )
    surfaces = bone_surfaces(labels, "knee")
    return {
        "image": phantom.image,
        "result": result,
        "surfaces": surfaces,
        "measurements": measure_bones(labels, "knee", surfaces),
    }


@pytest.fixture(scope="module")
def folder(case: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The case written once (STL surfaces) for the tests that only read it."""
    outdir = tmp_path_factory.mktemp("outputs")
    written = _write(outdir, case)
    assert [p.name for p in outdir.iterdir()] == ["knee_case"]  # no staging folder left
    return written


def _write(outdir: Path, case: dict[str, Any], **kwargs: Any) -> Path:
    return write_case(
        outdir, "knee_case", case["image"], case["result"], case["surfaces"], case["measurements"], **kwargs
    )


def _read_segmentation(path: Path) -> Any:
    scene = slicer.vtkMRMLScene()
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)  # before any segmentation node
    _KEEP_ALIVE.extend([scene, logic])
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1
    return node.GetSegmentation()


def test_case_folder_holds_every_output(folder: Path, case: dict[str, Any]) -> None:
    knee = get_joint("knee")
    expected = {"segmentation.seg.nrrd", "labels.nii.gz", "morphometry.csv", "measurements.csv", "report.json"}
    expected |= {"qc.png"} | {f"{bone.key}.stl" for bone in knee.bones}
    assert {p.name for p in folder.iterdir()} == expected

    labels = sitk.ReadImage(str(folder / "labels.nii.gz"))
    truth = case["result"].labels
    np.testing.assert_array_equal(sitk.GetArrayFromImage(labels), sitk.GetArrayFromImage(truth))
    np.testing.assert_allclose(labels.GetOrigin(), truth.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(labels.GetDirection(), truth.GetDirection(), atol=1e-6)

    report = json.loads((folder / "report.json").read_text())
    assert report["joint"] == "knee" and report["joint_auto_detected"] is True
    assert report["joint_confidence"] == 0.93 and report["warnings"] == ["a warning for the report"]
    assert report["model"] == {"name": "test-model", "version": "7"}
    assert {"network", "write"} <= set(report["timings_s"])
    assert report["bones"]["femur"]["present"] and report["bones"]["femur"]["label"] == knee.label_of("femur")
    assert report["bones"]["femur"]["voxel_volume_mm3"] > 0

    with (folder / "morphometry.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert tuple(rows[0]) == COLUMNS
    assert [row["bone"] for row in rows] == [bone.key for bone in knee.bones]
    assert (folder / "qc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_segmentation_file_is_read_by_slicer_with_catalog_names_colors_and_terminology(
    folder: Path, case: dict[str, Any]
) -> None:
    segmentation = _read_segmentation(folder / "segmentation.seg.nrrd")
    knee = get_joint("knee")
    assert segmentation.GetNumberOfSegments() == len(knee.bones)
    labels = case["result"].labels
    array = sitk.GetArrayFromImage(labels)
    for index, bone in enumerate(knee.bones):
        segment = segmentation.GetSegment(bone.key)
        assert segmentation.GetNthSegmentID(index) == bone.key
        assert segment.GetName() == bone.display_name
        np.testing.assert_allclose(segment.GetColor(), bone.color_float, atol=1e-5)
        assert segment.GetLabelValue() == knee.label_of(bone.key)
        assert segment.GetTerminology() == bone.terminology
        # Geometry: a voxel of this bone, taken to RAS, falls inside the segment in Slicer's labelmap.
        voxel = np.argwhere(array == knee.label_of(bone.key))[0][::-1]
        lps = np.asarray(labels.TransformIndexToPhysicalPoint([int(v) for v in voxel]))
        labelmap = segmentation.GetSegmentRepresentation(bone.key, "Binary labelmap")
        world_to_index = vtk.vtkMatrix4x4()
        labelmap.GetWorldToImageMatrix(world_to_index)
        ijk = world_to_index.MultiplyPoint((-lps[0], -lps[1], lps[2], 1.0))[:3]
        value = labelmap.GetScalarComponentAsDouble(*(round(c) for c in ijk), 0)
        assert value == segment.GetLabelValue()


def test_stl_surfaces_are_closed_lps_and_keep_the_voxel_volume(folder: Path, case: dict[str, Any]) -> None:
    knee = get_joint("knee")
    labels = case["result"].labels
    voxel_mm3 = float(np.prod(labels.GetSpacing()))
    array = sitk.GetArrayFromImage(labels)
    for bone in knee.bones:
        path = folder / f"{bone.key}.stl"
        assert b"SPACE=LPS" in path.read_bytes()[:80]
        reader = vtk.vtkSTLReader()
        reader.SetFileName(str(path))
        reader.Update()
        mesh = reader.GetOutput()
        assert open_edge_count(mesh) == 0, bone.key
        properties = vtk.vtkMassProperties()
        properties.SetInputData(mesh)
        properties.Update()
        voxels = (array == knee.label_of(bone.key)).sum() * voxel_mm3
        assert abs(properties.GetVolume() / voxels - 1) < 0.03, bone.key


@pytest.mark.parametrize(
    ("suffix", "reader"), [("obj", vtk.vtkOBJReader), ("vtp", vtk.vtkXMLPolyDataReader), ("ply", vtk.vtkPLYReader)]
)
def test_other_surface_formats(tmp_path: Path, case: dict[str, Any], suffix: str, reader: type) -> None:
    path = write_surface(case["surfaces"]["femur"], tmp_path / f"femur.{suffix}")
    loaded = reader()
    loaded.SetFileName(str(path))
    loaded.Update()
    assert loaded.GetOutput().GetNumberOfPolys() == case["surfaces"]["femur"].GetNumberOfPolys()


def test_existing_output_is_kept_unless_overwrite(tmp_path: Path, case: dict[str, Any]) -> None:
    folder = _write(tmp_path, case)
    written = (folder / "report.json").read_text()
    with pytest.raises(CaseFolderExistsError, match="--overwrite"):
        _write(tmp_path, case)
    assert (folder / "report.json").read_text() == written
    _write(tmp_path, case, overwrite=True, surface_format="ply")  # an earlier pbseg case folder: replaced
    assert {p.suffix for p in folder.iterdir()} == {".nrrd", ".gz", ".ply", ".csv", ".json", ".png"}
    assert [p.name for p in tmp_path.iterdir()] == ["knee_case"]  # no staging or retired folder left


def test_overwrite_never_replaces_a_user_file_or_a_folder_pbseg_did_not_write(
    tmp_path: Path, case: dict[str, Any]
) -> None:
    folder = _write(tmp_path, case)
    (folder / "notes.txt").write_text("user file")
    with pytest.raises(OutputError, match=r"holds files pbseg did not write \(notes.txt\)"):
        _write(tmp_path, case, overwrite=True)
    assert (folder / "notes.txt").read_text() == "user file"
    (folder / "notes.txt").unlink()
    (folder / "extra").mkdir()  # a user's sub-folder
    with pytest.raises(OutputError, match=r"\(extra\)"):
        _write(tmp_path, case, overwrite=True)
    foreign = tmp_path / "other" / "knee_case"
    foreign.mkdir(parents=True)
    (foreign / "scan.nii.gz").write_bytes(b"user data")
    with pytest.raises(OutputError, match="not a case folder written by pbseg"):
        _write(tmp_path / "other", case, overwrite=True)
    (tmp_path / "file_root").write_text("a file where a folder should be")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        _write(tmp_path / "file_root", case)
    assert (foreign / "scan.nii.gz").read_bytes() == b"user data" and (folder / "extra").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file_root", "knee_case", "other"]


def test_a_folder_holding_an_input_is_never_replaced(tmp_path: Path, case: dict[str, Any]) -> None:
    folder = _write(tmp_path, case)
    source = folder / "labels.nii.gz"  # e.g. an earlier output given back as an input
    for inputs in ([source], [folder]):
        with pytest.raises(OutputError, match="holds the input"):
            _write(tmp_path, case, overwrite=True, inputs=inputs)
    assert source.is_file() and (folder / "report.json").is_file()


def test_of_two_runs_finishing_the_same_case_exactly_one_wins(tmp_path: Path, case: dict[str, Any]) -> None:
    """A second run writes the case while the first one is still writing it: the first run's final
    move must fail with 'exists' and leave the second run's folder as it was."""
    other: dict[str, str] = {}

    def concurrent_run(fraction: float, message: str) -> None:
        if not other:
            other["report"] = (_write(tmp_path, case) / "report.json").read_text()

    with pytest.raises(CaseFolderExistsError, match="output folder exists"):
        _write(tmp_path, case, progress=concurrent_run)
    assert (tmp_path / "knee_case" / "report.json").read_text() == other["report"]
    assert [p.name for p in tmp_path.iterdir()] == ["knee_case"]


def test_place_folder_never_replaces_even_an_empty_folder(tmp_path: Path) -> None:
    """POSIX rename() silently replaces an empty folder: a run that created the case folder an
    instant ago would lose it."""
    claimed, staging = tmp_path / "case", staging_folder(tmp_path / "case")
    claimed.mkdir()
    with pytest.raises(FileExistsError):
        place_folder(staging, claimed)
    assert claimed.is_dir() and staging.is_dir()


def test_an_interrupt_during_the_overwrite_swap_waits_for_it(
    tmp_path: Path, case: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the middle of the swap (old folder renamed away, new one not yet in place, or the old
    one not yet deleted): the swap completes, no hidden folder stays, and the interruption says the
    case was written."""
    folder = _write(tmp_path, case)
    real_rename = atomic.os.rename

    def rename_then_interrupt(source: Any, destination: Any) -> None:
        real_rename(source, destination)
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(atomic.os, "rename", rename_then_interrupt)
    with pytest.raises(KeyboardInterrupt) as caught:
        _write(tmp_path, case, overwrite=True, surface_format="vtp")
    assert caught.value.written_folder == folder  # type: ignore[attr-defined]
    assert [p.name for p in tmp_path.iterdir()] == ["knee_case"]
    assert any(p.suffix == ".vtp" for p in folder.iterdir())


def test_an_interrupt_while_the_writer_thread_starts_leaves_no_files(
    tmp_path: Path, case: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C just as the writer thread has started (before the pool has registered it, so that a
    pool shut down at that moment would not wait for it): no file is written after the clean-up,
    no hidden folder stays."""
    real_start = threading.Thread.start

    def start_then_interrupt(thread: threading.Thread) -> None:
        real_start(thread)
        monkeypatch.setattr(threading.Thread, "start", real_start)
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(threading.Thread, "start", start_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        _write(tmp_path, case)
    assert [thread.name for thread in threading.enumerate() if thread.name.startswith("ThreadPoolExecutor")] == []
    assert list(tmp_path.iterdir()) == []


def test_cancelled_or_failed_writing_leaves_no_files(tmp_path: Path, case: dict[str, Any]) -> None:
    cancel = CancelToken()

    def progress(fraction: float, message: str) -> None:
        if "femur" in message:  # cancel after the segmentation and labels are written
            cancel.cancel()

    with pytest.raises(Cancelled):
        _write(tmp_path, case, progress=progress, cancel=cancel)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="unknown surface format"):
        _write(tmp_path, case, surface_format="dxf")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("renderer", ["auto", "matplotlib"])
def test_qc_picture(tmp_path: Path, case: dict[str, Any], renderer: str) -> None:
    path = write_qc_png(
        case["image"], case["result"].labels, "knee", case["surfaces"], tmp_path / "qc.png", "title", renderer
    )
    picture = sitk.ReadImage(str(path))
    assert picture.GetSize()[0] >= 800 and picture.GetNumberOfComponentsPerPixel() >= 3
    pixels = sitk.GetArrayFromImage(picture)[..., :3].reshape(-1, 3)
    femur = np.asarray(get_joint("knee").bones[0].color)
    assert (np.abs(pixels.astype(int) - femur).sum(axis=1) < 60).any()  # the bones are drawn in their colors


def test_clinical_measurements_in_the_csv_and_the_report(folder: Path) -> None:
    """measurements.csv and report.json's measurements block list the same measures of the joint,
    each with a value or the reason it is not measurable, its definition and reference."""
    import csv

    from PediatricBoneSegLib.pipeline.measurements import definitions

    with open(folder / "measurements.csv", newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    block = json.loads((folder / "report.json").read_text())["measurements"]
    assert [row["key"] for row in rows] == [entry["key"] for entry in block]
    joint_keys = {d.key for d in definitions("knee") if d.joint == "knee"}
    assert joint_keys <= {row["key"] for row in rows}
    for row, entry in zip(rows, block):
        assert (row["value"] != "") == (entry["status"] == "ok") != bool(row["reason"])
        assert row["definition"] and row["reference"] and row["text"] == entry["text"]
        if entry["status"] == "ok":
            assert abs(float(row["value"]) - entry["value"]) < 1e-3
            assert entry["landmarks_lps_mm"] or entry["text"] == "closed"  # a closed plate has no landmark
    assert any(entry["status"] == "ok" for entry in block)
