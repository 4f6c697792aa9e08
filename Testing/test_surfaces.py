"""Bone surfaces: closed, volume-faithful, in patient LPS millimetres whatever the grid."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import vtk
from pipeline_model import make_scene
from vtk.util.numpy_support import vtk_to_numpy

from pbseg_training.phantoms import generate_phantom
from PediatricBoneSegLib.catalog import get_joint
from PediatricBoneSegLib.pipeline.surfaces import bone_surfaces, open_edge_count

# A rotation about an oblique axis times a mirror: a left-handed, oblique grid.
OBLIQUE = np.array([[0.86, -0.44, 0.26], [0.50, 0.80, -0.33], [-0.07, 0.41, 0.91]]) @ np.diag([1.0, -1.0, 1.0])


def _signed_volume(mesh: vtk.vtkPolyData) -> float:
    """Divergence theorem: positive when the triangles are wound with outward normals."""
    points = vtk_to_numpy(mesh.GetPoints().GetData()).astype(float)
    triangles = points[vtk_to_numpy(mesh.GetPolys().GetConnectivityArray()).reshape(-1, 3)]
    return float(np.einsum("ij,ij->i", triangles[:, 0], np.cross(triangles[:, 1], triangles[:, 2])).sum() / 6)


def _voxel_volume(labels: sitk.Image, value: int) -> float:
    return float((sitk.GetArrayViewFromImage(labels) == value).sum() * np.prod(labels.GetSpacing()))


def _voxel_centroid_lps(labels: sitk.Image, value: int) -> np.ndarray:
    index = np.argwhere(sitk.GetArrayViewFromImage(labels) == value).mean(axis=0)[::-1]
    return np.asarray(labels.TransformContinuousIndexToPhysicalPoint(index.tolist()))


def _mesh_centroid(mesh: vtk.vtkPolyData) -> np.ndarray:
    centre = vtk.vtkCenterOfMass()
    centre.SetInputData(mesh)
    centre.SetUseScalarsAsWeights(False)
    centre.Update()
    return np.asarray(centre.GetCenter())


@pytest.mark.parametrize(("joint", "seed"), [("knee", 3), ("shoulder", 2)])  # thin fibula, thin scapula
def test_phantom_surfaces_are_closed_and_keep_the_voxel_volume(joint: str, seed: int) -> None:
    phantom = generate_phantom(joint, seed=seed, voxel_scale=2.0)  # 6-8 mm slices: the hard case
    surfaces = bone_surfaces(phantom.labels, joint)
    spec = get_joint(joint)
    assert list(surfaces) == [bone.key for bone in spec.bones]
    for key, mesh in surfaces.items():
        properties = vtk.vtkMassProperties()
        properties.SetInputData(mesh)
        properties.Update()
        voxels = _voxel_volume(phantom.labels, spec.label_of(key))
        assert open_edge_count(mesh) == 0, key
        assert abs(properties.GetVolume() / voxels - 1) < 0.03, key
        assert _signed_volume(mesh) > 0, key


def test_oblique_mirrored_anisotropic_grid_gives_surfaces_at_the_physical_position() -> None:
    rng = np.random.default_rng(4)
    scene = make_scene(
        "knee",
        rng,
        OBLIQUE,
        (0.6, 1.7, 0.9),
        centres={1: (6.0, -8.0, 10.0), 2: (-5.0, 6.0, -14.0)},
        semi_axes={1: (12.0, 9.0, 14.0), 2: (8.0, 10.0, 7.0)},
    )
    surfaces = bone_surfaces(scene.labels, "knee", smoothing_iterations=15, decimation=0.5)
    assert set(surfaces) == {"femur", "tibia"}  # absent bones are skipped
    for value, key in ((1, "femur"), (2, "tibia")):
        mesh = surfaces[key]
        assert open_edge_count(mesh) == 0
        assert abs(_signed_volume(mesh) / _voxel_volume(scene.labels, value) - 1) < 0.03  # outward and faithful
        np.testing.assert_allclose(_mesh_centroid(mesh), _voxel_centroid_lps(scene.labels, value), atol=0.5)
        np.testing.assert_allclose(_voxel_centroid_lps(scene.labels, value), scene.centres[value], atol=0.7)


@pytest.mark.parametrize("decimation", [0.0, 0.7])
def test_decimation_reduces_triangles_and_keeps_the_mesh_closed(decimation: float) -> None:
    rng = np.random.default_rng(5)
    scene = make_scene("knee", rng, np.eye(3), (0.8, 0.8, 0.8))
    full = bone_surfaces(scene.labels, "knee", decimation=0.0)["femur"]
    mesh = bone_surfaces(scene.labels, "knee", decimation=decimation)["femur"]
    assert open_edge_count(mesh) == 0
    expected = full.GetNumberOfCells() * (1 - decimation)
    assert abs(mesh.GetNumberOfCells() - expected) <= 0.05 * full.GetNumberOfCells()
