"""One case workflow for both front ends: the same volume segmented by ``pbseg segment`` (a file)
and by ``PediatricBoneSegLogic.segment`` with an export (a volume node on a real MRML scene) gives
the same files: labels, segmentation, meshes, morphometry, report and QC picture. And the scene
holds the very meshes that were written (not a conversion of its own)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import vtk
from bad_inputs import write_image
from slicer_harness import MRMLHarness
from test_cli_segment import _scene, model  # noqa: F401 (model: the knee threshold-model fixture)
from vtk.util.numpy_support import vtk_to_numpy

from PediatricBoneSegLib.cli import main
from PediatricBoneSegLib.io.volumes import read_volume
from PediatricBoneSegLib.slicer import self_test

VARYING_REPORT_FIELDS = {"created", "input", "timings_s"}  # when and from where, not what


def _points(path: Path) -> np.ndarray:
    reader = vtk.vtkSTLReader()
    reader.SetFileName(str(path))
    reader.Update()
    return vtk_to_numpy(reader.GetOutput().GetPoints().GetData())


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_the_command_line_and_slicer_write_the_same_case(tmp_path: Path, model: Path) -> None:  # noqa: F811
    source = write_image(_scene(12).image, tmp_path / "knee_k.nii.gz")
    assert main(["segment", str(source), "-o", str(tmp_path / "cli"), "--model", str(model), "--joint", "knee"]) == 0
    harness = MRMLHarness()
    volume = self_test.add_volume_node(harness.scene, read_volume(source), "knee_k")
    export = tmp_path / "slicer"
    export.mkdir()
    result = harness.logic().segment(volume, joint="knee", modelPath=model, exportFolder=export)
    cli, slicer = tmp_path / "cli" / "knee_k", export / "knee_k"
    assert result.exportFolder == slicer
    files = sorted(p.name for p in cli.iterdir())
    assert files == sorted(p.name for p in slicer.iterdir()) and "femur.stl" in files

    cli_labels, slicer_labels = (sitk.ReadImage(str(folder / "labels.nii.gz")) for folder in (cli, slicer))
    assert np.array_equal(sitk.GetArrayFromImage(cli_labels), sitk.GetArrayFromImage(slicer_labels))
    for attribute in ("GetOrigin", "GetSpacing", "GetDirection"):
        assert np.allclose(getattr(cli_labels, attribute)(), getattr(slicer_labels, attribute)(), atol=1e-6)
    for mesh in (name for name in files if name.endswith(".stl")):
        assert np.allclose(_points(cli / mesh), _points(slicer / mesh), atol=1e-4), mesh
    for row, other in zip(_rows(cli / "morphometry.csv"), _rows(slicer / "morphometry.csv"), strict=True):
        assert row.keys() == other.keys()
        for key in row:
            try:
                assert abs(float(row[key]) - float(other[key])) < 1e-3, key
            except ValueError:  # a name, not a number
                assert row[key] == other[key], key
    reports = [json.loads((folder / "report.json").read_text()) for folder in (cli, slicer)]
    for report in reports:
        for key in VARYING_REPORT_FIELDS:
            report.pop(key)
        report.pop("geometry")
    assert reports[0] == reports[1]
    pictures = [
        sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "qc.png"))).astype(float) for folder in (cli, slicer)
    ]
    assert pictures[0].shape == pictures[1].shape and np.abs(pictures[0] - pictures[1]).mean() < 0.5

    # The scene shows the written meshes: the femur's closed surface is the STL, mirrored to RAS.
    femur = vtk.vtkPolyData()
    assert result.segmentationNode.GetClosedSurfaceRepresentation("femur", femur)
    in_scene = vtk_to_numpy(femur.GetPoints().GetData()) * [-1, -1, 1]
    assert np.allclose(np.sort(in_scene, axis=0), np.sort(_points(cli / "femur.stl"), axis=0), atol=1e-4)
