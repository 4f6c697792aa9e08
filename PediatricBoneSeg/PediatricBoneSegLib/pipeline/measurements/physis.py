"""Growth plates of every long bone: open or closed, physeal area, epiphysis volume.

An open physis is cartilage, not bone: the bone's label splits into the epiphysis and the
metaphysis + shaft, two 3D components a thin gap apart. The epiphysis is the component nearer the
joint (the other bones' centroid); the physeal area is the area of its surface across the gap
(marching cubes on the lightly smoothed mask, scikit-image).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage import measure

from .base import SUPERIOR, Definition, Measurement, NotMeasurable
from .geometry import LabelVolume, centre_of_mass, components

LONG_BONES = ("femur", "tibia", "fibula", "humerus")
_REF = "Laor T, Jaramillo D. Radiology 2009;250:28-38 (MR imaging of the growth plate)"
STATUS = Definition(
    "growth_plate_open",
    None,
    "Growth plate open",
    "1 = open, 0 = closed",
    "Open when the bone's segmentation splits into an epiphysis and a metaphysis (each >= 2 % of the "
    "bone) separated by a physeal gap of at most 8 mm; closed when the bone is one piece, whole in the "
    "field of view, and its voxels are thin enough (every axis) to show a plate.",
    _REF,
    (),
    categories=("closed", "open"),
    plane="coronal",
)
AREA = Definition(
    "physeal_area",
    None,
    "Physeal surface area",
    "mm2",
    "Area of the epiphysis' surface facing the metaphysis across the open growth plate (one face).",
    _REF,
    (),
    plane="coronal",
)
VOLUME = Definition(
    "epiphysis_volume",
    None,
    "Epiphysis volume",
    "ml",
    "Volume of the ossified epiphysis beyond the open growth plate.",
    "Kan JH et al., Pediatr Radiol 2008 (epiphyseal ossification volume)",
    (),
    plane="coronal",
)
DEFINITIONS = (STATUS, AREA, VOLUME)
_MAX_GAP_MM = 8.0
_MIN_SHARE = 0.02
_BOX_MARGIN = 3  # voxels around the bone: _facing_area's own box (2) and the cut test (1)
_REGROW_STEPS = 2  # dilations that give a peeled piece back its surface (and a voxel more)
_MIN_SEEN_MM = 35.0  # head-foot length of a cut bone in view that holds its epiphysis and plate
_THINNEST_PLATE_MM = 1.8  # a gap this thin is seen only with voxels no thicker on any axis
# An open plate is a band of cartilage 2-3 mm thick: a network may label it bone (in bundled
# model 5's segmentations of 48 held-out phantoms, 6 of the 8 one-piece bones that were thin-sliced
# enough to judge had an open plate), so one piece only says "closed" with a reason to check it.
# Two pieces a gap apart are rarely a network's invention (all of its 17 "open" verdicts were right).
BRIDGED = "no physeal gap, but a segmentation may fill an open growth plate: confirm on the image"


def measure_bone(
    volume: LabelVolume, bone: str, joint_center: np.ndarray, segmented: bool = False
) -> list[Measurement]:
    """The three measures of ``bone`` (raises ``NotMeasurable`` for all three together).
    ``segmented``: the labels come from a network (not a reader or the truth), whose "closed"
    verdict is marked to be checked (``BRIDGED``)."""
    geometry = volume.bone(bone)
    # Everything below happens inside the bone's box: both pieces, the gap between them and the
    # distances across it lie there (distance transforms of the whole volume took seconds and GBs).
    box = tuple(slice(max(s.start - _BOX_MARGIN, 0), s.stop + _BOX_MARGIN) for s in volume.box(bone))
    corner = np.array([s.start for s in box])
    spacing = volume.spacing[::-1]
    pieces = _pieces(geometry.mask[box], spacing)
    if len(pieces) < 2:
        # A plate is not flat (the tibia's dips into the tubercle): any thick voxel axis can hide part.
        coarsest = float(volume.spacing.max())
        unreadable = None
        if coarsest > _THINNEST_PLATE_MM:
            unreadable = f"one piece, but voxels are {coarsest:.1f} mm thick: a growth plate could hide"
        elif volume.touches_border(bone) and (seen := float(np.ptp(geometry.points @ SUPERIOR))) < _MIN_SEEN_MM:
            unreadable = (
                f"one piece, but only {seen:.0f} mm of it in the field of view: its growth plate may lie outside"
            )
        if unreadable is not None:
            return [_none(definition, bone, unreadable) for definition in DEFINITIONS]
        return _closed(bone, "growth plate closed (one piece)", segmented)
    first, second = pieces[0], pieces[1]
    gap = float(_distances(_nearest(first, spacing), _surface_voxels(second) * spacing, _MAX_GAP_MM + 1.0).min())
    if gap > _MAX_GAP_MM:
        return _closed(bone, f"growth plate closed (second piece {gap:.0f} mm away: not a physeal gap)", segmented)
    centroids = [volume.to_lps(centre_of_mass(piece)[None] + corner)[0] for piece in (first, second)]
    near = int(np.argmin([np.linalg.norm(c - joint_center) for c in centroids]))
    epiphysis, metaphysis = (first, second) if near == 0 else (second, first)
    status = Measurement(STATUS, 1.0, bone=bone, landmarks={"epiphysis centre": centroids[near][None]})
    if _touches_volume_border(epiphysis, box, volume.labels.shape):
        cut = "epiphysis cut by the field of view"
        return [status, _none(AREA, bone, cut), _none(VOLUME, bone, cut)]
    area, centre = _facing_area(epiphysis, metaphysis, spacing, volume, corner, gap)
    epiphysis_ml = float(epiphysis.sum()) * float(np.prod(volume.spacing)) / 1000.0
    return [
        status,
        Measurement(AREA, area, bone=bone, landmarks={"physis centre": centre[None]}),
        Measurement(VOLUME, epiphysis_ml, bone=bone, landmarks={"epiphysis centre": centroids[near][None]}),
    ]


def _closed(bone: str, why: str, segmented: bool) -> list[Measurement]:
    """The three measures of a bone read as closed (``why``: the reason the area and volume are
    not measurable); a network's closed verdict is marked to be checked (``BRIDGED``)."""
    status = Measurement(STATUS, 0.0, BRIDGED if segmented else "", bone=bone)
    return [status, _none(AREA, bone, why), _none(VOLUME, bone, why)]


def _pieces(mask: np.ndarray, spacing_kji: np.ndarray) -> list[np.ndarray]:
    """The bone's pieces (``components``), largest first. When it is one piece, the pieces it
    falls into once its surface is peeled by one voxel, each grown back within the bone (where
    both reach a voxel, the second one takes it): a segmented physeal gap is often bridged by a
    few voxels. Only the fine axes (voxels up to ``_THINNEST_PLATE_MM``) are peeled, so a thick
    slice never cuts a thin bone in two."""
    pieces = components(mask, _MIN_SHARE)
    fine = spacing_kji <= _THINNEST_PLATE_MM
    if len(pieces) >= 2 or not fine.any():
        return pieces
    element = np.zeros((3, 3, 3), bool)
    element[1, 1, 1] = True
    for axis in np.flatnonzero(fine):
        element[tuple(slice(None) if a == axis else 1 for a in range(3))] = True
    cores = components(ndimage.binary_erosion(mask, element), _MIN_SHARE)
    if len(cores) < 2:
        return pieces
    owner = np.zeros(mask.shape, np.uint8)
    for index, core in enumerate(cores[:2], start=1):
        owner[core] = index
    for _ in range(_REGROW_STEPS):  # the peeled voxels go back to the core next to them
        grown = ndimage.grey_dilation(owner, footprint=element)
        owner = np.where(mask & (owner == 0), grown, owner)
    return [owner == index for index in (1, 2)]


def _touches_volume_border(piece: np.ndarray, box: tuple[slice, ...], shape: tuple[int, ...]) -> bool:
    """Whether ``piece`` (a mask of the array cut out by ``box``) reaches a face of the whole volume."""
    for axis, (cut, size) in enumerate(zip(box, shape)):
        if (cut.start == 0 and piece.take(0, axis).any()) or (cut.stop >= size and piece.take(-1, axis).any()):
            return True
    return False


def _facing_area(
    epiphysis: np.ndarray,
    metaphysis: np.ndarray,
    spacing: np.ndarray,
    volume: LabelVolume,
    corner: np.ndarray,
    gap_mm: float,
) -> tuple[float, np.ndarray]:
    """Area (mm²) of the epiphysis mesh within the gap's reach of the metaphysis, and its centre.
    ``epiphysis`` and ``metaphysis`` are masks of the volume's box that starts at index ``corner``;
    ``gap_mm``: the distance between their surfaces."""
    box = ndimage.find_objects(epiphysis.astype(np.uint8))[0]
    box = tuple(slice(max(s.start - 2, 0), s.stop + 2) for s in box)
    smooth = ndimage.gaussian_filter(epiphysis[box].astype(np.float32), 0.5)
    padded = np.pad(smooth, 1)
    vertices, faces, _, _ = measure.marching_cubes(padded, 0.5, spacing=tuple(spacing))
    offset = (np.array([s.start for s in box]) - 1) * spacing
    centres = (vertices[faces].mean(1) + offset) / spacing  # fractional (k, j, i)
    index = np.clip(np.round(centres).astype(int), 0, np.array(epiphysis.shape) - 1)
    reach = 0.5 * float(spacing.max()) + 0.5  # across the gap, not the sides
    distance = _distances(_nearest(metaphysis, spacing), index * spacing, gap_mm + 2 * reach + 1.0, reach)
    distance[metaphysis[tuple(index.T)]] = 0.0
    facing = distance < distance.min() + reach
    if not facing.any():
        raise NotMeasurable("physis surface not found")
    area = float(measure.mesh_surface_area(vertices, faces[facing]))
    return area, volume.to_lps(centres[facing] + corner).mean(0)


def _surface_voxels(mask: np.ndarray) -> np.ndarray:
    """(N, 3) indices of the voxels of ``mask`` with a 6-neighbour outside it. The voxel of a mask
    nearest to any point outside it is one of these, so distances to them are the distance
    transform's, for a fraction of its time and memory."""
    return np.argwhere(mask & ~ndimage.binary_erosion(mask, border_value=0))


def _distances(tree: cKDTree, points: np.ndarray, bound_mm: float, margin_mm: float = 0.0) -> np.ndarray:
    """Distance (mm) from each of ``points`` to the nearest point of ``tree``, exact wherever it is
    below the smallest one plus ``margin_mm`` (infinity may stand for larger ones). The search
    stops at ``bound_mm``, several times faster than the full search, which runs only when the
    smallest distance plus the margin is not below the bound. One thread: SciPy's worker threads
    (``workers=-1``) made a later Ctrl-C during the writing of a case crash the process (SIGSEGV),
    and on two cores they were not faster."""
    distance = tree.query(points, distance_upper_bound=bound_mm)[0]
    if distance.min(initial=np.inf) + margin_mm >= bound_mm:
        distance = tree.query(points)[0]
    return distance


def _nearest(mask: np.ndarray, spacing_kji: np.ndarray) -> cKDTree:
    """A KD-tree of ``mask``'s surface voxels in mm (query with ``index * spacing``)."""
    return cKDTree(_surface_voxels(mask) * spacing_kji)


def _none(definition: Definition, bone: str, reason: str) -> Measurement:
    return Measurement(definition, None, reason, bone=bone)
