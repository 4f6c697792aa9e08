"""A label volume in patient coordinates and the fits the landmark finders share: bone voxels and
surface points (with outward normals) in LPS mm, robust sphere and plane fits (scikit-image
RANSAC), growth-plate components (scikit-image labelling)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from skimage import measure

from ...catalog import get_joint
from ...labelmaps import bone_boxes
from .base import NotMeasurable

# The trochlea and the glenoid's version are read in the axial plane, where a child's features are a
# few mm: coarser voxels across it (the slices of a 2D sagittal or coronal series) make them a guess.
AXIAL_VOXEL_MM = 1.5
_BORDER_MM = 2.5  # a bone this close to a face of the volume is taken as cut by the field of view


@dataclass
class LabelVolume:
    """``labels``: numpy (k, j, i) catalog labels of ``joint``; ``spacing`` (i, j, k) mm;
    ``direction`` 3x3 (columns = index axes in LPS); ``origin`` LPS mm of voxel (0, 0, 0)."""

    labels: np.ndarray
    joint: str
    spacing: np.ndarray
    direction: np.ndarray
    origin: np.ndarray
    unreliable: frozenset[str] = frozenset()  # bones whose segmentation was judged unreliable
    boxes: list[tuple[slice, ...] | None] | None = None  # every bone's box (``labelmaps.bone_boxes``), if known
    _masks: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)
    _bones: dict[str, BoneGeometry] = field(default_factory=dict, init=False, repr=False, compare=False)
    _centroids: dict[str, tuple[np.ndarray, int]] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_image(
        cls,
        image: sitk.Image,
        joint: str,
        unreliable: frozenset[str] = frozenset(),
        boxes: list[tuple[slice, ...] | None] | None = None,
    ) -> LabelVolume:
        """``boxes``: the bones' boxes when the caller has them (``InferenceResult.bone_boxes``)."""
        return cls(
            sitk.GetArrayFromImage(image),
            get_joint(joint).key,
            np.asarray(image.GetSpacing(), float),
            np.asarray(image.GetDirection(), float).reshape(3, 3),
            np.asarray(image.GetOrigin(), float),
            unreliable,
            boxes,
        )

    def to_lps(self, kji: np.ndarray) -> np.ndarray:
        """(N, 3) numpy (k, j, i) indices (fractional allowed) -> (N, 3) LPS mm."""
        ijk = np.asarray(kji, float)[:, ::-1]
        return self.origin + (ijk * self.spacing) @ self.direction.T

    def mask(self, bone: str) -> np.ndarray:
        """Boolean (k, j, i) mask of ``bone``, computed once per volume (the availability, border and
        landmark checks all ask for it) inside the bone's box, and read-only, as it is shared."""
        if bone not in self._masks:
            mask = np.zeros(self.labels.shape, bool)
            box = self.box(bone)
            if box is not None:
                mask[box] = self.labels[box] == get_joint(self.joint).label_of(bone)
            mask.setflags(write=False)
            self._masks[bone] = mask
        return self._masks[bone]

    @cached_property
    def _boxes(self) -> list[tuple[slice, ...] | None]:
        """Every bone's bounding box: the given ``boxes``, else found in one pass (``labelmaps.bone_boxes``)."""
        return self.boxes if self.boxes is not None else bone_boxes(self.labels, get_joint(self.joint).num_classes)

    def box(self, bone: str) -> tuple[slice, ...] | None:
        """Bounding box (numpy (k, j, i) slices) of ``bone``; None where it is absent."""
        return self._boxes[get_joint(self.joint).label_of(bone) - 1]

    def has(self, bone: str) -> bool:
        return self.box(bone) is not None

    def centroid(self, bone: str) -> tuple[np.ndarray, int]:
        """``bone``'s centre of mass (LPS mm) and voxel count, from its box alone, once per volume."""
        if bone not in self._centroids:
            box = self.box(bone)
            crop = self.mask(bone)[box]
            centre = centre_of_mass(crop) + [s.start for s in box]
            self._centroids[bone] = self.to_lps(centre[None])[0], int(crop.sum())
        return self._centroids[bone]

    def usable(self, bone: str) -> bool:
        """Whether a landmark finder may use ``bone``: present and not judged unreliable."""
        return self.has(bone) and bone not in self.unreliable

    def touches_border(self, bone: str) -> bool:
        """Whether ``bone`` is cut by the field of view: its box reaches within ``_BORDER_MM`` (at
        least one voxel) of a face of the volume. Not only the face itself: a segmentation often
        leaves the outermost slices of a bone empty (their signal falls off), which hides the cut."""
        box = self.box(bone)
        if box is None:
            return False
        layers = np.maximum(1, np.ceil(_BORDER_MM / self.spacing[::-1]).astype(int))
        return any(s.start < m or s.stop > n - m for s, n, m in zip(box, self.labels.shape, layers))

    def bone(self, bone: str) -> BoneGeometry:
        """``bone``'s geometry, built once per volume (one case): its voxel points and surface are
        computed once however many measures ask for them."""
        if not self.has(bone):
            raise NotMeasurable(f"{bone} missing")
        if bone not in self._bones:
            self._bones[bone] = BoneGeometry(self, bone, self.mask(bone))
        return self._bones[bone]

    def voxel_extent(self, direction: np.ndarray) -> float:
        """A voxel's extent (mm) along the unit LPS ``direction``: how finely the image samples it."""
        return float(np.abs(self.direction.T @ direction) @ self.spacing)

    def too_coarse(self, axes: dict[str, np.ndarray], what: str) -> NotMeasurable | None:
        """Why the voxels are too coarse to read ``what`` (e.g. "the trochlea"), or None: a voxel
        longer than ``AXIAL_VOXEL_MM`` along one of ``axes`` (description -> unit LPS direction)."""
        for name, axis in axes.items():
            extent = self.voxel_extent(axis)
            if extent > AXIAL_VOXEL_MM:
                return NotMeasurable(f"voxels {extent:.1f} mm {name}: too coarse for {what}")
        return None

    def near_border(self, points: np.ndarray, margin_mm: float) -> bool:
        """Whether any LPS point lies within ``margin_mm`` of a face of the volume."""
        ijk = (np.asarray(points, float) - self.origin) @ self.direction / self.spacing
        size = np.array(self.labels.shape[::-1]) - 1
        margin = margin_mm / self.spacing
        return bool(np.any(ijk < margin) or np.any(ijk > size - margin))


@dataclass
class BoneGeometry:
    """One bone of a ``LabelVolume``."""

    volume: LabelVolume
    key: str
    mask: np.ndarray

    @cached_property
    def points(self) -> np.ndarray:
        """(N, 3) LPS mm of the bone's voxel centres, in the volume's index order (found in its box)."""
        box = self.volume.box(self.key)
        return self.volume.to_lps(np.argwhere(self.mask[box]) + [s.start for s in box])

    @cached_property
    def surface(self) -> tuple[np.ndarray, np.ndarray]:
        """Sub-voxel surface points (N, 3) LPS and outward unit normals (N, 3): marching cubes
        (scikit-image) on the mask smoothed over half a voxel along each axis (at least 0.6 mm),
        which evens out the steps of thick slices without rounding the fine axes: for the shape
        of small features (a child's trochlear facets)."""
        return self._surface(self._fine_sigma())

    def surface_near(self, points: np.ndarray, margin_mm: float) -> tuple[np.ndarray, np.ndarray]:
        """As ``surface``, of the part of the bone within ``margin_mm`` of the box around ``points``
        (LPS; e.g. a section's voxels) only: its faces where the box cuts the bone lie
        ``margin_mm`` away, outside what the caller reads. Much less work than the whole bone."""
        kji = (np.asarray(points, float) - self.volume.origin) @ self.volume.direction / self.volume.spacing
        kji = kji[:, ::-1]
        pad = np.ceil(margin_mm / self.volume.spacing[::-1]).astype(int)
        own = self.volume.box(self.key)
        box = tuple(
            slice(max(int(np.floor(low)) - p, s.start), min(int(np.ceil(high)) + 1 + p, s.stop))
            for low, high, p, s in zip(kji.min(0), kji.max(0), pad, own)
        )
        return self._surface(self._fine_sigma(), box)

    def _fine_sigma(self) -> np.ndarray:
        return np.maximum(0.6, 0.5 * self.volume.spacing[::-1])

    @cached_property
    def smooth_surface(self) -> tuple[np.ndarray, np.ndarray]:
        """As ``surface``, smoothed over at least 1 mm and half the thickest voxel on every axis:
        for plane and sphere fits to a noisy segmentation (the glenoid face, the humeral head)."""
        return self._surface(np.full(3, max(1.0, 0.5 * float(self.volume.spacing.max()))))

    def _surface(
        self, sigma_kji_mm: np.ndarray, within: tuple[slice, ...] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        within = within or self.volume.box(self.key)
        box = tuple(slice(max(s.start - 2, 0), s.stop + 2) for s in within)
        spacing_kji = self.volume.spacing[::-1]
        smooth = ndimage.gaussian_filter(self.mask[box].astype(np.float32), sigma=sigma_kji_mm / spacing_kji)
        smooth = np.pad(smooth, 1)
        if smooth.max() <= 0.5:
            raise NotMeasurable(f"{self.key} too thin for a surface")
        vertices, _, normals, _ = measure.marching_cubes(
            smooth, 0.5, spacing=tuple(spacing_kji), gradient_direction="ascent"
        )
        start = np.array([s.start for s in box]) - 1
        kji = vertices / spacing_kji + start
        outward = normals[:, ::-1] @ self.volume.direction.T  # physical (k, j, i) components -> LPS
        return self.volume.to_lps(kji), outward / np.linalg.norm(outward, axis=1, keepdims=True)


class _Fitted:
    """scikit-image's model protocol (0.26): ``from_estimate`` returns the model, or something
    falsy when the fit fails."""

    params = None

    @classmethod
    def from_estimate(cls, points: np.ndarray):
        model = cls()
        return model if model.estimate(points) else None


class SphereModel(_Fitted):
    """A sphere for ``skimage.measure.ransac``: ``params`` = (cx, cy, cz, r); linear least squares
    (|p|² = 2 c·p + r² − |c|²)."""

    def estimate(self, points: np.ndarray) -> bool:
        design = np.column_stack([2 * points, np.ones(len(points))])
        target = (points**2).sum(1)
        solution, *_ = np.linalg.lstsq(design, target, rcond=None)
        radius_sq = solution[3] + solution[:3] @ solution[:3]
        if not np.isfinite(radius_sq) or radius_sq <= 0:
            return False
        self.params = np.array([*solution[:3], np.sqrt(radius_sq)])
        return True

    def residuals(self, points: np.ndarray) -> np.ndarray:
        return np.abs(np.linalg.norm(points - self.params[:3], axis=1) - self.params[3])


def fit_sphere(points: np.ndarray, tolerance_mm: float, seed: int = 0) -> tuple[np.ndarray, float, np.ndarray]:
    """Robust sphere through ``points``: centre, radius and the inlier mask."""
    if len(points) < 20:
        raise NotMeasurable("too few surface points for a sphere fit")
    model, _ = measure.ransac(
        _subset(points, seed), SphereModel, min_samples=8, residual_threshold=tolerance_mm, max_trials=300, rng=seed
    )
    inliers = None if model is None else model.residuals(points) < tolerance_mm
    if model is None or inliers.sum() < 20:
        raise NotMeasurable("no sphere fits the surface")
    refit = SphereModel()
    refit.estimate(points[inliers])
    return refit.params[:3], float(refit.params[3]), inliers


def principal_axes(points: np.ndarray) -> np.ndarray:
    """Rows: the unit principal axes of (N, 3) points about their mean, largest spread first (the
    inertia frame; SVD of the centred points). The one principal-axis computation of the
    measurements: plane normals, long axes, the patella's transverse axis."""
    _, _, rows = np.linalg.svd(points - points.mean(0), full_matrices=False)
    return rows


def plane_normal(points: np.ndarray) -> np.ndarray:
    """Unit normal of the least-squares plane through ``points`` (N >= 3)."""
    if len(points) < 3:
        raise NotMeasurable("too few points for a plane")
    return principal_axes(points)[2]


class PlaneModel(_Fitted):
    """A plane for ``skimage.measure.ransac``: ``params`` = (point, unit normal)."""

    def estimate(self, points: np.ndarray) -> bool:
        normal = plane_normal(points)
        if not np.all(np.isfinite(normal)):
            return False
        self.params = (points.mean(0), normal)
        return True

    def residuals(self, points: np.ndarray) -> np.ndarray:
        return np.abs((points - self.params[0]) @ self.params[1])


def fit_plane(
    points: np.ndarray, tolerance_mm: float, seed: int = 0, valid: Callable | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Robust plane through ``points`` (scikit-image RANSAC): a point on it and its unit normal.
    ``valid(point, normal)``: only planes it accepts are considered."""
    if len(points) < 30:
        raise NotMeasurable("too few points for a plane fit")
    accept = None if valid is None else (lambda model, *_: valid(*model.params))
    model, _ = measure.ransac(
        _subset(points, seed),
        PlaneModel,
        min_samples=3,
        residual_threshold=tolerance_mm,
        max_trials=300,
        rng=seed,
        is_model_valid=accept,
    )
    inliers = None if model is None else model.residuals(points) < tolerance_mm
    if model is None or inliers.sum() < 30:
        raise NotMeasurable("no plane fits the points")
    return points[inliers].mean(0), plane_normal(points[inliers])


def prominent_peaks(values: np.ndarray, prominence: float, distance: int) -> np.ndarray:
    """Indices of the peaks of a 1D profile that are at least ``distance`` samples apart and rise
    at least ``prominence`` above their higher base: ``scipy.signal.find_peaks(values,
    prominence=prominence, distance=distance)``'s peaks, without importing ``scipy.signal`` (about a
    second). A peak is a sample higher than its neighbours (the middle of a plateau); of peaks
    closer than ``distance``, the highest is kept; a peak's base on each side is the lowest sample
    before the profile rises above the peak again (or ends)."""
    count = len(values)
    peaks = []
    index = 1
    while index < count - 1:
        if values[index - 1] < values[index]:
            ahead = index + 1
            while ahead < count - 1 and values[ahead] == values[index]:
                ahead += 1
            if values[ahead] < values[index]:
                peaks.append((index + ahead - 1) // 2)
            index = ahead
        else:
            index += 1
    peaks = np.asarray(peaks, dtype=np.intp)
    keep = np.ones(len(peaks), dtype=bool)
    for position in np.argsort(values[peaks])[::-1]:  # highest first, as scipy orders them
        if keep[position]:
            close = np.abs(peaks - peaks[position]) < distance
            close[position] = False
            keep &= ~close
    peaks = peaks[keep]
    rises = [values[peak] - max(_base(values, peak, -1), _base(values, peak, 1)) for peak in peaks]
    return peaks[np.asarray(rises, dtype=float) >= prominence] if len(peaks) else peaks


def _base(values: np.ndarray, peak: int, direction: int) -> float:
    """The lowest sample from ``peak`` in ``direction`` until the profile rises above the peak."""
    lowest, index = values[peak], peak
    while 0 <= index < len(values) and values[index] <= values[peak]:
        lowest = min(lowest, values[index])
        index += direction
    return lowest


def _subset(points: np.ndarray, seed: int, size: int = 4000) -> np.ndarray:
    """At most ``size`` of the points (a fixed random choice): RANSAC needs no more."""
    if len(points) <= size:
        return points
    return points[np.random.default_rng(seed).choice(len(points), size, replace=False)]


def components(mask: np.ndarray, min_share: float) -> list[np.ndarray]:
    """3D components (26-connected) of ``mask`` holding more than ``min_share`` of it (at least
    one voxel more than ``max(1, int(min_share * voxels))``, as scikit-image's small-object
    removal keeps them), largest first; one labelling (scikit-image)."""
    labelled = measure.label(mask, connectivity=3)
    sizes = np.bincount(labelled.ravel())[1:]
    kept = np.flatnonzero(sizes > max(1, int(min_share * sizes.sum())))
    # sorted as the labels of the kept pieces alone would be (their numbering keeps its order)
    return [labelled == kept[index] + 1 for index in np.argsort(sizes[kept])[::-1]]


def centre_of_mass(mask: np.ndarray) -> np.ndarray:
    """Centre (fractional indices, one per axis) of a boolean ``mask``'s voxels, from its voxel
    counts per index of each axis (exact integer sums; ``ndimage.center_of_mass`` sums float
    products over the whole array)."""
    total = mask.sum()
    if total == 0:
        raise NotMeasurable("empty mask has no centre")
    axes = range(mask.ndim)
    return np.array(
        [
            np.dot(np.count_nonzero(mask, axis=tuple(a for a in axes if a != axis)), np.arange(mask.shape[axis]))
            / total
            for axis in axes
        ]
    )
