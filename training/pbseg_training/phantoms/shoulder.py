"""Shoulder anatomy: proximal humerus (articular head, anatomical and surgical necks, greater and
lesser tuberosities, bicipital groove, shaft; tent-shaped growth plate), scapula (glenoid, neck,
blade with its thick lateral border, spine, acromion, coracoid); unlabeled clavicle; rotator-cuff
and biceps tendons, subacromial fat stripe, axillary fat, lung apex. Frame of ``anatomy.py``,
origin at the glenohumeral joint centre."""

from __future__ import annotations

import numpy as np

from .anatomy import BoneModel, Growth, JointModel, Physis, SoftStructure, bounds_around
from .morphology import ShoulderMorphology
from .shapes import (
    Points,
    box,
    capsule,
    ellipsoid,
    flat_capsule,
    half_space,
    oriented_ellipsoid,
    smooth_subtract,
    smooth_union,
    subtract,
)

# Scapular plane: blade axes (medial-posterior, superior, normal) anchored at the glenoid neck.
_U = np.array([0.85, 0.53, 0.0]) / np.linalg.norm([0.85, 0.53, 0.0])
_V = np.array([0.0, 0.0, 1.0])
_W = np.cross(_U, _V)
_BLADE_ORIGIN = np.array([22.0, 6.0, 0.0])
_FACE_DEPTH = 4.0  # generator 2.0: the glenoid ellipsoid is cut flat this deep (its articular face)


def _on_blade(a: float, b: float, c: float = 0.0) -> tuple[float, float, float]:
    return tuple(_BLADE_ORIGIN + a * _U + b * _V + c * _W)  # type: ignore[return-value]


def _glenoid_axes(morphology: ShoulderMorphology) -> np.ndarray:
    """Rows: the glenoid face normal (towards the head), its anteroposterior axis (posterior) and
    its superoinferior axis, from the drawn version (about the blade's vertical) and inclination."""
    v, i = np.radians(morphology.version_deg), np.radians(morphology.inclination_deg)
    horizontal = np.cos(v) * -_U + np.sin(v) * _W  # _W points anterior: positive version = anteversion
    normal = np.cos(i) * horizontal + np.sin(i) * _V
    posterior = np.cross(_V, horizontal)
    posterior = posterior if posterior[1] > 0 else -posterior
    return np.stack([normal, posterior, np.cross(normal, posterior)])


def build_shoulder(
    rng: np.random.Generator, growth: Growth, morphology: ShoulderMorphology | None = None
) -> JointModel:
    """``morphology`` None: generator 1.0's glenoid (facing straight lateral) and centred head."""
    c = growth.cartilage
    out_shift = growth.joint_shift(5.0)  # the humerus moves laterally (-x)
    head_radius = 23.0 * float(rng.uniform(0.93, 1.07))
    head_center = (-24.0 - out_shift, 2.0, 2.0)
    move = np.zeros(3)  # generator 2.0: translation of the whole humerus (version, subluxation)
    if morphology is not None:
        axes = _glenoid_axes(morphology)
        glenoid_center = np.array([9.0, 2.0, 0.0])
        face = glenoid_center + (9.0 - _FACE_DEPTH) * axes[0]  # centre of the flat articular face
        seated = face + (head_radius + 1.0 + _FACE_DEPTH + out_shift) * axes[0]  # head centred on it
        shift = morphology.subluxation * head_radius
        head_center = tuple(seated + shift * axes[1] + 0.75 * shift * axes[0])  # rides over the posterior rim
        move = np.asarray(head_center) - np.array([-24.0 - out_shift, 2.0, 2.0])
    tuberosity = float(rng.uniform(0.88, 1.12))
    blade_length = float(rng.uniform(0.9, 1.1))
    acromion_height = float(rng.uniform(-3.0, 3.0))
    facing = np.array([1.0, 0.15, 0.75]) / np.linalg.norm([1.0, 0.15, 0.75])  # articular surface direction

    def humerus(p: Points) -> np.ndarray:
        p = _moved(p, move)
        head_center_ = np.asarray(head_center) - move
        x0 = -out_shift
        head = ellipsoid(p, head_center_, (head_radius,) * 3)
        head = np.maximum(head, half_space(p, tuple(head_center_ - 8.0 * facing), facing))
        metaphysis = ellipsoid(p, (x0 - 32, 2, -18), (19, 18, 26))
        out = smooth_union(head, metaphysis, 8.0)
        greater = ellipsoid(p, (x0 - 44, 0, 2), (10 * tuberosity, 14, 13 * tuberosity))
        lesser = ellipsoid(p, (x0 - 30, -16, -6), (8, 7 * tuberosity, 10))
        out = smooth_union(smooth_union(out, greater, 6.0), lesser, 5.0)
        shaft = capsule(p, (x0 - 32, 2, -30), (x0 - 40, 4, -400), 11.5)
        out = smooth_union(out, shaft, 14.0)
        groove = capsule(p, (x0 - 39, -15, 14), (x0 - 37, -14, -60), 3.5)
        return smooth_subtract(out, groove, 2.0)

    def humerus_physis(p: Points) -> np.ndarray:
        # Tent-shaped plate: apex under the head centre, limbs down medially and laterally.
        p = _moved(p, move)
        height = -8.0 - 0.45 * np.abs(p[0] + 30.0 + out_shift) - 0.05 * p[1]
        return (height - p[2]) / np.float32(np.sqrt(1.0 + 0.45**2 + 0.05**2))  # distance along the normal

    def scapula(p: Points) -> np.ndarray:
        if morphology is None:
            glenoid = ellipsoid(p, (9, 2, 0), (9, 14, 19))
        else:
            glenoid = oriented_ellipsoid(p, glenoid_center, axes, (9, 14, 19))
            glenoid = np.maximum(glenoid, half_space(p, tuple(face), tuple(-axes[0])))  # the face plane
        neck = capsule(p, (12, 3, 0), (26, 6, -4), 11.0)
        out = smooth_union(glenoid, neck, 5.0)
        plate = box(p, _on_blade(48, -45 * blade_length), (40, 55 * blade_length, 2.2), np.stack([_U, _V, _W]), 1.5)
        border_top, border_bottom = _on_blade(0, -12), _on_blade(40, -100 * blade_length)
        along = np.asarray(border_bottom) - np.asarray(border_top)
        medial = np.cross(_W, along)  # in the blade plane, away from the lateral border
        plate = np.maximum(plate, half_space(p, border_top, -medial if medial @ _U < 0 else medial))
        out = smooth_union(out, plate, 6.0)
        out = smooth_union(out, capsule(p, border_top, border_bottom, 5.5, 4.5), 4.0)
        spine = capsule(p, _on_blade(8, 20, 5), _on_blade(88, 8, 6), 5.5, 3.5)
        acromion = flat_capsule(p, _on_blade(8, 20, 5), (-30, 8, 36 + acromion_height), 12.0, 4.0, (0, 0, 1))
        out = smooth_union(smooth_union(out, spine, 5.0), acromion, 6.0)
        coracoid = np.minimum(
            capsule(p, (14, -6, 14), (12, -28, 22), 6.0), capsule(p, (12, -28, 22), (-6, -36, 14), 5.5, 4.5)
        )
        out = smooth_union(out, coracoid, 4.0)
        return subtract(out, ellipsoid(p, head_center, (head_radius,) * 3), 3.0)

    def clavicle(p: Points) -> np.ndarray:
        out = capsule(p, (2, 6, 44 + acromion_height), (120, -25, 58), 8.0, 9.0)
        return subtract(out, scapula(p), 2.5)

    bones = (
        BoneModel(
            key="humerus",
            sdf=humerus,
            bounds=_moved_bounds(((-75 - out_shift, -30, -400), (5 - out_shift, 30, 30)), move),
            cortex=1.0,
            cartilage=c,
            articular=humerus_physis,
            physes=(Physis(humerus_physis, growth.physis, growth.is_open(1.0)),),
            shaft=lambda p: np.clip((-p[2] - 50.0) / 40.0, 0.0, 1.0),
            shaft_cortex=3.0,
            red_marrow=growth.red_marrow,
        ),
        BoneModel(
            key="scapula",
            sdf=scapula,
            bounds=((-40, -45, -160), (140, 100, 48)),
            cortex=0.8,
            cartilage=min(c, 3.5),
            articular=lambda p: half_space(p, (6, 0, 0), (-1, 0, 0)),
        ),
        BoneModel(None, clavicle, ((-10, -40, 30), (135, 20, 72)), 1.0, 2.0, lambda p: p[0] - 8.0),
    )

    soft = (
        SoftStructure(  # supraspinatus tendon
            "tendon",
            lambda p: flat_capsule(p, (40, 20, 30), (-42 - out_shift, 2, 20), 10.0, 3.5, (0, 0, 1)),
            ((-55 - out_shift, -12, 12), (50, 34, 40)),
        ),
        SoftStructure(  # subacromial fat stripe
            "fat",
            lambda p: flat_capsule(
                p, (5, 15, 29 + acromion_height), (-38, 5, 30 + acromion_height), 10.0, 1.3, (0, 0, 1)
            ),
            ((-50, -8, 22), (15, 28, 38)),
        ),
        SoftStructure(  # long head of biceps
            "tendon",
            lambda p: np.minimum(
                capsule(p, (2, -4, 22), (-37 - out_shift, -16, -8), 2.6),
                capsule(p, (-37 - out_shift, -16, -8), (-39 - out_shift, -16, -120), 2.6),
            ),
            ((-48 - out_shift, -24, -125), (8, 2, 28)),
        ),
        SoftStructure(
            "fluid",
            lambda p: ellipsoid(p, (-12 - out_shift, 2, -22), (6, 8, 5)),
            bounds_around((-12 - out_shift, 2, -22), (8, 10, 7)),
        ),
        SoftStructure(
            "fat", lambda p: ellipsoid(p, (20, 12, -60), (14, 20, 22)), bounds_around((20, 12, -60), (16, 22, 24))
        ),
        SoftStructure("vessel", lambda p: capsule(p, (70, -12, -5), (-8, -6, -90), 4.0), ((-16, -20, -98), (78, 2, 3))),
        SoftStructure("air", lambda p: ellipsoid(p, (155, 0, -95), (70, 70, 120)), ((80, -75, -220), (230, 75, 30))),
    )

    fat = float(rng.uniform(3.0, 9.0)) * growth.scale**0.5

    def body(p: Points) -> np.ndarray:
        torso = ellipsoid(p, (150, 15, -90), (150, 95, 200))
        arm = capsule(p, (-32, 4, 0), (-45, 6, -400), 48.0, 40.0)
        cap = ellipsoid(p, (-10, 6, 8), (62, 55, 55))
        neck = ellipsoid(p, (95, 20, 60), (60, 50, 60))
        return smooth_union(smooth_union(smooth_union(torso, arm, 25.0), cap, 20.0), neck, 20.0)

    landmarks = {}
    if morphology is not None:
        ring = [np.cos(t) * axes[1] + np.sin(t) * axes[2] for t in np.linspace(0, 2 * np.pi, 8, endpoint=False)]
        blade = [_on_blade(a, b * blade_length) for a in (15.0, 40.0, 65.0) for b in (-80.0, -45.0, -10.0)]
        landmarks = {
            "glenoid_face": (1, np.array([face, *(face + 7.0 * np.asarray(ring))])),
            "blade": (1, np.array(blade)),
            "head": (0, np.array([head_center, *(np.asarray(head_center) + head_radius * np.eye(3))])),
        }
    return JointModel(
        bones=bones,
        soft=soft,
        body=body,
        skin=1.2,
        fat=fat,
        fov_center=(8.0 + float(rng.uniform(-6, 6)), 4.0 + float(rng.uniform(-4, 4)), -10.0),
        fov_inplane=(85.0 + 90.0 * growth.scale) * float(rng.uniform(0.95, 1.08)),
        slab=85.0 * growth.scale + float(rng.uniform(15.0, 30.0)),
        slice_thickness=(3.0, 4.0),
        pixel_spacing=(0.4, 0.6),
        landmarks=landmarks,
        hinge_center=None if morphology is None else head_center,
    )


def _moved(p: Points, move: np.ndarray) -> Points:
    """Coordinates at which to evaluate a shape so that it appears translated by ``move``."""
    if not move.any():
        return p
    return tuple(p[a] - np.float32(move[a]) for a in range(3))  # type: ignore[return-value]


def _moved_bounds(bounds, move: np.ndarray):
    return tuple(tuple(float(v) for v in np.asarray(corner) + move) for corner in bounds)
