"""DICOM SEG output of ``pbseg segment``: real DICOM series in (an oblique, flipped knee scene written
slice by slice), a SEG out that highdicom and pydicom read back, that references its source series
frame by frame, whose segments carry the catalog's codes and colours, and whose voxels are those of
``labels.nii.gz``; dcmqi (the reader of Slicer's QuantitativeReporting) decodes it into a
slicer-core segmentation node with the same voxels."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pipeline_model as pm
import pydicom
import pytest
import SimpleITK as sitk
import slicer
from bad_inputs import write_image
from test_cli_segment import CASE_FILES, CENTRES, SEMI_AXES, _entries, _segment, model  # noqa: F401 (a fixture)

from PediatricBoneSegLib import __version__
from PediatricBoneSegLib.catalog import get_joint
from PediatricBoneSegLib.io.dicom_seg import DICOM_SEG_FILE

STUDY_UID, FRAME_OF_REFERENCE_UID = "1.2.826.0.1.3680043.8.498.77", "1.2.826.0.1.3680043.8.498.78"
SERIES_UID = "1.2.826.0.1.3680043.8.498.79"
# dcmqi's command-line tools install beside this Python (the test extra), not always on PATH
SEGIMAGE2ITKIMAGE = shutil.which("segimage2itkimage", path=f"{Path(sys.executable).parent}{os.pathsep}{os.defpath}")
DCIODVFY = shutil.which("dciodvfy")  # David Clunie's DICOM validator (dicom3tools)


def _oblique_knee() -> sitk.Image:
    rng = np.random.default_rng(11)
    return pm.make_scene("knee", rng, pm.random_direction(rng), (1.5, 1.5, 3.0), CENTRES, SEMI_AXES, 48.0).image


def _write_series(image: sitk.Image, folder: Path) -> list[Path]:
    """``image`` as an MR series of single-frame files, one per slice, in a known study and frame of
    reference (slice k at the physical position of the image's slice k)."""
    folder.mkdir(parents=True)
    direction = np.reshape(image.GetDirection(), (3, 3))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    files = []
    for k in range(image.GetSize()[2]):
        plane = sitk.Cast(image[:, :, k], sitk.sitkInt16)
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": "MR",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.4",
            "0008|0018": f"{SERIES_UID}.{k + 1}",
            "0010|0010": "Test^Child",
            "0010|0020": "P0042",
            "0020|000d": STUDY_UID,
            "0020|000e": SERIES_UID,
            "0020|0052": FRAME_OF_REFERENCE_UID,
            "0020|0011": "5",
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{value:.6f}" for value in position),
            "0020|0037": "\\".join(f"{value:.8f}" for value in (*direction[:, 0], *direction[:, 1])),
            "0018|0050": f"{image.GetSpacing()[2]}",
        }
        for key, value in tags.items():
            plane.SetMetaData(key, value)
        files.append(folder / f"slice{k:03d}.dcm")
        writer.SetFileName(str(files[-1]))
        writer.Execute(plane)
    return files


def _labels(case: Path) -> sitk.Image:
    return sitk.ReadImage(str(case / "labels.nii.gz"))


def _seg_labels_on_grid(seg: hd.seg.Segmentation, labels: sitk.Image) -> np.ndarray:
    """The SEG's segments as one label array on the grid of ``labels`` (z, y, x): each SEG voxel is
    put where its own plane position and orientation say it is."""
    volume = seg.get_volume(combine_segments=True)
    frame_index = np.stack(np.meshgrid(*(np.arange(n) for n in volume.spatial_shape), indexing="ij"), -1)
    physical = frame_index.reshape(-1, 3) @ volume.affine[:3, :3].T + volume.affine[:3, 3]
    grid = np.array([labels.TransformPhysicalPointToContinuousIndex(point) for point in physical])
    index = np.round(grid).astype(int)
    assert np.abs(grid - index).max() < 1e-3  # the SEG's voxels are the labels' voxels, not near them
    result = np.zeros(labels.GetSize()[::-1], np.uint8)
    result[index[:, 2], index[:, 1], index[:, 0]] = volume.array.reshape(-1)
    return result


@pytest.fixture(scope="module")
def dicom_case(tmp_path_factory: pytest.TempPathFactory, model: Path) -> tuple[Path, list[Path]]:  # noqa: F811 (the imported fixture)
    """The case folder of an oblique, flipped DICOM series segmented by ``pbseg segment``, and its files."""
    folder = tmp_path_factory.mktemp("dicom")
    files = _write_series(_oblique_knee(), folder / "knee_mr")
    assert _segment([folder / "knee_mr"], folder / "out", model, "--no-surfaces") == 0
    return folder / "out" / "knee_mr", files


def test_a_dicom_series_gets_a_seg_of_its_study_that_matches_the_labels(dicom_case: tuple[Path, list[Path]]) -> None:
    case, files = dicom_case
    report = json.loads((case / "report.json").read_text())
    assert CASE_FILES | {DICOM_SEG_FILE} <= _entries(case) == set(report["files"])

    dataset = pydicom.dcmread(case / DICOM_SEG_FILE)
    assert dataset.Modality == "SEG" and dataset.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert (dataset.StudyInstanceUID, dataset.FrameOfReferenceUID) == (STUDY_UID, FRAME_OF_REFERENCE_UID)
    assert dataset.PatientID == "P0042" and dataset.SeriesInstanceUID not in (SERIES_UID, STUDY_UID)
    assert report["warnings"] and dataset.ContentDescription.startswith(f"CHECK ({len(report['warnings'])} warnings)")
    sources = {pydicom.dcmread(f).SOPInstanceUID: pydicom.dcmread(f) for f in files}
    (referenced,) = dataset.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == SERIES_UID
    assert {item.ReferencedSOPInstanceUID for item in referenced.ReferencedInstanceSequence} == set(sources)
    for frame in dataset.PerFrameFunctionalGroupsSequence:  # each frame names the slice it was segmented on
        (source,) = frame.DerivationImageSequence[0].SourceImageSequence
        image = sources[source.ReferencedSOPInstanceUID]
        np.testing.assert_allclose(
            [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient],
            [float(v) for v in image.ImagePositionPatient],
        )

    seg = hd.seg.segread(case / DICOM_SEG_FILE)
    knee = get_joint("knee")
    assert [int(s.SegmentNumber) for s in seg.SegmentSequence] == [1, 2, 3, 4]
    for description, bone in zip(seg.SegmentSequence, knee.bones):
        assert description.segment_label.startswith(bone.display_name)
        assert description.segmented_property_type.value == bone.snomed_code
        assert description.segmented_property_type.scheme_designator == "SCT"
        assert description.segmented_property_category.value == "123037004"  # anatomical structure
        rgb = hd.color.CIELabColor.from_dicom_value(description.RecommendedDisplayCIELabValue).to_rgb()
        assert np.abs(np.subtract(rgb, bone.color)).max() <= 1
        (algorithm,) = description.SegmentationAlgorithmIdentificationSequence
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("PediatricBoneSeg", __version__)
        assert report["model"]["name"] in algorithm.AlgorithmParameters
    labels = _labels(case)
    truth = sitk.GetArrayFromImage(labels)
    assert set(np.unique(truth)) >= {1, 2}  # femur and tibia found: the comparison below is not trivial
    np.testing.assert_array_equal(_seg_labels_on_grid(seg, labels), truth)


def test_other_inputs_get_a_seg_of_a_new_study_only_when_asked(tmp_path: Path, model: Path) -> None:  # noqa: F811 (the imported fixture)
    source = write_image(_oblique_knee(), tmp_path / "knee_nifti.nii.gz")
    write_series = _write_series(_oblique_knee(), tmp_path / "dicom_knee")
    assert write_series
    out = tmp_path / "out"
    assert _segment([source, tmp_path / "dicom_knee"], out, model, "--no-surfaces", "--no-dicom-seg") == 0
    for case in ("knee_nifti", "dicom_knee"):  # no SEG
        assert _entries(out / case) >= CASE_FILES and DICOM_SEG_FILE not in _entries(out / case)
    assert _segment([source], out, model, "--no-surfaces", "--dicom-seg", "--overwrite") == 0
    case = out / "knee_nifti"
    dataset = pydicom.dcmread(case / DICOM_SEG_FILE)
    assert dataset.StudyInstanceUID not in (STUDY_UID, "") and dataset.FrameOfReferenceUID != FRAME_OF_REFERENCE_UID
    assert dataset.PatientID == "" and "ReferencedSeriesSequence" not in dataset  # nothing invented, nothing referenced
    assert not any("DerivationImageSequence" in frame for frame in dataset.PerFrameFunctionalGroupsSequence)
    labels = _labels(case)
    np.testing.assert_array_equal(
        _seg_labels_on_grid(hd.seg.segread(case / DICOM_SEG_FILE), labels), sitk.GetArrayFromImage(labels)
    )


@pytest.mark.skipif(DCIODVFY is None, reason="dicom3tools' dciodvfy is not installed (Debian: dicom3tools)")
def test_the_segs_pass_the_dicom3tools_validator(
    dicom_case: tuple[Path, list[Path]],
    tmp_path: Path,
    model: Path,  # noqa: F811 (the imported fixture)
) -> None:
    """dciodvfy checks every attribute against the Segmentation IOD; warnings about what a DICOMDIR
    would need (an empty Study ID or patient of a new study) are allowed, errors are not."""
    source = write_image(_oblique_knee(), tmp_path / "knee_nifti.nii.gz")
    assert _segment([source], tmp_path / "out", model, "--no-surfaces", "--dicom-seg") == 0
    for seg in (dicom_case[0] / DICOM_SEG_FILE, tmp_path / "out" / "knee_nifti" / DICOM_SEG_FILE):
        checked = subprocess.run([DCIODVFY, str(seg)], capture_output=True, text=True)
        lines = (checked.stdout + checked.stderr).splitlines()
        assert "Segmentation" in lines and not [line for line in lines if line.startswith("Error")], lines


@pytest.mark.skipif(SEGIMAGE2ITKIMAGE is None, reason="dcmqi is not installed")
def test_dcmqi_reads_the_seg_into_a_slicer_segmentation(tmp_path: Path, dicom_case: tuple[Path, list[Path]]) -> None:
    """What Slicer's DICOM SEG import does (QuantitativeReporting's plugin): dcmqi's
    segimage2itkimage decodes the SEG into one volume per segment with its metadata, imported
    into a segmentation node; the node's labelmap equals labels.nii.gz."""
    case = dicom_case[0]
    decoded = tmp_path / "decoded"
    decoded.mkdir()
    subprocess.run(
        [SEGIMAGE2ITKIMAGE, "--inputDICOM", str(case / DICOM_SEG_FILE), "--outputDirectory", str(decoded)],
        check=True,
        capture_output=True,
    )
    meta = json.loads((decoded / "meta.json").read_text())
    attributes = [segment for group in meta["segmentAttributes"] for segment in group]
    knee = get_joint("knee")
    labels = _labels(case)
    present = {knee.bones[label - 1].key for label in np.unique(sitk.GetArrayFromImage(labels)) if label}
    assert {"femur", "tibia"} <= present
    assert [a["SegmentedPropertyTypeCodeSequence"]["CodeValue"] for a in attributes] == [
        b.snomed_code for b in knee.bones
    ]
    assert [a["recommendedDisplayRGBValue"] for a in attributes] == [list(b.color) for b in knee.bones]

    scene = slicer.vtkMRMLScene()
    segmentations_logic = slicer.vtkSlicerSegmentationsModuleLogic()
    segmentations_logic.SetMRMLScene(scene)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    for attribute in attributes:  # as the plugin does: one labelmap per segment, named after it
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
        storage.SetFileName(str(decoded / f"{attribute['labelID']}.nrrd"))
        volume = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
        assert storage.ReadData(volume) == 1
        volume.SetName(attribute["SegmentLabel"])
        segmentations_logic.ImportLabelmapToSegmentationNode(volume, node)
    segmentation = node.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert [name.split(" (")[0] for name in names] == [bone.display_name for bone in knee.bones if bone.key in present]
    reference = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(case / "labels.nii.gz"))
    assert storage.ReadData(reference) == 1
    merged = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    assert segmentations_logic.ExportVisibleSegmentsToLabelmapNode(node, merged, reference)
    # the export numbers the node's segments 1..n in their order: the present bones in label order
    truth = sitk.GetArrayFromImage(labels)
    expected = np.zeros_like(truth)
    for value, label in enumerate(sorted(knee.label_of(key) for key in present), start=1):
        expected[truth == label] = value
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(merged), expected)


def test_a_series_a_seg_cannot_refer_to_fails_with_the_reason_and_leaves_nothing(
    tmp_path: Path,
    model: Path,  # noqa: F811 (the imported fixture)
    capsys: pytest.CaptureFixture,
) -> None:
    files = _write_series(_oblique_knee(), tmp_path / "no_frame")
    dataset = pydicom.dcmread(files[3])
    del dataset.FrameOfReferenceUID
    dataset.save_as(files[3])
    out = tmp_path / "out"
    assert _segment([tmp_path / "no_frame"], out, model, "--no-surfaces") == 1
    assert (
        f"{files[3]}: no FrameOfReferenceUID, so a DICOM SEG cannot refer to it (--no-dicom-seg: none)"
        in capsys.readouterr().err
    )
    assert not out.exists() or _entries(out) == set()
    assert _segment([tmp_path / "no_frame"], out, model, "--no-surfaces", "--no-dicom-seg") == 0
    assert _entries(out / "no_frame") >= CASE_FILES and DICOM_SEG_FILE not in _entries(out / "no_frame")
