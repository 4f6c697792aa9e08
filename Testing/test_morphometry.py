"""Morphometry: volumes, area, LPS bounding box and principal axes of known shapes."""

from __future__ import annotations

import numpy as np
from pipeline_model import make_scene
from test_surfaces import OBLIQUE

from PediatricBoneSegLib.pipeline.morphometry import COLUMNS, measure_bones
from PediatricBoneSegLib.pipeline.surfaces import bone_surfaces


def test_ellipsoid_on_an_oblique_grid_measures_its_physical_shape() -> None:
    semi_axes = (14.0, 9.0, 6.0)
    centre = (4.0, -3.0, 8.0)
    scene = make_scene(
        "knee",
        np.random.default_rng(0),
        OBLIQUE,
        (0.5, 1.2, 0.7),
        centres={1: centre, 2: (0, 0, -60)},
        semi_axes={1: semi_axes, 2: (1e-3,) * 3},
        field_of_view_mm=48.0,
    )
    surfaces = bone_surfaces(scene.labels, "knee")
    [femur] = measure_bones(scene.labels, "knee", surfaces)  # the tibia lies outside the field of view
    assert femur.bone == "femur" and femur.display_name == "Femur"
    exact = 4 / 3 * np.pi * np.prod(semi_axes)
    assert abs(femur.voxel_volume_mm3 / exact - 1) < 0.03
    assert abs(femur.mesh_volume_mm3 / femur.voxel_volume_mm3 - 1) < 0.03
    a, b, c = semi_axes
    p = 1.6075  # Knud Thomsen's approximation of an ellipsoid's area
    area = 4 * np.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)
    assert abs(femur.surface_area_mm2 / area - 1) < 0.05
    np.testing.assert_allclose(femur.principal_axes_mm, [2 * s for s in semi_axes], rtol=0.04)
    # the ellipsoid is axis-aligned in LPS: its box is centre +- semi-axes (voxel centres: within a voxel)
    np.testing.assert_allclose(femur.bbox_min_mm, np.subtract(centre, semi_axes), atol=1.3)
    np.testing.assert_allclose(femur.bbox_max_mm, np.add(centre, semi_axes), atol=1.3)
    row = femur.as_row()
    assert tuple(row) == COLUMNS
    assert row["bone"] == "femur" and row["principal_axis_1_mm"] > row["principal_axis_3_mm"]


def test_without_surfaces_mesh_quantities_are_absent() -> None:
    scene = make_scene("knee", np.random.default_rng(1), np.eye(3), (1.0, 1.0, 2.0))
    measurements = measure_bones(scene.labels, "knee", None)
    assert [m.bone for m in measurements] == ["femur", "tibia"]
    assert all(m.mesh_volume_mm3 is None and m.surface_area_mm2 is None for m in measurements)
    assert measurements[0].as_row()["mesh_volume_mm3"] is None
