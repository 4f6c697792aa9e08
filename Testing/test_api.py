"""``from PediatricBoneSegLib import segment_file``: the case workflow from a pipeline, without the
command line: the same labels and files as ``pbseg segment``, from a path or a SimpleITK image."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from bad_inputs import write_dicom_series, write_image
from test_cli_segment import CASE_FILES, _entries, _scene, _segment, model  # noqa: F401 (a fixture)

from PediatricBoneSegLib import segment_file
from PediatricBoneSegLib.image_checks import VolumeReadError

OPTIONS = {"joint": "knee", "precision": "fp32"}  # as test_cli_segment runs the CLI


def test_a_file_in_memory_gives_the_labels_and_report_of_pbseg_segment(
    tmp_path: Path,
    model: Path,  # noqa: F811 (the imported fixture)
) -> None:
    source = write_image(_scene(40).image, tmp_path / "knee_api.nii.gz")
    assert _segment([source], tmp_path / "cli", model) == 0
    result = segment_file(source, model=model, **OPTIONS)
    assert result.folder is None and _entries(tmp_path) == {"knee_api.nii.gz", "cli"}  # nothing written
    cli_labels = sitk.ReadImage(str(tmp_path / "cli" / "knee_api" / "labels.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result.labels), sitk.GetArrayFromImage(cli_labels))
    assert result.labels.GetDirection() == cli_labels.GetDirection()
    assert set(result.surfaces) == {"femur", "tibia"} and result.surfaces["femur"].GetNumberOfPoints() > 0
    cli_report = json.loads((tmp_path / "cli" / "knee_api" / "report.json").read_text())
    assert result.report["bones"] == cli_report["bones"] and result.report["files"] == []
    assert result.report["measurements"] == cli_report["measurements"] == [m.to_json() for m in result.clinical]
    assert [m.bone for m in result.measurements] == ["femur", "tibia"]
    assert result.joint == "knee" and result.unreliable_bones == cli_report["unreliable_bones"]


def test_an_image_written_to_a_folder_and_a_dicom_series_with_its_seg(
    tmp_path: Path,
    model: Path,  # noqa: F811 (the imported fixture)
) -> None:
    image = sitk.Cast(_scene(41).image, sitk.sitkInt16)  # any pixel type, as a pipeline holds it
    result = segment_file(image, tmp_path / "out", model=model, surfaces=False, name="from memory", **OPTIONS)
    assert result.folder == tmp_path / "out" / "from_memory"
    assert CASE_FILES <= _entries(result.folder) == set(result.report["files"])
    assert result.report == json.loads((result.folder / "report.json").read_text())
    assert result.report["input"] == "SimpleITK image"
    write_dicom_series(tmp_path / "series", echoes=1, slices=6)
    dicom = segment_file(tmp_path / "series", tmp_path / "out", model=model, surfaces=False, **OPTIONS)
    assert "segmentation.dcm" in dicom.report["files"] and (dicom.folder / "segmentation.dcm").is_file()


def test_bad_inputs_and_options_are_one_clear_error(
    tmp_path: Path,
    model: Path,  # noqa: F811 (the imported fixture)
) -> None:
    with pytest.raises(VolumeReadError, match="absent.nii.gz: no such file or folder"):
        segment_file(tmp_path / "absent.nii.gz", model=model)
    write_dicom_series(tmp_path / "two", echoes=2)
    with pytest.raises(VolumeReadError, match="holds 2 volumes"):
        segment_file(tmp_path / "two", model=model)
    source = write_image(_scene(42).image, tmp_path / "knee.nii.gz")
    with pytest.raises(ValueError, match="smoothing must be between 0 and 1"):
        segment_file(source, model=model, smoothing=3.0, **OPTIONS)
    with pytest.raises(VolumeReadError, match="single slice|2D"):
        segment_file(sitk.Image([8, 8, 1], sitk.sitkFloat32), model=model, **OPTIONS)
    assert _entries(tmp_path) == {"two", "knee.nii.gz"}
