"""The stages after the network give the outputs they gave before they were made faster.

Two knees (the package's self-test phantom, and two ellipsoids on an oblique, mirrored grid from
``pipeline_model``: no phantom generator, whose versions change) get deterministic network-like
errors (islands far and near, a bone split by a slab, cavities, scattered holes, low-confidence
voxels); post-processing, quality, surfaces, morphometry and the case folder are compared with
``after_network_reference.json``, written by the implementation before the bounding-box, shared
components and batch work (issue 20): labels, warnings, quality evidence and voxel measurements
exactly; mesh volumes within 0.1 %. No network runs, so the figures hold on every CPU.

Regenerate the reference only for an intended change of outputs:
``.venv/bin/python Testing/test_after_network_reference.py --write``.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pipeline_model as pm
import pytest
import SimpleITK as sitk
import vtk

from PediatricBoneSegLib.case import finish_case, write_case_folder
from PediatricBoneSegLib.catalog import get_joint
from PediatricBoneSegLib.labelmaps import bone_boxes, tight_boxes
from PediatricBoneSegLib.options import CaseOptions, SegmentOptions
from PediatricBoneSegLib.pipeline.components import bone_components
from PediatricBoneSegLib.pipeline.postprocess import clean_labels, plausibility_warnings
from PediatricBoneSegLib.pipeline.quality import DEFAULT_QUALITY, NetworkEvidence, assess_bones
from PediatricBoneSegLib.pipeline.results import InferenceResult
from PediatricBoneSegLib.resources import self_test_case_paths

REFERENCE = Path(__file__).with_name("after_network_reference.json")
CASES = {"self_test_knee": 3, "oblique_knee": 4}  # name: seed of its errors
MESH_VOLUME_TOLERANCE = 1e-3  # relative


def _case(case: str) -> tuple[sitk.Image, sitk.Image]:
    """The image and its true labels."""
    if case == "self_test_knee":
        image, labels = self_test_case_paths()
        return sitk.ReadImage(str(image)), sitk.ReadImage(str(labels))
    rng = np.random.default_rng(1)
    scene = pm.make_scene("knee", rng, pm.random_direction(rng), (0.8, 0.7, 1.5))
    return scene.image, scene.labels


def _network_like(case: str) -> tuple[sitk.Image, np.ndarray, NetworkEvidence, str]:
    """The case's image, its labels with network-like errors and their evidence, the joint."""
    joint, seed = "knee", CASES[case]
    image, labels = _case(case)
    truth = sitk.GetArrayFromImage(labels)
    rng = np.random.default_rng(seed)
    predicted = truth.copy()
    confidence = rng.integers(235, 256, truth.shape, dtype=np.uint8)
    num_classes = get_joint(joint).num_classes
    for _ in range(12):  # islands of any bone, anywhere: far ones go, large near ones stay
        corner = [int(rng.integers(0, max(1, n - 4))) for n in truth.shape]
        size = [int(rng.integers(1, 5)) for _ in range(3)]
        box = tuple(slice(c, c + s) for c, s in zip(corner, size))
        predicted[box] = int(rng.integers(1, num_classes))
        confidence[box] = rng.integers(60, 160, confidence[box].shape, dtype=np.uint8)
    largest = int(np.argmax(np.bincount(truth.ravel())[1:])) + 1
    along = np.nonzero((truth == largest).any(axis=(1, 2)))[0]
    middle = int(along[len(along) // 2])
    predicted[middle : middle + 2][predicted[middle : middle + 2] == largest] = 0  # a slab splits it
    centre = tuple(int(np.median(axis)) for axis in np.nonzero(truth == largest))
    cavity = tuple(slice(c - 1, c + 2) for c in centre)
    predicted[cavity] = np.where(predicted[cavity] == largest, 0, predicted[cavity])  # an enclosed cavity
    holes = (rng.random(truth.shape) < 0.01) & (truth > 0)
    predicted[holes] = 0  # scattered holes
    confidence[holes] = 100
    return image, predicted, NetworkEvidence(predicted, confidence), joint


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.uint8).tobytes()).hexdigest()


def _mesh_volume(path: Path) -> float:
    reader = vtk.vtkSTLReader()
    reader.SetFileName(str(path))
    reader.Update()
    properties = vtk.vtkMassProperties()
    properties.SetInputData(reader.GetOutput())
    properties.Update()
    return properties.GetVolume()


def outputs_of(case: str, folder: Path) -> dict[str, Any]:
    """What the stages after the network produce for ``case`` (the case folder is written in ``folder``)."""
    image, predicted, evidence, joint = _network_like(case)
    spacing = tuple(image.GetSpacing())[::-1]
    # As segment_image runs them: one component pass and one set of boxes for every step.
    components = bone_components(predicted, get_joint(joint).num_classes)
    boxes = [None if parts is None else parts.box for parts in components]
    cleaned, warnings = clean_labels(predicted, spacing, joint, image.GetDirection(), components)
    unprocessed_warnings = plausibility_warnings(predicted, spacing, joint, image.GetDirection(), boxes)
    quality = assess_bones(predicted, cleaned, evidence, spacing, joint, DEFAULT_QUALITY, 0.3, components)
    labels = sitk.GetImageFromArray(cleaned)
    labels.CopyInformation(image)
    inference = InferenceResult(
        labels, joint, False, None, warnings, {}, "reference", "0", quality=quality, boxes=tight_boxes(cleaned, boxes)
    )
    options = CaseOptions(SegmentOptions(joint=joint))
    result = finish_case(inference, options)
    written = write_case_folder(folder, case, image, result, options)
    report = json.loads((written / "report.json").read_text())
    segmentation = (written / "segmentation.seg.nrrd").read_bytes()
    header, body = segmentation.split(b"\n\n", 1)
    rows = list(csv.DictReader((written / "morphometry.csv").open(encoding="utf-8")))
    return {
        "labels_sha256": _digest(cleaned),
        "unprocessed_labels_sha256": _digest(predicted),
        "warnings": warnings,
        "unprocessed_warnings": unprocessed_warnings,
        "quality": {
            bone: {"score": q.score, "reliable": q.reliable, "features": q.features, "reasons": list(q.reasons)}
            for bone, q in quality.items()
        },
        "files": sorted(report["files"]),
        "report_bones": report["bones"],
        "labels_file_sha256": _digest(sitk.GetArrayFromImage(sitk.ReadImage(str(written / "labels.nii.gz")))),
        "segmentation_header": header.decode("utf-8"),
        "segmentation_body_sha256": hashlib.sha256(gzip.decompress(body)).hexdigest(),
        "morphometry": rows,
        "stl_volumes_mm3": {path.stem: _mesh_volume(path) for path in sorted(written.glob("*.stl"))},
    }


def _close(value: str, expected: str) -> bool:
    return abs(float(value) - float(expected)) <= MESH_VOLUME_TOLERANCE * abs(float(expected))


@pytest.mark.parametrize("case", list(CASES))
def test_outputs_match_the_reference(case: str, tmp_path: Path) -> None:
    expected = json.loads(REFERENCE.read_text())[case]
    found = json.loads(json.dumps(outputs_of(case, tmp_path)))  # the JSON round trip of the reference
    for key in ("labels_sha256", "unprocessed_labels_sha256", "warnings", "unprocessed_warnings", "quality"):
        assert found[key] == expected[key], key
    for key in ("files", "labels_file_sha256", "segmentation_header", "segmentation_body_sha256"):
        assert found[key] == expected[key], key
    for bone, fields in expected["report_bones"].items():
        mesh = fields.pop("mesh_volume_mm3")
        found_mesh = found["report_bones"][bone].pop("mesh_volume_mm3")
        assert found["report_bones"][bone] == fields, bone
        assert (mesh is None and found_mesh is None) or _close(found_mesh, mesh), bone
    assert len(found["morphometry"]) == len(expected["morphometry"])
    for row, reference in zip(found["morphometry"], expected["morphometry"]):
        for column, value in reference.items():
            if column == "mesh_volume_mm3":
                assert _close(row[column], value), (row["bone"], column)
            elif column != "surface_area_mm2":  # a mesh's area depends on its triangles, not on the volume
                assert row[column] == value, (row["bone"], column)
    assert set(found["stl_volumes_mm3"]) == set(expected["stl_volumes_mm3"])
    for bone, volume in expected["stl_volumes_mm3"].items():
        assert _close(found["stl_volumes_mm3"][bone], volume), bone


@pytest.mark.parametrize("case", list(CASES))
def test_the_shared_components_and_boxes_change_nothing(case: str) -> None:
    """Each step alone (finding its own components and boxes) gives what the shared ones give."""
    image, predicted, evidence, joint = _network_like(case)
    spacing, direction = tuple(image.GetSpacing())[::-1], image.GetDirection()
    components = bone_components(predicted, get_joint(joint).num_classes)
    shared, shared_warnings = clean_labels(predicted, spacing, joint, direction, components)
    alone, alone_warnings = clean_labels(predicted, spacing, joint, direction)
    assert np.array_equal(shared, alone) and shared_warnings == alone_warnings
    assert tight_boxes(alone, [None if c is None else c.box for c in components]) == bone_boxes(alone, 5)
    with_parts = assess_bones(predicted, alone, evidence, spacing, joint, DEFAULT_QUALITY, 0.3, components)
    assert with_parts == assess_bones(predicted, alone, evidence, spacing, joint, DEFAULT_QUALITY, 0.3)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        reference = {case: outputs_of(case, Path(scratch)) for case in CASES}
    REFERENCE.write_text(json.dumps(reference, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {REFERENCE}")
