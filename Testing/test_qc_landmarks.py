"""The QC picture draws each measured value's landmarks on the slice panel of its plane, at the
position the landmark projects to; without landmarks to draw it is the picture it was.

A small synthetic volume stored in RAS order (direction diag(-1, -1, 1), so the canonical
[S, P, L] array flips two axes) with a hand-placed angle: its pixel positions are worked out by
hand from the geometry, then looked up through the panel's own data-to-pixel transform."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from PediatricBoneSegLib.io import qc
from PediatricBoneSegLib.pipeline.measurements import Definition, Measurement

SIZE = (40, 50, 30)  # i, j, k
SPACING = (1.0, 1.2, 2.0)
ORIGIN = (10.0, 20.0, -30.0)
DIRECTION = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)  # RAS-ordered voxels, LPS coordinates


def _volume() -> tuple[sitk.Image, sitk.Image]:
    rng = np.random.default_rng(0)
    array = rng.normal(100.0, 10.0, SIZE[::-1]).astype(np.float32)
    labels = np.zeros(SIZE[::-1], np.uint8)
    labels[10:21, 20:31, 15:26] = 1  # a femur box: k 10..20, j 20..30, i 15..25; centre k = 15
    images = []
    for data in (array, labels):
        image = sitk.GetImageFromArray(data)
        image.SetSpacing(SPACING)
        image.SetOrigin(ORIGIN)
        image.SetDirection(DIRECTION)
        images.append(image)
    return images[0], images[1]


def _lps(i: float, j: float, k: float) -> np.ndarray:
    return np.array(ORIGIN) + np.array(DIRECTION).reshape(3, 3) @ (np.array([i, j, k]) * SPACING)


# An angle on the shown axial slice (k = 15), in the background left of the box: vertex at voxel
# (i, j) = (5, 10), legs to (5, 40) and (12, 40).
ANGLE = np.stack([_lps(5, 40, 15), _lps(5, 10, 15), _lps(12, 40, 15)])
TEST_ANGLE = Definition("test_angle", "knee", "Test angle", "deg", "A test.", "none", (), plane="axial")


def _measurements(with_landmarks: bool) -> list[Measurement]:
    return [Measurement(TEST_ANGLE, 20.0, landmarks={"legs": ANGLE} if with_landmarks else {})]


def _picture(path: Path, measurements) -> np.ndarray:
    image, labels = _volume()
    qc.write_qc_png(image, labels, "knee", None, path, "t", "matplotlib", measurements=measurements)
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))[..., :3].astype(int)


def _pixel(figure, panel: int, xy: tuple[float, float]) -> tuple[int, int]:
    """(row, column) of the PNG where panel data coordinates ``xy`` land."""
    x, y = figure.axes[panel].transData.transform(xy)
    return round(float(figure.bbox.height - y)), round(float(x))


def _figure(measurements):
    image, labels = _volume()
    figure = qc.qc_figure(image, labels, "knee", None, "t", "matplotlib", measurements)
    figure.canvas.draw()
    return figure


def test_hand_worked_projection() -> None:
    image, _ = _volume()
    transform = qc.CanonicalTransform.from_direction(image.GetDirection())
    shape = (SIZE[2], SIZE[1], SIZE[0])  # canonical [S, P, L]
    canonical = qc.canonical_indices(ANGLE[1:2], image, transform, shape)
    # i = 5 counts towards the patient's right, so left-ward index L = 39 - 5; j likewise P = 49 - 10.
    np.testing.assert_allclose(canonical, [[15.0, 39.0, 34.0]], atol=1e-9)
    np.testing.assert_allclose(qc.panel_coordinates(canonical, 0, shape), [[34.0, 39.0]])  # axial: x = L, y = P
    np.testing.assert_allclose(qc.panel_coordinates(canonical, 1, shape), [[34.0, 14.0]])  # coronal: y = 29 - S


def test_landmark_colour_appears_where_the_landmark_projects(tmp_path: Path) -> None:
    drawn = _picture(tmp_path / "with.png", _measurements(True))
    plain = _picture(tmp_path / "without.png", _measurements(False))
    figure = _figure(_measurements(True))
    assert drawn.shape[:2] == (int(figure.bbox.height), int(figure.bbox.width))
    colour = np.array(qc.LANDMARK_COLORS[0]) * 255
    for xy in ((34.0, 39.0), (34.0, 9.0), (27.0, 9.0), (34.0, 24.0)):  # vertex, leg ends, mid-leg
        row, column = _pixel(figure, 0, xy)
        near = np.abs(drawn[row - 2 : row + 3, column - 2 : column + 3] - colour).sum(-1)
        assert near.min() < 40, xy
        assert np.abs(plain[row - 2 : row + 3, column - 2 : column + 3] - colour).sum(-1).min() > 60
    # Everything that changed lies on the axial panel (its image, landmarks, labels and note).
    box = figure.axes[0].get_tightbbox(figure.canvas.get_renderer())
    rows, columns = np.nonzero((drawn != plain).any(-1))
    assert len(rows) > 50
    assert rows.min() >= figure.bbox.height - box.y1 - 1 and rows.max() <= figure.bbox.height - box.y0 + 1
    assert columns.min() >= box.x0 - 1 and columns.max() <= box.x1 + 1


def test_nothing_to_draw_leaves_the_picture_as_it_was(tmp_path: Path, monkeypatch) -> None:
    """Without measured landmarks (no measurements, or none measurable) the landmark step draws
    nothing: the picture equals one drawn with that step switched off."""
    cases = {
        "none": None,
        "no landmarks": _measurements(False),
        "not measurable": [Measurement(TEST_ANGLE, None, "bone missing")],
    }
    pictures = {name: _picture(tmp_path / f"{index}.png", m) for index, (name, m) in enumerate(cases.items())}
    monkeypatch.setattr(qc, "_draw_landmarks", lambda *args: None)
    for index, (name, m) in enumerate(cases.items()):
        assert np.array_equal(pictures[name], _picture(tmp_path / f"off{index}.png", m)), name


def test_a_long_reason_wraps_onto_indented_lines_instead_of_being_cut() -> None:
    reason = "the trochlear groove is not found between two facets of the femur in this field of view"
    entries = qc._measurement_lines([Measurement(TEST_ANGLE, None, reason), Measurement(TEST_ANGLE, 12.34)])
    first = entries[0].split("\n")
    assert len(first) > 1 and all(len(line) <= qc.COLUMN_CHARACTERS for line in first)
    assert all(line.startswith(" " * (qc.NAME_WIDTH + 1)) for line in first[1:])
    assert " ".join(part.strip() for part in first).endswith(reason)  # every word of the reason is there
    assert entries[1] == f"{'Test angle':<{qc.NAME_WIDTH}} 12.3 deg"
