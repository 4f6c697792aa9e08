"""Signed-distance primitives on coordinate arrays (millimetres; negative inside).

Every function takes ``p = (x, y, z)``, three broadcastable float32 arrays of the anatomical frame,
and returns an array of signed distances (exact or a close bound). Combinators build bones from
primitives; ``smooth_union`` blends them without creases so the shapes look grown, not assembled.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Points = tuple[np.ndarray, np.ndarray, np.ndarray]
Vec = Sequence[float]


def _norm(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.sqrt(a * a + b * b + c * c)


def ellipsoid(p: Points, center: Vec, radii: Vec) -> np.ndarray:
    """Ellipsoid (Quilez' bound: exact on the axes, close elsewhere)."""
    q = [(p[i] - np.float32(center[i])) for i in range(3)]
    k0 = _norm(q[0] / radii[0], q[1] / radii[1], q[2] / radii[2])
    k1 = _norm(q[0] / radii[0] ** 2, q[1] / radii[1] ** 2, q[2] / radii[2] ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)


def capsule(p: Points, a: Vec, b: Vec, radius_a: float, radius_b: float | None = None) -> np.ndarray:
    """Segment a-b swept by a sphere whose radius goes linearly from ``radius_a`` to ``radius_b``."""
    radius_b = radius_a if radius_b is None else radius_b
    ba = np.asarray(b, dtype=np.float32) - np.asarray(a, dtype=np.float32)
    pa = [p[i] - np.float32(a[i]) for i in range(3)]
    h = np.clip((pa[0] * ba[0] + pa[1] * ba[1] + pa[2] * ba[2]) / float(ba @ ba), 0.0, 1.0)
    return _norm(pa[0] - ba[0] * h, pa[1] - ba[1] * h, pa[2] - ba[2] * h) - (radius_a + (radius_b - radius_a) * h)


def flat_capsule(p: Points, a: Vec, b: Vec, width: float, thickness: float, thin_axis: Vec) -> np.ndarray:
    """Segment a-b swept by an ellipse (half-axes ``width`` and ``thickness``, the latter along the
    component of ``thin_axis`` perpendicular to the segment): tendons, the acromion."""
    a_ = np.asarray(a, dtype=np.float32)
    axis = np.asarray(b, dtype=np.float32) - a_
    length = float(np.linalg.norm(axis))
    axis /= length
    thin = np.asarray(thin_axis, dtype=np.float32)
    thin = thin - axis * float(thin @ axis)
    thin /= np.linalg.norm(thin)
    wide = np.cross(axis, thin)
    pa = [p[i] - a_[i] for i in range(3)]
    t = pa[0] * axis[0] + pa[1] * axis[1] + pa[2] * axis[2]
    u = (pa[0] * wide[0] + pa[1] * wide[1] + pa[2] * wide[2]) / width
    v = (pa[0] * thin[0] + pa[1] * thin[1] + pa[2] * thin[2]) / thickness
    along = np.maximum(np.maximum(-t, t - length), 0.0) / thickness
    return (_norm(u, v, along) - 1.0) * thickness


def box(p: Points, center: Vec, half: Vec, axes: np.ndarray | None = None, rounding: float = 0.0) -> np.ndarray:
    """Rounded box; ``axes`` rows are its unit axes in the frame (identity by default)."""
    axes = np.eye(3, dtype=np.float32) if axes is None else np.asarray(axes, dtype=np.float32)
    pc = [p[i] - np.float32(center[i]) for i in range(3)]
    d = [np.abs(pc[0] * axes[k, 0] + pc[1] * axes[k, 1] + pc[2] * axes[k, 2]) - (half[k] - rounding) for k in range(3)]
    outside = _norm(np.maximum(d[0], 0.0), np.maximum(d[1], 0.0), np.maximum(d[2], 0.0))
    inside = np.minimum(np.maximum(np.maximum(d[0], d[1]), d[2]), 0.0)
    return outside + inside - rounding


def torus(p: Points, center: Vec, major: float, minor: float, flatten: float = 1.0) -> np.ndarray:
    """Torus around the z axis; ``flatten`` < 1 squashes its tube along z (a meniscus)."""
    x, y, z = (p[i] - np.float32(center[i]) for i in range(3))
    ring = np.sqrt(x * x + y * y) - major
    return (np.sqrt(ring * ring + (z / flatten) ** 2) - minor) * min(1.0, flatten)


def half_space(p: Points, point: Vec, normal: Vec) -> np.ndarray:
    """Signed distance to the plane through ``point``; negative on the side ``normal`` points to."""
    n = np.asarray(normal, dtype=np.float32)
    n /= np.linalg.norm(n)
    return -((p[0] - point[0]) * n[0] + (p[1] - point[1]) * n[1] + (p[2] - point[2]) * n[2])


def smooth_union(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Union with a blending fillet of about ``k`` mm."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def smooth_subtract(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """``a`` minus ``b`` with a rounded edge of about ``k`` mm."""
    return -smooth_union(-a, b, k)


def union(*fields: np.ndarray) -> np.ndarray:
    out = fields[0]
    for field in fields[1:]:
        out = np.minimum(out, field)
    return out


def subtract(a: np.ndarray, b: np.ndarray, gap: float = 0.0) -> np.ndarray:
    """``a`` minus ``b`` dilated by ``gap`` mm (keeps two bones a joint space apart)."""
    return np.maximum(a, gap - b)


def oriented_ellipsoid(p: Points, center: Vec, axes: np.ndarray, radii: Vec) -> np.ndarray:
    """Ellipsoid whose semi-axes ``radii`` lie along the rows of ``axes`` (orthonormal)."""
    q = [p[i] - np.float32(center[i]) for i in range(3)]
    a = np.asarray(axes, dtype=np.float32)
    local = tuple(q[0] * a[k, 0] + q[1] * a[k, 1] + q[2] * a[k, 2] for k in range(3))
    return ellipsoid(local, (0.0, 0.0, 0.0), radii)  # type: ignore[arg-type]


def rotated(p: Points, center: Vec, rotation: np.ndarray) -> Points:
    """Coordinates at which to evaluate a shape so that it appears turned by ``rotation`` (3x3)
    about ``center``: the inverse rotation applied to the points."""
    r = np.asarray(rotation, dtype=np.float32)
    q = [p[i] - np.float32(center[i]) for i in range(3)]
    return tuple(  # type: ignore[return-value]
        np.float32(center[k]) + q[0] * r[0, k] + q[1] * r[1, k] + q[2] * r[2, k] for k in range(3)
    )
