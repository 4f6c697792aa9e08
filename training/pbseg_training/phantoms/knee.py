"""Knee anatomy: distal femur (shaft, metaphyseal flare, condyles, trochlea, intercondylar notch),
proximal tibia (plateau, eminence, tubercle), patella, fibular head and neck; menisci, cruciate and
collateral ligaments, patellar and quadriceps tendons, Hoffa's and popliteal fat, suprapatellar
fluid. Frame of ``anatomy.py``, origin on the joint line between the condyles."""

from __future__ import annotations

import numpy as np

from .anatomy import BoneModel, Growth, JointModel, Physis, SoftStructure, bounds_around
from .morphology import KneeMorphology, axis_rotation
from .shapes import (
    Points,
    box,
    capsule,
    ellipsoid,
    flat_capsule,
    half_space,
    rotated,
    smooth_subtract,
    smooth_union,
    subtract,
    torus,
)


def _vary(rng: np.random.Generator, spread: float = 0.06) -> float:
    return float(rng.uniform(1.0 - spread, 1.0 + spread))


_TROCHLEA = ((0.0, -13.0, 34.0), (30.0, 16.0, 20.0))  # generator 2.0: centre and radii of its front


def _facet_normals(morphology: KneeMorphology) -> tuple[np.ndarray, np.ndarray]:
    """Outward (anterior) unit normals of the lateral (-x) and medial (+x) trochlear facets."""
    lateral, medial = np.radians(morphology.lateral_facet_deg), np.radians(morphology.medial_facet_deg)
    return np.array([np.sin(lateral), -np.cos(lateral), 0.0]), np.array([-np.sin(medial), -np.cos(medial), 0.0])


def _facet_peak(groove: np.ndarray, slope_deg: float, towards: float) -> np.ndarray:
    """Where a facet line from the groove (in the axial section through the trochlea's centre)
    leaves the trochlear ellipsoid: the facet's summit. ``towards``: -1 lateral, +1 medial."""
    (cx, cy, cz), (rx, ry, _) = _TROCHLEA
    d = np.array([towards * np.cos(np.radians(slope_deg)), -np.sin(np.radians(slope_deg))])
    q = np.array([(groove[0] - cx) / rx, (groove[1] - cy) / ry])
    e = d / np.array([rx, ry])
    a, b, c = e @ e, 2 * q @ e, q @ q - 1.0
    t = (-b + np.sqrt(b * b - 4 * a * c)) / (2 * a)
    return np.array([groove[0] + t * d[0], groove[1] + t * d[1], cz])


def build_knee(rng: np.random.Generator, growth: Growth, morphology: KneeMorphology | None = None) -> JointModel:
    """``morphology`` None: generator 1.0's trochlea, tubercle and patella."""
    c = growth.cartilage
    shift = growth.joint_shift(6.0)  # tibia and fibula move down by this much
    condyle = (_vary(rng), _vary(rng), _vary(rng))
    notch_half = 9.0 * _vary(rng, 0.12)
    tubercle = _vary(rng, 0.15)
    patella_height = 32.0 + float(rng.uniform(-5.0, 7.0))  # patella alta / baja
    patella_shift = growth.joint_shift(5.0)
    fibula_y = 17.0 + float(rng.uniform(-3.0, 3.0))
    physis_wave = float(rng.uniform(0.8, 1.8))
    ossified = float(np.clip(0.6 + 0.4 * (growth.age - 2.0) / 6.0, 0.6, 1.0))  # patella ossification

    def femur(p: Points) -> np.ndarray:
        shaft = capsule(p, (0, -4, 55), (0, -7, 400), 13.5)
        flare = ellipsoid(p, (0, 0, 38), (33, 24, 34))
        out = smooth_union(shaft, flare, 14.0)
        medial = ellipsoid(p, (21, 6, 22 * condyle[0]), (15 * condyle[1], 28 * condyle[2], 22 * condyle[0]))
        lateral = ellipsoid(p, (-21, 7, 23 * condyle[1]), (15 * condyle[0], 27 * condyle[2], 23 * condyle[1]))
        out = smooth_union(out, np.minimum(medial, lateral), 7.0)
        if morphology is None:
            trochlea = ellipsoid(p, (0, -13, 34), (30, 14, 20))
            out = smooth_union(out, trochlea, 7.0)
        else:  # two planar facets meeting at the groove, cut into the trochlea's front
            facets = np.minimum(half_space(p, groove, -facet_normals[0]), half_space(p, groove, -facet_normals[1]))
            out = smooth_union(out, np.maximum(ellipsoid(p, *_TROCHLEA), facets), 2.0)
        epicondyles = np.minimum(ellipsoid(p, (33, 4, 28), (7, 11, 10)), ellipsoid(p, (-33, 5, 28), (6, 10, 9)))
        out = smooth_union(out, epicondyles, 5.0)
        if morphology is None:
            groove_1 = capsule(p, (0, -31, 14), (0, -30, 56), 5.0)
            out = smooth_subtract(out, groove_1, 3.0)
        return smooth_subtract(out, notch(p), 3.0)

    def notch(p: Points) -> np.ndarray:
        return box(p, (0, 22, 6), (notch_half, 24, 16), rounding=4.0)

    def femur_articular(p: Points) -> np.ndarray:
        # Epiphysis surface, except the notch roof where the cruciate ligaments attach.
        return np.maximum(femur_physis(p), 3.0 - notch(p))

    def femur_physis(p: Points) -> np.ndarray:
        return p[2] - (24.0 + physis_wave * np.cos(p[0] / 12.0) + 0.05 * p[1])

    if morphology is not None:
        front = _TROCHLEA[0][1] - _TROCHLEA[1][1]
        groove = np.array([1.0, front + morphology.groove_depth, _TROCHLEA[0][2]])
        facet_normals = _facet_normals(morphology)
    tubercle_x = 0.0 if morphology is None else -morphology.tubercle_lateral_mm

    def tibia(p: Points) -> np.ndarray:
        z = p[2] + shift
        q = (p[0], p[1], z)
        plateau = ellipsoid(q, (0, 4, -14), (38, 27, 9))
        eminence = ellipsoid(q, (0, 3, -6), (7, 10, 5))
        out = smooth_union(plateau, eminence, 3.0)
        metaphysis = ellipsoid(q, (0, 4, -35), (32, 25, 26))
        out = smooth_union(out, metaphysis, 8.0)
        shaft = capsule(q, (0, 6, -45), (0, 10, -400), 13.0)
        out = smooth_union(out, shaft, 15.0)
        bump = ellipsoid(q, (tubercle_x, -20, -45), (11 * tubercle, 8 * tubercle, 16))
        return smooth_union(out, bump, 6.0)

    def tibia_physis(p: Points) -> np.ndarray:
        # Anteriorly the plate dips into the tubercle (its apophysis).
        ramp = (-p[1] - 8.0) / 14.0
        z_plate = -22.0 - shift - 9.0 * np.clip(ramp, 0.0, 1.0)
        steep = (ramp > 0) & (ramp < 1)
        return (z_plate - p[2]) / np.where(steep, np.float32(np.hypot(1.0, 9.0 / 14.0)), np.float32(1.0))

    def fibula(p: Points) -> np.ndarray:
        q = (p[0], p[1], p[2] + shift)
        head = ellipsoid(q, (-41, fibula_y, -42), (11, 11, 12))
        apex = ellipsoid(q, (-43, fibula_y + 4, -31), (5, 5, 6))
        shaft = capsule(q, (-41, fibula_y, -50), (-36, fibula_y - 2, -400), 7.0, 6.0)
        out = smooth_union(smooth_union(head, apex, 4.0), shaft, 7.0)
        return subtract(out, tibia(p), 2.5)

    def fibula_physis(p: Points) -> np.ndarray:
        return (-52.0 - shift) - p[2]

    patella_center = (0.0, -42.0 - patella_shift, patella_height)
    patella_radii = (22.0 * ossified, 10.0 * ossified, 23.0 * ossified)

    tilt = None if morphology is None else axis_rotation("z", -morphology.patellar_tilt_deg)  # medial edge forward

    def tilted(p: Points) -> Points:
        return p if tilt is None else rotated(p, patella_center, tilt)

    def patella(p: Points) -> np.ndarray:
        p = tilted(p)
        body = ellipsoid(p, patella_center, patella_radii)
        flat_front = half_space(p, (0, patella_center[1] - 7.0 * ossified, 0), (0, 1, 0))
        return np.maximum(body, flat_front)

    def patella_cartilage(p: Points) -> np.ndarray:
        return ellipsoid(tilted(p), patella_center, (22.0, 10.0, 23.0))

    def patella_back(p: Points) -> np.ndarray:
        return half_space(tilted(p), patella_center, (0, 1, 0))

    bones = (
        BoneModel(
            key="femur",
            sdf=femur,
            bounds=((-45, -35, -8), (45, 45, 400)),
            cortex=1.0,
            cartilage=c,
            articular=femur_articular,
            physes=(Physis(femur_physis, growth.physis, growth.is_open(0.5)),),
            shaft=lambda p: np.clip((p[2] - 60.0) / 40.0, 0.0, 1.0),
            shaft_cortex=3.0,
            red_marrow=growth.red_marrow,
        ),
        BoneModel(
            key="tibia",
            sdf=tibia,
            bounds=((-45, -35, -400 - shift), (45, 45, 2 - shift)),
            cortex=1.0,
            cartilage=c,
            articular=lambda p: half_space(p, (0, 0, -11 - shift), (0, 0, 1)),
            physes=(Physis(tibia_physis, growth.physis, growth.is_open(0.7)),),
            shaft=lambda p: np.clip((-p[2] - shift - 70.0) / 40.0, 0.0, 1.0),
            shaft_cortex=3.0,
            red_marrow=growth.red_marrow,
        ),
        BoneModel(
            key="patella",
            sdf=patella,
            bounds=bounds_around(patella_center, (26, 14, 27)),
            cortex=0.8,
            cartilage=c * 0.8,
            articular=patella_back,
        ),
        BoneModel(
            key="fibula",
            sdf=fibula,
            bounds=((-56, fibula_y - 16, -400 - shift), (-24, fibula_y + 16, -20 - shift)),
            cortex=0.8,
            cartilage=min(c, 2.5),
            articular=lambda p: half_space(p, (0, 0, -40 - shift), (0, 0, 1)),
            physes=(Physis(fibula_physis, growth.physis * 0.9, growth.is_open(0.8)),),
            red_marrow=growth.red_marrow,
        ),
    )

    mid_gap = -3.0 - shift / 2.0
    soft = (
        SoftStructure("cartilage", patella_cartilage, bounds_around(patella_center, (26, 14, 27))),
        SoftStructure(
            "tendon",
            lambda p: flat_capsule(
                p, (0, -44 - patella_shift, patella_height - 20), (0, -27, -48 - shift), 13.0, 3.0, (0, 1, 0)
            ),
            ((-16, -60, -60 - shift), (16, -20, patella_height)),
        ),
        SoftStructure(
            "tendon",
            lambda p: flat_capsule(
                p, (0, -44 - patella_shift, patella_height + 18), (0, -30, 160), 16.0, 4.0, (0, 1, 0)
            ),
            ((-20, -60, patella_height), (20, -20, 170)),
        ),
        SoftStructure(  # anterior cruciate ligament
            "tendon",
            lambda p: capsule(p, (-9, 24, 14), (2, -6, -5 - shift), 4.0),
            ((-16, -14, -12 - shift), (10, 30, 20)),
        ),
        SoftStructure(  # posterior cruciate ligament
            "tendon",
            lambda p: capsule(p, (8, 2, 16), (0, 29, -12 - shift), 4.5),
            ((-6, -4, -20 - shift), (14, 36, 22)),
        ),
        SoftStructure(
            "tendon",
            lambda p: np.minimum(
                torus(p, (20, 6, mid_gap), 15.0, 4.5, 0.6), torus(p, (-20, 6, mid_gap), 13.0, 4.5, 0.6)
            ),
            ((-40, -16, mid_gap - 5), (40, 28, mid_gap + 5)),
        ),
        SoftStructure(  # medial and lateral collateral ligaments
            "tendon",
            lambda p: np.minimum(
                flat_capsule(p, (41, 4, 34), (38, 2, -62 - shift), 8.0, 2.0, (1, 0, 0)),
                capsule(p, (-39, 8, 28), (-47, fibula_y, -34 - shift), 2.5),
            ),
            ((-52, -8, -70 - shift), (46, 22, 40)),
        ),
        SoftStructure(
            "fluid",
            lambda p: ellipsoid(p, (0, -24, 55), (20, 3.5, 16)),
            bounds_around((0, -24, 55), (22, 6, 18)),
        ),
        SoftStructure(  # Hoffa's fat pad
            "fat",
            lambda p: ellipsoid(p, (0, -27, -3 - shift / 2), (22, 11, 13)),
            bounds_around((0, -27, -3 - shift / 2), (24, 13, 15)),
        ),
        SoftStructure(
            "fat",
            lambda p: ellipsoid(p, (2, 40, 8), (20, 14, 34)),
            bounds_around((2, 40, 8), (22, 16, 36)),
        ),
        SoftStructure(  # popliteal vessels
            "vessel",
            lambda p: capsule(p, (4, 42, 400), (3, 40, -400), 4.0),
            ((-4, 34, -400), (10, 48, 400)),
        ),
    )

    fat = float(rng.uniform(3.0, 10.0)) * growth.scale**0.5

    def body(p: Points) -> np.ndarray:
        leg = flat_capsule(p, (0, 6, -400), (0, 2, 20), 52.0, 48.0, (0, 1, 0))
        thigh = capsule(p, (0, 2, 20), (0, 8, 400), 50.0, 80.0)
        out = smooth_union(leg, thigh, 20.0)
        front = ellipsoid(p, (0, -20, 22), (46, 36, 46))
        calf = ellipsoid(p, (0, 22, -130), (50, 44, 95))
        return smooth_union(smooth_union(out, front, 10.0), calf, 20.0)

    landmarks = {}
    if morphology is not None:
        lateral_peak = _facet_peak(groove, morphology.lateral_facet_deg, -1.0)
        medial_peak = _facet_peak(groove, morphology.medial_facet_deg, 1.0)
        medial_axis = tilt @ np.array([1.0, 0.0, 0.0])
        plateau_z = -14.0 - shift
        landmarks = {
            "posterior_condyles": (
                0,
                np.array([(21, 6 + 28 * condyle[2], 22 * condyle[0]), (-21, 7 + 27 * condyle[2], 23 * condyle[1])]),
            ),
            "trochlea": (0, np.array([groove, lateral_peak, medial_peak])),
            "epicondyles": (0, np.array([(40.0, 4.0, 28.0), (-39.0, 5.0, 28.0)])),
            "tubercle": (1, np.array([(tubercle_x, -20.0 - 8.0 * tubercle, -45.0 - shift)])),
            "plateau": (1, np.array([(38.0, 4.0, plateau_z), (-38.0, 4.0, plateau_z)])),
            "patella_axis": (2, np.asarray(patella_center) + np.outer([-10.0, 10.0], medial_axis)),
        }
    return JointModel(
        bones=bones,
        soft=soft,
        body=body,
        skin=1.2,
        fat=fat,
        fov_center=(float(rng.uniform(-4, 4)), float(rng.uniform(-6, 6)), 8.0 - shift / 2.0),
        fov_inplane=(72.0 + 82.0 * growth.scale) * float(rng.uniform(0.95, 1.1)),
        slab=95.0 * growth.scale + float(rng.uniform(15.0, 30.0)),
        slice_thickness=(3.0, 4.0),
        pixel_spacing=(0.4, 0.6),
        landmarks=landmarks,
    )
