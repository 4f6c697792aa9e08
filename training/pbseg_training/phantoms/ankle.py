"""Ankle anatomy: distal tibia (metaphysis, plafond, medial malleolus), talus (dome, neck, head,
lateral and posterior processes), calcaneus (body, tuberosity with its apophysis, sustentaculum
tali, anterior process); unlabeled distal fibula, navicular and cuboid; Achilles, flexor, peroneal
and extensor tendons, plantar fascia, Kager's and heel fat pads. Frame of ``anatomy.py``, origin
on top of the talar dome."""

from __future__ import annotations

import numpy as np

from .anatomy import BoneModel, Growth, JointModel, Physis, SoftStructure, bounds_around
from .morphology import AnkleMorphology, axis_rotation
from .shapes import Points, box, capsule, ellipsoid, flat_capsule, half_space, rotated, smooth_union, subtract


def _tendon(p: Points, points: list[tuple[float, float, float]], radius: float) -> np.ndarray:
    out = capsule(p, points[0], points[1], radius)
    for a, b in zip(points[1:], points[2:]):
        out = np.minimum(out, capsule(p, a, b, radius))
    return out


def build_ankle(rng: np.random.Generator, growth: Growth, morphology: AnkleMorphology | None = None) -> JointModel:
    """``morphology`` None: generator 1.0's calcaneus; else it is turned about the subtalar joint."""
    c = growth.cartilage
    up = growth.joint_shift(4.0)  # tibia and fibula move up
    down = growth.joint_shift(3.5)  # calcaneus and cuboid move down
    forward = growth.joint_shift(3.5)  # navicular moves forward
    dome = float(rng.uniform(0.92, 1.08))
    neck_angle = float(rng.uniform(-3.0, 3.0))
    heel = float(rng.uniform(0.9, 1.12))
    malleolus = float(rng.uniform(0.85, 1.15))
    apophysis_ossified = growth.age >= float(rng.uniform(5.5, 7.5))

    def talus(p: Points) -> np.ndarray:
        body = ellipsoid(p, (0, 6, -16 * dome), (14, 20 * dome, 17 * dome))
        posterior = ellipsoid(p, (-3, 25, -24), (6, 6, 6))
        neck = capsule(p, (1, -6, -20), (3 + neck_angle, -26, -23), 10.0)
        head = ellipsoid(p, (4 + neck_angle, -33, -25), (14, 10, 12))
        lateral = ellipsoid(p, (-13, 8, -27), (5, 8, 6))
        out = smooth_union(body, posterior, 4.0)
        out = smooth_union(out, neck, 5.0)
        out = smooth_union(out, head, 5.0)
        return smooth_union(out, lateral, 4.0)

    def tibia(p: Points) -> np.ndarray:
        q = (p[0], p[1], p[2] - up)
        plafond = ellipsoid(q, (0, 4, 12), (22, 20, 10))
        metaphysis = ellipsoid(q, (0, 3, 28), (25, 21, 20))
        shaft = capsule(q, (0, 2, 35), (0, -2, 400), 12.5)
        out = smooth_union(smooth_union(plafond, metaphysis, 8.0), shaft, 15.0)
        medial = capsule(q, (19, 3, 14), (20, 5, 14 - 26 * malleolus), 7.0, 5.0)
        out = smooth_union(out, medial, 5.0)
        return subtract(out, talus(p), 2.5)

    def tibia_physis(p: Points) -> np.ndarray:
        return p[2] - (21.0 + up + 0.06 * p[0])

    def fibula(p: Points) -> np.ndarray:
        q = (p[0], p[1], p[2] - up)
        out = capsule(q, (-25, 9, 400), (-24, 11, -19), 6.5, 8.5)
        return subtract(subtract(out, talus(p), 2.5), tibia(p), 2.0)

    turn = None
    if morphology is not None:
        pitch = axis_rotation("x", morphology.calcaneus_pitch_deg)
        turn = axis_rotation("z", morphology.calcaneus_divergence_deg) @ pitch
    subtalar = (0.0, 10.0, -45.0 - down)
    pad = 0 if turn is None else 10  # room for the turned calcaneus

    def turned(p: Points) -> Points:
        return p if turn is None else rotated(p, subtalar, turn)

    def calcaneus_full(p: Points) -> np.ndarray:
        r = turned(p)
        q = (r[0], r[1], r[2] + down)
        body = ellipsoid(q, (-2, 14, -54), (15, 36, 17))
        tuberosity = ellipsoid(q, (-1, 30 + 14 * heel, -58), (16, 14 * heel, 20))
        anterior = capsule(q, (-5, -6, -50), (-9, -30, -48), 11.0, 10.0)
        sustentaculum = ellipsoid(q, (13, 2, -39), (9, 11, 5))
        out = smooth_union(smooth_union(body, tuberosity, 6.0), anterior, 6.0)
        return subtract(smooth_union(out, sustentaculum, 4.0), talus(p), 2.5)

    apophysis_y = 28.0 + 14.0 * heel

    def calcaneus_apophysis(p: Points) -> np.ndarray:
        return apophysis_y - turned(p)[1]

    def calcaneus(p: Points) -> np.ndarray:
        full = calcaneus_full(p)
        return full if apophysis_ossified else np.maximum(full, turned(p)[1] - (apophysis_y - 1.5))

    def navicular(p: Points) -> np.ndarray:
        out = ellipsoid(p, (6, -50 - forward, -24), (16, 6.5, 14))
        return subtract(out, talus(p), 2.5)

    def cuboid(p: Points) -> np.ndarray:
        out = ellipsoid(p, (-12, -48 - forward, -44 - down), (12, 12, 11))
        return subtract(subtract(out, calcaneus_full(p), 2.5), navicular(p), 2.0)

    bones = (
        BoneModel(
            key="tibia",
            sdf=tibia,
            bounds=((-30, -25, -20 + up), (32, 28, 400)),
            cortex=1.0,
            cartilage=c,
            articular=lambda p: p[2] - (10.0 + up),
            physes=(Physis(tibia_physis, growth.physis, growth.is_open(0.3)),),
            shaft=lambda p: np.clip((p[2] - up - 60.0) / 40.0, 0.0, 1.0),
            shaft_cortex=3.0,
            red_marrow=growth.red_marrow,
        ),
        BoneModel(
            key="talus",
            sdf=talus,
            bounds=((-20, -45, -40), (20, 32, 4)),
            cortex=0.9,
            cartilage=c,
            articular=None,
        ),
        BoneModel(
            key="calcaneus",
            sdf=calcaneus,
            bounds=((-20 - pad, -45 - pad, -80 - down - pad), (24 + pad, 50 + 14 * heel + pad, -32 - down + pad)),
            cortex=0.9,
            cartilage=min(c, 3.0),
            articular=lambda p: p[2] - (-40.0 - down),
            physes=(Physis(calcaneus_apophysis, growth.physis * 0.8, growth.is_open(1.5) and apophysis_ossified),),
            red_marrow=growth.red_marrow * 0.5,
        ),
        BoneModel(
            key=None,
            sdf=fibula,
            bounds=((-36, -5, -30 + up), (-12, 24, 400)),
            cortex=0.9,
            cartilage=min(c, 3.0),
            articular=lambda p: p[2] - (8.0 + up),
            physes=(Physis(lambda p: p[2] - (14.0 + up), growth.physis, growth.is_open(0.5)),),
            red_marrow=growth.red_marrow,
        ),
        BoneModel(None, navicular, ((-12, -60 - forward, -40), (24, -40 - forward, -8)), 0.8, min(c, 3.0), None),
        BoneModel(None, cuboid, ((-26, -62 - forward, -58 - down), (2, -34 - forward, -30 - down)), 0.8, 2.0, None),
    )

    soft = (
        SoftStructure(
            "cartilage",
            lambda p: (
                np.maximum(calcaneus_full(p), apophysis_y - 1.5 - turned(p)[1])
                if not apophysis_ossified
                else np.full_like(p[0], 1e3)
            ),
            ((-20 - pad, 20 - pad, -82 - down - pad), (20 + pad, 52 + 14 * heel + pad, -36 - down + pad)),
        ),
        SoftStructure(
            "tendon",
            lambda p: flat_capsule(p, (0, 56, 200), (0, 30 + 28 * heel, -52 - down), 8.0, 3.5, (0, 1, 0)),
            ((-10, 40, -60 - down), (10, 70, 200)),
        ),
        SoftStructure(
            "tendon",
            lambda p: np.minimum(
                _tendon(p, [(21, 14, 200), (25, 14, -8), (20, -30, -38)], 3.0),
                _tendon(p, [(9, 22, 200), (11, 22, -32), (8, -50, -66)], 2.5),
            ),
            ((2, -40, -72), (30, 28, 200)),
        ),
        SoftStructure(
            "tendon",
            lambda p: _tendon(p, [(-27, 21, 200), (-29, 18, -28), (-20, -45, -52)], 3.0),
            ((-34, -52, -60), (-14, 26, 200)),
        ),
        SoftStructure(
            "tendon",
            lambda p: np.minimum(
                _tendon(p, [(9, -22, 200), (11, -33, -5), (13, -90, -22)], 2.6),
                _tendon(p, [(-4, -24, 200), (-6, -35, -5), (-13, -90, -24)], 2.2),
            ),
            ((-18, -96, -30), (18, -16, 200)),
        ),
        SoftStructure(
            "tendon",
            lambda p: flat_capsule(p, (0, 36, -76 - down), (0, -120, -78), 10.0, 1.6, (0, 0, 1)),
            ((-12, -125, -84 - down), (12, 40, -72)),
        ),
        SoftStructure(
            "fat", lambda p: ellipsoid(p, (0, 38, 14), (12, 10, 32)), bounds_around((0, 38, 14), (14, 12, 34))
        ),
        SoftStructure(
            "fat",
            lambda p: ellipsoid(p, (0, 36, -82 - down), (25, 22, 9)),
            bounds_around((0, 36, -82 - down), (27, 24, 11)),
        ),
        SoftStructure(
            "fat", lambda p: ellipsoid(p, (-10, -8, -38), (8, 7, 4)), bounds_around((-10, -8, -38), (10, 9, 6))
        ),
        SoftStructure("fluid", lambda p: ellipsoid(p, (0, 25, -6), (8, 4, 4)), bounds_around((0, 25, -6), (10, 6, 6))),
    )

    fat = float(rng.uniform(2.5, 7.0)) * growth.scale**0.5

    def body(p: Points) -> np.ndarray:
        leg = capsule(p, (0, 6, -10), (0, 4, 400), 36.0, 48.0)
        foot = box(p, (0, -60, -46), (38, 120, 36), rounding=18.0)
        foot = np.maximum(foot, half_space(p, (0, -30, -8), (0, 0.3, -1)))  # dorsum slopes down to the toes
        heel_pad = ellipsoid(p, (0, 36 + 4 * heel, -62 - down / 2), (32, 30 * heel, 28))
        return smooth_union(smooth_union(leg, foot, 20.0), heel_pad, 18.0)

    return JointModel(
        bones=bones,
        soft=soft,
        body=body,
        skin=1.2,
        fat=fat,
        fov_center=(float(rng.uniform(-4, 4)), -8.0 + float(rng.uniform(-8, 8)), -6.0),
        fov_inplane=(80.0 + 95.0 * growth.scale) * float(rng.uniform(0.95, 1.08)),
        slab=80.0 * growth.scale + float(rng.uniform(15.0, 30.0)),
        slice_thickness=(2.5, 4.0),
        pixel_spacing=(0.35, 0.55),
    )
