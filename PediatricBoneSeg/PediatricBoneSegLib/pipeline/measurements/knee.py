"""Knee: trochlear morphology (sulcus angle, trochlear depth, lateral trochlear inclination),
TT-TG distance, patellar tilt, bicondylar and tibial plateau widths.

Femoral frame: the posterior condylar line (posterior-most points of the medial and lateral
condyles) gives the mediolateral axis, in the patient's axial plane; anterior is perpendicular to
it. The trochlea is read on the axial section through its most anterior point (the facets'
summit): the femur's anterior profile there, a line fitted to each facet.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import ANTERIOR, SUPERIOR, Definition, NotMeasurable, angle_deg, points_by_measure, project, unit
from .geometry import BoneGeometry, LabelVolume, principal_axes, prominent_peaks

_REF_DEJOUR = "Dejour H et al., Knee Surg Sports Traumatol Arthrosc 1994;2:19-26"
_REF_PFIRRMANN = "Pfirrmann CWA et al., Radiology 2000;216:858-64"
_SIDED = ("femur", "tibia")  # with the fibula, which says which side is lateral (``sided_by``)
_TROCHLEA = ("posterior_condyles", "trochlea")

DEFINITIONS = (
    Definition(
        "sulcus_angle",
        "knee",
        "Sulcus angle",
        "deg",
        "Angle between the lateral and medial trochlear facets (lines fitted to the femur's anterior profile) "
        "on the axial section through the trochlear summit; higher = flatter (dysplasia above ~145 deg).",
        "Brattstrom H, Acta Orthop Scand Suppl 1964;68; " + _REF_DEJOUR,
        ("femur",),
        needs=_TROCHLEA,
        plane="axial",
    ),
    Definition(
        "trochlear_depth",
        "knee",
        "Trochlear depth",
        "mm",
        "Mean anteroposterior height of the lateral and medial facet summits above the groove, perpendicular "
        "to the posterior condylar line (dysplasia below ~3 mm in adults).",
        _REF_PFIRRMANN,
        ("femur",),
        needs=_TROCHLEA,
        plane="axial",
    ),
    Definition(
        "lateral_trochlear_inclination",
        "knee",
        "Lateral trochlear inclination",
        "deg",
        "Angle between the lateral facet and the posterior condylar line on the trochlear section "
        "(dysplasia below ~11 deg).",
        "Carrillon Y et al., Radiology 2000;216:582-5",
        _SIDED,
        needs=_TROCHLEA,
        plane="axial",
        sided_by="fibula",
    ),
    Definition(
        "tt_tg",
        "knee",
        "TT-TG distance",
        "mm",
        "Mediolateral distance, along the posterior condylar line, from the deepest point of the trochlear "
        "groove to the tibial tubercle's apex; positive = tubercle lateral.",
        "Goutallier D et al., Rev Chir Orthop 1978;64:423-8; Schoettle PB et al., Knee 2006;13:26-31",
        _SIDED,
        needs=(*_TROCHLEA, "tubercle"),
        plane="axial",
        sided_by="fibula",
    ),
    Definition(
        "patellar_tilt",
        "knee",
        "Patellar tilt",
        "deg",
        "Angle between the patella's transverse (mediolateral principal) axis in the axial plane and the "
        "posterior condylar line; positive = lateral tilt (medial edge anterior).",
        "Grelsamer RP et al., J Bone Joint Surg Br 1993;75:822-4",
        (*_SIDED, "patella"),
        ("patella",),
        needs=("posterior_condyles", "patella_axis"),
        plane="axial",
        sided_by="fibula",
    ),
    Definition(
        "bicondylar_width",
        "knee",
        "Bicondylar (epicondylar) width",
        "mm",
        "Largest extent of the distal femur along the posterior condylar line.",
        "Hoshino Y et al., Knee Surg Sports Traumatol Arthrosc 2012 (femoral width)",
        ("femur",),
        needs=("posterior_condyles", "epicondyles"),
        plane="axial",
    ),
    Definition(
        "tibial_plateau_width",
        "knee",
        "Tibial plateau width",
        "mm",
        "Largest extent of the proximal tibia along the posterior condylar line.",
        "Erkocak OF et al., Knee 2016 (tibial plateau dimensions)",
        ("femur", "tibia"),
        needs=("posterior_condyles", "plateau"),
        plane="axial",
    ),
)


def frame(posterior_condyles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Medial and anterior unit axes in the axial plane from (medial, lateral) condyle points."""
    medial = unit(project(posterior_condyles[0] - posterior_condyles[1], SUPERIOR))
    anterior = np.cross(SUPERIOR, medial)
    return medial, anterior if anterior @ ANTERIOR > 0 else -anterior


def display(landmarks: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Per measure whose landmarks are present, the points shown and read by its point function:
    its landmarks, the trochlea as (lateral summit, groove, medial summit) so that an angle's
    vertex, the groove, is its middle point (as Slicer's angle Markups measure)."""
    shown = points_by_measure(DEFINITIONS, landmarks)
    for points in shown.values():
        if "trochlea" in points:
            points["trochlea"] = points["trochlea"][[1, 0, 2]]
    return shown


def _facets(points: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The groove and the vectors from it to the lateral and medial facet summits."""
    lateral_peak, groove, medial_peak = points["trochlea"]
    return groove, lateral_peak - groove, medial_peak - groove


def sulcus_angle(points: dict[str, np.ndarray]) -> float:
    _, to_lateral, to_medial = _facets(points)
    return angle_deg(project(to_lateral, SUPERIOR), project(to_medial, SUPERIOR))


def trochlear_depth(points: dict[str, np.ndarray]) -> float:
    _, anterior = frame(points["posterior_condyles"])
    _, to_lateral, to_medial = _facets(points)
    return float((to_lateral @ anterior + to_medial @ anterior) / 2.0)


def lateral_trochlear_inclination(points: dict[str, np.ndarray]) -> float:
    medial, anterior = frame(points["posterior_condyles"])
    _, to_lateral, _ = _facets(points)
    return float(np.degrees(np.arctan2(to_lateral @ anterior, -(to_lateral @ medial))))


def tt_tg(points: dict[str, np.ndarray]) -> float:
    medial, _ = frame(points["posterior_condyles"])
    groove, _, _ = _facets(points)
    return float((groove - points["tubercle"][0]) @ medial)


def patellar_tilt(points: dict[str, np.ndarray]) -> float:
    medial, anterior = frame(points["posterior_condyles"])
    axis = points["patella_axis"][1] - points["patella_axis"][0]
    axis = axis if axis @ medial > 0 else -axis
    return float(np.degrees(np.arctan2(axis @ anterior, axis @ medial)))


def _width(points: np.ndarray, condyles: np.ndarray) -> float:
    medial, _ = frame(condyles)
    return float(abs(np.diff(points @ medial)[0]))


def bicondylar_width(points: dict[str, np.ndarray]) -> float:
    return _width(points["epicondyles"], points["posterior_condyles"])


def tibial_plateau_width(points: dict[str, np.ndarray]) -> float:
    return _width(points["plateau"], points["posterior_condyles"])


POINT_FUNCTIONS = {  # measure -> its value from its shown points (``display``) alone
    "bicondylar_width": bicondylar_width,
    "tibial_plateau_width": tibial_plateau_width,
    "sulcus_angle": sulcus_angle,
    "trochlear_depth": trochlear_depth,
    "lateral_trochlear_inclination": lateral_trochlear_inclination,
    "tt_tg": tt_tg,
    "patellar_tilt": patellar_tilt,
}


def values(landmarks: dict[str, np.ndarray]) -> dict[str, float]:
    """Measures from the landmarks (LPS): ``posterior_condyles`` (medial, lateral), ``trochlea``
    (groove, lateral summit, medial summit), ``tubercle`` (apex), ``patella_axis`` (two points),
    ``epicondyles`` and ``plateau`` (the two ends of each width); a measure whose landmarks are
    absent is left out. Each is its ``POINT_FUNCTIONS`` entry on its ``display`` points, the one
    formula the pipeline, the generator's ground truth and the Slicer Markups share."""
    shown = display(landmarks)
    return {key: function(shown[key]) for key, function in POINT_FUNCTIONS.items() if key in shown}


def _width_ends(points: np.ndarray, medial: np.ndarray, pad: float) -> np.ndarray:
    """The extreme voxel centres along ``medial``, pushed out by ``pad`` (half a voxel: the surface
    lies beyond the outer centres)."""
    along = points @ medial
    return np.stack([points[np.argmin(along)] - pad * medial, points[np.argmax(along)] + pad * medial])


def _mediolateral_seed(volume: LabelVolume) -> np.ndarray:
    """A first mediolateral axis for the posterior condylar line: from the fibula (lateral) to the
    tibia when the tibia can be used and the fibula is present (even judged unreliable: only its
    side is read; the measures that need the side are then marked, or not measurable below the
    side quality floor, ``measurements.SIDE_QUALITY_FLOOR``), which gives medial its
    anatomical sign; else the widest axial direction of the distal femur, whose sign is arbitrary
    (so the measures that need to know the lateral side also need the fibula)."""
    if volume.usable("tibia") and volume.has("fibula"):
        return unit(project(volume.centroid("tibia")[0] - volume.centroid("fibula")[0], SUPERIOR))
    femur = volume.bone("femur").points
    height = femur @ SUPERIOR
    distal = femur[height < height.min() + _DISTAL_FEMUR_MM]
    return principal_axes(distal - np.outer(distal @ SUPERIOR, SUPERIOR))[0]


_DISTAL_FEMUR_MM = 30.0  # the condyles and the trochlea: the femur's widest part


def landmarks(volume: LabelVolume) -> dict[str, np.ndarray | NotMeasurable]:
    """The landmarks of ``values`` from a label map: a landmark that cannot be found holds the
    ``NotMeasurable`` saying why (raises it when the femoral frame itself fails)."""
    femur = volume.bone("femur").points
    medial0 = _mediolateral_seed(volume)
    posterior = -unit(project(ANTERIOR, SUPERIOR))
    condyles = None
    for _ in range(3):
        centre = femur @ medial0
        middle = np.median(centre)
        sides = []
        for half in (centre > middle, centre <= middle):
            depth = femur[half] @ posterior
            sides.append(femur[half][depth > depth.max() - 1.0].mean(0))
        condyles = np.stack(sides)
        medial0, anterior = frame(condyles)
        posterior = -anterior
    medial, anterior = medial0, -posterior
    out: dict[str, np.ndarray | NotMeasurable] = {
        "posterior_condyles": condyles,
        "epicondyles": _width_ends(femur, medial, 0.5 * volume.voxel_extent(medial)),
    }
    if volume.usable("tibia"):
        out["plateau"] = _width_ends(volume.bone("tibia").points, medial, 0.5 * volume.voxel_extent(medial))
    for name, bone, finder in (("trochlea", "femur", _trochlea), ("tubercle", "tibia", _tubercle)):
        if volume.usable(bone):
            try:
                out[name] = finder(volume, volume.bone(bone), medial, anterior)
            except NotMeasurable as error:
                out[name] = error
    if volume.has("patella"):
        patella = volume.bone("patella").points
        flat = patella - np.outer(patella @ SUPERIOR, SUPERIOR)
        transverse = principal_axes(flat)[0]
        centre = patella.mean(0)
        out["patella_axis"] = np.stack([centre - 10 * transverse, centre + 10 * transverse])
    return out


def _trochlea(volume: LabelVolume, bone: BoneGeometry, medial: np.ndarray, anterior: np.ndarray) -> np.ndarray:
    """Groove and facet summits (LPS) on the axial section through the femur's most anterior point,
    read on the section's anterior envelope by ``facets_from_profile``. The envelope comes from the
    sub-voxel surface, not voxel centres: a facet a few mm high spans one or two thick slices."""
    femur = bone.points
    front = femur @ anterior
    summit = femur[front > front.max() - 1.0].mean(0)
    if volume.near_border(summit[None], 3.0):
        raise NotMeasurable("trochlea cut by the field of view")
    coarse = volume.too_coarse({"medial to lateral": medial, "front to back": anterior}, "the trochlea")
    if coarse is not None:  # a rule on the voxels: a poor segmentation's deepened groove cannot pass it
        raise coarse
    near = femur[np.abs((femur - summit) @ SUPERIOR) <= _SECTION_HALF_MM + volume.voxel_extent(SUPERIOR)]
    surface, normals = bone.surface_near(near, margin_mm=_SECTION_HALF_MM + 4.0)  # beyond the smoothing's reach
    section = surface[(np.abs((surface - summit) @ SUPERIOR) <= _SECTION_HALF_MM) & (normals @ anterior > 0.0)]
    if len(section) < 10:
        raise NotMeasurable("no trochlear surface on the axial section")
    along, height = section @ medial, section @ anterior
    bins = np.floor((along - along.min()) / PROFILE_STEP_MM).astype(int)
    profile = np.full(bins.max() + 1, -np.inf)
    np.maximum.at(profile, bins, height)
    filled = np.isfinite(profile)
    positions = along.min() + (np.arange(len(profile)) + 0.5) * PROFILE_STEP_MM
    profile = np.interp(positions, positions[filled], profile[filled])  # bins the surface skipped
    return on_section(summit, medial, anterior, facets_from_profile(positions, profile, 0.2 * np.ptp(femur @ medial)))


def on_section(through: np.ndarray, medial: np.ndarray, anterior: np.ndarray, points: Sequence) -> np.ndarray:
    """(N, 3) LPS of (mediolateral mm, anterior mm) ``points`` of the axial section through the LPS
    point ``through`` (its ``medial`` and ``anterior`` axes, as ``facets_from_profile`` reads it)."""
    base = through - (through @ medial) * medial - (through @ anterior) * anterior
    return np.stack([base + m * medial + h * anterior for m, h in points])


_SECTION_HALF_MM = 0.75  # half-thickness of the section: thick slices' in-between surface is interpolated
PROFILE_STEP_MM = 0.25  # sampling of a trochlear envelope along the mediolateral axis
_FACET_PART = (0.2, 0.8)  # of the way from the groove to the summit: the facet's straight part


def facets_from_profile(
    positions: np.ndarray, profile: np.ndarray, apart_mm: float, prominence_mm: float = 0.3
) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
    """Groove, lateral summit and medial summit, each (mediolateral mm, anterior mm), of a
    trochlear section's anterior envelope ``profile`` sampled every ``PROFILE_STEP_MM`` at
    ``positions`` (increasing = medial). The summits are the envelope's two highest peaks at least
    ``apart_mm`` apart and rising ``prominence_mm`` above the groove (less than a segmentation's
    surface noise would be a bump); each facet's line is fitted on its straight middle part (rounded groove and
    summit left out) and the groove is where the two lines meet. The summits are given on their
    facet's line, so that the angle at the groove is the angle between the two facets. Shared by
    the measurement (envelope of the segmented surface) and the phantoms' ground truth (envelope
    of the analytic bone)."""
    apart = max(1, int(apart_mm / PROFILE_STEP_MM))
    padded = np.concatenate([[-np.inf], profile, [-np.inf]])
    peaks = prominent_peaks(padded, prominence_mm, apart) - 1
    if len(peaks) < 2:
        raise NotMeasurable("no trochlear groove between two facets")
    low, high = positions[np.sort(peaks[np.argsort(profile[peaks])[-2:]])]
    between = (positions >= low) & (positions <= high)
    groove = positions[between][np.argmin(profile[between])]
    lines = []
    for _ in range(3):  # the groove's position and the facet lines refine each other
        lines = [_facet_line(positions, profile, groove, summit) for summit in (low, high)]
        (slope_a, icpt_a), (slope_b, icpt_b) = lines
        if abs(slope_a - slope_b) < 1e-6:
            raise NotMeasurable("flat trochlea: the facets do not meet")
        groove = float(np.clip((icpt_b - icpt_a) / (slope_a - slope_b), low, high))
    on_line = [
        (float(m), float(np.polyval(line, m))) for m, line in ((groove, lines[0]), (low, lines[0]), (high, lines[1]))
    ]
    return on_line[0], on_line[1], on_line[2]


def _facet_line(positions: np.ndarray, profile: np.ndarray, groove: float, summit: float) -> np.ndarray:
    """Slope and intercept of the line fitted to the envelope between ``groove`` and ``summit``
    (mediolateral mm), its rounded ends left out."""
    near, far = (groove + f * (summit - groove) for f in _FACET_PART)
    part = (positions >= min(near, far)) & (positions <= max(near, far))
    if part.sum() < 3:
        raise NotMeasurable("trochlear facet too small to fit")
    return np.polyfit(positions[part], profile[part], 1)


def _tubercle(volume: LabelVolume, bone: BoneGeometry, medial: np.ndarray, anterior: np.ndarray) -> np.ndarray:
    """Apex of the tibial tubercle: the most anterior tibia point below the plateau, anterior taken
    perpendicular to the tibia's own axis (the plateau's mean surface normal: the knee may be
    flexed)."""
    tibia = bone.points
    points, normals = bone.surface
    long_axis = SUPERIOR
    for _ in range(2):
        height = points @ long_axis
        top = (normals @ long_axis > 0.7) & (height > height.max() - 0.25 * np.ptp(tibia @ medial))
        if top.sum() < 10:
            raise NotMeasurable("tibial plateau not found")
        long_axis = unit(project(normals[top].mean(0), medial))
    front_axis = unit(np.cross(long_axis, medial))
    front_axis = front_axis if front_axis @ anterior > 0 else -front_axis
    height = tibia @ long_axis
    below = tibia[height < height.max() - 0.2 * np.ptp(tibia @ medial)]
    if len(below) == 0:
        raise NotMeasurable("tibia below the plateau not in view")
    front = below @ front_axis
    apex = below[front > front.max() - 1.5].mean(0)
    if volume.near_border(apex[None], 2.0):
        raise NotMeasurable("tibial tubercle cut by the field of view")
    return apex[None]
