"""Quality-control picture (``qc.png``): axial, coronal and sagittal slices through the bones with
the label overlay, and a 3D view of the surfaces, for a quick look without opening Slicer; with
clinical measurements, their list and each measured value's landmarks (points, lines, angle legs)
projected onto the slice panel that shows them best.

The 3D view is rendered offscreen by VTK (EGL or OSMesa) where an OpenGL context can be had, and
drawn with matplotlib's 3D axes otherwise.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d.art3d import Poly3DCollection
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkCommonDataModel import vtkPolyData
from vtkmodules.vtkFiltersCore import vtkQuadricClustering
from vtkmodules.vtkRenderingCore import (
    vtkActor,
    vtkPolyDataMapper,
    vtkRenderer,
    vtkRenderWindow,
    vtkWindowToImageFilter,
)

from ..atomic import atomic_file
from ..catalog import get_bone, get_joint
from ..pipeline.orientation import CanonicalTransform

OVERLAY_ALPHA = 0.45
RENDER_SIZE = 600
MAX_PLOT_TRIANGLES = 4000  # per bone in the matplotlib fallback
DISPLAY_TRIANGLES = 50_000  # per bone in the VTK view: a larger mesh is drawn from a clustered copy
TITLE_Y = 1.0  # a fixed title height: matplotlib's automatic one measures every artist (0.3 s a picture)
DISPLAY_DIVISIONS = 128  # clustering grid per axis: finer than the 600-pixel view shows a bone
NAME_WIDTH = 36  # measurement names in the list under the views
COLUMN_CHARACTERS = 88  # monospace 8 pt at 80 dpi in half of the 12-inch figure: longer text wraps
# Landmark colours (matplotlib's tab10 without its grey, which would vanish on MR): opaque on the
# translucent bone overlay.
LANDMARK_COLORS = (
    (0.122, 0.467, 0.706),
    (1.0, 0.498, 0.055),
    (0.173, 0.627, 0.173),
    (0.839, 0.153, 0.157),
    (0.580, 0.404, 0.741),
    (0.549, 0.337, 0.294),
    (0.890, 0.467, 0.761),
    (0.737, 0.741, 0.133),
    (0.090, 0.745, 0.812),
)


def write_qc_png(
    image: sitk.Image,
    labels: sitk.Image,
    joint: str,
    surfaces: dict | None,
    path: str | Path,
    title: str = "",
    renderer: str = "auto",
    measurements: list | None = None,
) -> Path:
    """``renderer``: "auto" (VTK offscreen, else matplotlib), "vtk" or "matplotlib" for the 3D view;
    ``measurements``: clinical measurements (``pipeline.measurements.Measurement``) listed under
    the views, with "not measurable" and the reason where so, and their landmarks drawn on the
    slices (``qc_figure``)."""
    figure = qc_figure(image, labels, joint, surfaces, title, renderer, measurements)
    with atomic_file(path) as temporary:
        figure.savefig(temporary, format="png")
    return Path(path)


def qc_figure(
    image: sitk.Image,
    labels: sitk.Image,
    joint: str,
    surfaces: dict | None,
    title: str = "",
    renderer: str = "auto",
    measurements: list | None = None,
) -> Figure:
    """The QC picture as a matplotlib figure (``write_qc_png`` saves it): axial, coronal and
    sagittal panels (``figure.axes[0:3]``), the 3D view, the measurement list; each measured
    value's landmarks on the panel that shows them best (``_draw_landmarks``)."""
    spec = get_joint(joint)
    transform = CanonicalTransform.from_direction(image.GetDirection())
    volume = transform.to_canonical(sitk.GetArrayViewFromImage(image))  # [S, P, L]
    label_array = transform.to_canonical(sitk.GetArrayViewFromImage(labels))
    spacing = transform.canonical_spacing(image.GetSpacing())
    colors = np.zeros((256, 4))
    for value, bone in enumerate(spec.bones, start=1):
        colors[value] = (*bone.color_float, OVERLAY_ALPHA)
    centre = _label_centre(label_array)
    rows = _measurement_lines(measurements or [])
    half = (len(rows) + 1) // 2
    columns = ["\n".join(rows[:half]), "\n".join(rows[half:])]
    lines_per_column = max(text.count("\n") + 1 for text in columns) if rows else 0
    text_height = 0.013 * lines_per_column + 0.02 if rows else 0.0  # figure share of the list
    figure = Figure(figsize=(12, 10 / (1.0 - text_height)), dpi=80)
    FigureCanvasAgg(figure)
    # Radiological display: rows toward inferior/posterior go down, patient's left on the right.
    views = (
        ("axial", volume[centre[0]], label_array[centre[0]], spacing[1] / spacing[2]),
        ("coronal", volume[::-1, centre[1]], label_array[::-1, centre[1]], spacing[0] / spacing[2]),
        ("sagittal", volume[::-1, :, centre[2]], label_array[::-1, :, centre[2]], spacing[0] / spacing[1]),
    )
    # Display window from the three shown planes: what is on screen, at a fraction of the volume's cost.
    low, high = np.percentile(np.concatenate([plane.ravel() for _, plane, _, _ in views]), (1, 99))
    panels = []
    for index, (name, plane, plane_labels, aspect) in enumerate(views):
        axes = figure.add_subplot(2, 2, index + 1)
        axes.imshow(plane, cmap="gray", vmin=low, vmax=high, aspect=aspect, interpolation="nearest")
        axes.imshow(colors[np.clip(plane_labels, 0, 255)], aspect=aspect, interpolation="nearest")
        axes.set_title(name, y=TITLE_Y)
        axes.set_axis_off()
        panels.append(axes)
    _draw_landmarks(panels, measurements or [], image, transform, volume.shape, spacing, centre)
    _draw_3d(figure, surfaces or {}, renderer)
    legend = ", ".join(bone.display_name for bone in spec.bones)
    figure.suptitle(f"{title}  [{spec.display_name}: {legend}]".strip())
    # Fixed margins: tight_layout would draw the whole figure once more just to measure it.
    bottom = 0.02 + text_height
    figure.subplots_adjust(left=0.02, right=0.98, bottom=bottom, top=0.92, wspace=0.05, hspace=0.12)
    for column, text in enumerate(columns):
        figure.text(0.02 + 0.49 * column, bottom - 0.01, text, va="top", fontsize=8, family="monospace")
    return figure


def canonical_indices(points_lps: np.ndarray, image: sitk.Image, transform: CanonicalTransform, shape) -> np.ndarray:
    """(N, 3) LPS mm -> (N, 3) fractional indices of the canonical [S, P, L] array ``shape``."""
    origin = np.asarray(image.GetOrigin(), float)
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    ijk = (np.asarray(points_lps, float).reshape(-1, 3) - origin) @ direction / np.asarray(image.GetSpacing())
    canonical = ijk[:, ::-1][:, list(transform.permutation)]
    for axis, flip in enumerate(transform.flips):
        if flip:
            canonical[:, axis] = shape[axis] - 1 - canonical[:, axis]
    return canonical


def panel_coordinates(canonical: np.ndarray, panel: int, shape) -> np.ndarray:
    """Canonical indices -> (x, y) data coordinates of panel 0 (axial), 1 (coronal), 2 (sagittal),
    as the panels are drawn (rows toward inferior go down)."""
    s, p, left = canonical[:, 0], canonical[:, 1], canonical[:, 2]
    down = shape[0] - 1 - s
    return np.stack([(left, left, p)[panel], (p, down, down)[panel]], axis=1)


PANELS = ("axial", "coronal", "sagittal")


def _landmark_panel(plane: str, canonical: np.ndarray, spacing) -> int:
    """The panel a measure's landmarks are drawn on: the one of its plane (``Definition.plane``),
    else the one whose fixed axis the landmarks spread least along, the coronal one for a single
    point."""
    if plane in PANELS:
        return PANELS.index(plane)
    extent = np.ptp(canonical, axis=0) * np.asarray(spacing)
    return 1 if extent.max() < 1e-6 else int(np.argmin(extent))


def _draw_landmarks(panels: list, measurements: list, image, transform, shape, spacing, centre) -> None:
    """Each measured value's landmarks on the panel of its plane, projected along the panel's
    fixed axis: points (filled within a voxel of the shown slice, hollow when projected from
    further away), two points joined as a line, three as the two legs of an angle (vertex in the
    middle), each set in its own colour and labelled by name; a set several measures share is
    drawn once."""
    drawn: set = set()
    colour = 0
    for m in measurements:
        if not m.measurable or not m.landmarks:
            continue
        everything = np.concatenate([np.atleast_2d(points) for points in m.landmarks.values()])
        plane = getattr(m.definition, "plane", "")
        panel = _landmark_panel(plane, canonical_indices(everything, image, transform, shape), spacing)
        axes = panels[panel]
        for name, points in m.landmarks.items():
            points = np.atleast_2d(np.asarray(points, float))
            label = name if m.bone is None else f"{m.bone} {name}"
            signature = (panel, label, points.round(3).tobytes())
            if signature in drawn:
                continue
            drawn.add(signature)
            canonical = canonical_indices(points, image, transform, shape)
            xy = panel_coordinates(canonical, panel, shape)
            on_slice = np.abs(canonical[:, panel] - centre[panel]) <= 1.0
            rgb = LANDMARK_COLORS[colour % len(LANDMARK_COLORS)]
            colour += 1
            if len(points) > 1:
                axes.plot(xy[:, 0], xy[:, 1], "-", color=rgb, linewidth=1.5, scalex=False, scaley=False)
            for (x, y), inside in zip(xy, on_slice):
                axes.plot(
                    [x],
                    [y],
                    "o",
                    color=rgb,
                    markersize=5,
                    markerfacecolor=rgb if inside else "none",
                    scalex=False,
                    scaley=False,
                )
            anchor = xy[len(xy) // 2]
            axes.annotate(
                label.replace("_", " "), anchor, xytext=(4, 4), textcoords="offset points", color=rgb, fontsize=7
            )
    for panel in sorted({signature[0] for signature in drawn}):
        panels[panel].text(
            0.01,
            0.01,
            "landmarks: filled on this slice, hollow projected",
            transform=panels[panel].transAxes,
            color="white",
            fontsize=6,
            va="bottom",
        )


def _measurement_lines(measurements: list) -> list[str]:
    """One entry per measurement: name, value and unit, or not measurable and why, wrapped onto
    indented lines of a column's width (a reason is never cut)."""
    wrapped = []
    for m in measurements:
        text = f"{m.to_json()['name'][:NAME_WIDTH]:<{NAME_WIDTH}} {m.text}"
        wrapped.append("\n".join(textwrap.wrap(text, COLUMN_CHARACTERS, subsequent_indent=" " * (NAME_WIDTH + 1))))
    return wrapped


def _label_centre(labels: np.ndarray) -> tuple[int, int, int]:
    """Voxel at the median of the labelled voxels along each axis (the volume's centre when nothing
    is labelled); computed from per-axis counts rather than the voxel coordinates."""
    labelled = labels != 0
    total = int(np.count_nonzero(labelled))
    if total == 0:
        return tuple(n // 2 for n in labels.shape)  # type: ignore[return-value]
    centre = []
    for axis in range(3):
        counts = np.count_nonzero(labelled, axis=tuple(a for a in range(3) if a != axis))
        centre.append(int(np.searchsorted(np.cumsum(counts), (total + 1) / 2)))
    return tuple(centre)  # type: ignore[return-value]


def _draw_3d(figure: Figure, surfaces: dict, renderer: str) -> None:
    picture = _render_vtk(surfaces) if renderer in ("auto", "vtk") and surfaces else None
    if renderer == "vtk" and surfaces and picture is None:
        raise RuntimeError("no offscreen OpenGL context (EGL or OSMesa) is available for VTK rendering")
    if picture is not None:
        axes = figure.add_subplot(2, 2, 4)
        axes.imshow(picture)
        axes.set_axis_off()
    else:
        axes = figure.add_subplot(2, 2, 4, projection="3d")
        _plot_meshes(axes, surfaces)
    axes.set_title("3D (anterior view)", y=TITLE_Y)


def _offscreen_window() -> vtkRenderWindow | None:
    from vtkmodules import vtkRenderingOpenGL2

    for name in ("vtkEGLRenderWindow", "vtkOSOpenGLRenderWindow"):
        window_class = getattr(vtkRenderingOpenGL2, name, None)
        if window_class is None:
            continue
        window = window_class()
        window.SetOffScreenRendering(1)
        window.SetSize(RENDER_SIZE, RENDER_SIZE)
        try:
            if window.SupportsOpenGL():
                return window
        except Exception:  # any failure means this backend is unusable here
            continue
    return None


def _render_vtk(surfaces: dict) -> np.ndarray | None:
    """[H, W, 3] uint8 picture of the surfaces seen from the front, or None without OpenGL."""
    window = _offscreen_window()
    if window is None:
        return None
    scene = vtkRenderer()
    scene.SetBackground(1.0, 1.0, 1.0)
    window.AddRenderer(scene)
    for key, mesh in surfaces.items():
        mapper = vtkPolyDataMapper()
        mapper.SetInputData(_display_copy(mesh))
        actor = vtkActor()
        actor.SetMapper(mapper)
        actor.GetProperty().SetColor(*get_bone(key).color_float)
        scene.AddActor(actor)
    camera = scene.GetActiveCamera()
    camera.SetPosition(0.0, -1.0, 0.0)  # anterior (LPS: -P), looking toward posterior
    camera.SetFocalPoint(0.0, 0.0, 0.0)
    camera.SetViewUp(0.0, 0.0, 1.0)
    scene.ResetCamera()
    window.Render()
    grabber = vtkWindowToImageFilter()
    grabber.SetInput(window)
    grabber.ShouldRerenderOff()  # the window was just rendered
    grabber.Update()
    output = grabber.GetOutput()
    width, height, _ = output.GetDimensions()
    pixels = vtk_to_numpy(output.GetPointData().GetScalars()).reshape(height, width, -1)[::-1, :, :3]
    window.Finalize()
    if (pixels == 255).all():  # nothing was drawn: treat as no rendering
        return None
    return np.ascontiguousarray(pixels)


def _display_copy(mesh: vtkPolyData) -> vtkPolyData:
    """``mesh`` with fewer triangles for the picture (software OpenGL renders in time linear in
    them): vertex clustering on a ``DISPLAY_DIVISIONS`` grid, a single linear pass; the written
    meshes are untouched."""
    if mesh.GetNumberOfPolys() <= DISPLAY_TRIANGLES:
        return mesh
    clustering = vtkQuadricClustering()
    clustering.SetInputData(mesh)
    clustering.SetNumberOfDivisions(DISPLAY_DIVISIONS, DISPLAY_DIVISIONS, DISPLAY_DIVISIONS)
    clustering.AutoAdjustNumberOfDivisionsOn()
    clustering.Update()
    return clustering.GetOutput()


def _plot_meshes(axes, surfaces: dict) -> None:  # axes: matplotlib Axes3D
    lows, highs = [], []
    for key, mesh in surfaces.items():
        points = vtk_to_numpy(mesh.GetPoints().GetData())
        triangles = vtk_to_numpy(mesh.GetPolys().GetConnectivityArray()).reshape(-1, 3)
        step = max(1, len(triangles) // MAX_PLOT_TRIANGLES)
        shown = points.astype(float)
        collection = Poly3DCollection(shown[triangles[::step]], facecolors=get_bone(key).color_float, shade=True)
        axes.add_collection3d(collection)
        lows.append(shown.min(axis=0))
        highs.append(shown.max(axis=0))
    if lows:
        low, high = np.min(lows, axis=0), np.max(highs, axis=0)
        centre, half = (low + high) / 2, float((high - low).max()) / 2
        for setter, c in zip((axes.set_xlim, axes.set_ylim, axes.set_zlim), centre):
            setter(c - half, c + half)
    axes.view_init(elev=0, azim=-90)  # camera at -y (anterior) looking posterior, L to the right as in VTK
    axes.set_axis_off()
