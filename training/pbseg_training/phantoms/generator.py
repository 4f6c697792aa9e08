"""Public API: one pediatric joint phantom (MR-like image + bone labels) from a seed, and a whole
raw-layout dataset of them.

Rendering: every tissue is a signed-distance field on the scanner grid; its voxel fraction comes
from the distance divided by the voxel's extent along the surface normal (a box-filter partial
volume, so 3-4 mm slices blur oblique surfaces as real thick slices do). Tissues are composited in
priority order (growth plate, marrow, cortex, cartilage, tendons and pads, muscle, fat, skin), then
texture, bias field and Rician noise are applied. Labels are the bones at voxel centres, with open
growth plates cut out, so a young long bone is two 3D components (epiphysis, metaphysis + shaft).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from PediatricBoneSegLib.catalog import JOINT_KEYS, get_joint

from .anatomy import BoneModel, Growth, JointModel
from .ankle import build_ankle
from .appearance import TEXTURE, Appearance, add_rician_noise, bias_field, texture_field
from .knee import build_knee
from .scanner import ScannerGrid, rotation_matrix
from .shoulder import build_shoulder

GENERATOR_VERSION = "1.0"
AGE_RANGE = (2.0, 17.0)
MAX_MATRIX = 384  # in-plane acquisition matrix of the largest fields of view
PLANES = {"ankle": "sagittal", "knee": "sagittal", "shoulder": "coronal"}
BUILDERS: dict[str, Callable[[np.random.Generator, Growth], JointModel]] = {
    "ankle": build_ankle,
    "knee": build_knee,
    "shoulder": build_shoulder,
}
_SALT = 0x9B0E5E6  # separates phantom streams from other users of the same seed


@dataclass
class Phantom:
    """``image``: float32 MR-like intensities; ``labels``: UInt8 catalog labels of ``joint``
    (0 background), same geometry. Axis-aligned LPS grid in the joint's usual plane; the largest
    spacing is the slice direction."""

    image: sitk.Image
    labels: sitk.Image
    joint: str
    age_years: float
    side: str
    seed: int


def generate_phantom(joint: str, seed: int, age_years: float | None = None, voxel_scale: float = 1.0) -> Phantom:
    """One phantom of ``joint``, fully determined by (joint, seed, age_years, voxel_scale).

    ``age_years``: simulated age in [2, 17] (drawn from the seed when None). ``voxel_scale`` > 1
    multiplies the voxel size (same anatomy, fewer voxels) for quick tests."""
    joint_key = get_joint(joint).key
    if age_years is not None and not AGE_RANGE[0] <= age_years <= AGE_RANGE[1]:
        raise ValueError(f"age_years must be within {AGE_RANGE}, got {age_years}")
    if not 0.25 <= voxel_scale <= 8.0:
        raise ValueError(f"voxel_scale must be within [0.25, 8], got {voxel_scale}")
    rng = np.random.default_rng([_SALT, JOINT_KEYS.index(joint_key), int(seed)])
    drawn_age = float(rng.uniform(*AGE_RANGE))
    age = float(age_years) if age_years is not None else drawn_age
    side = "left" if rng.random() < 0.5 else "right"
    growth = Growth.draw(age, rng)
    model = BUILDERS[joint_key](rng, growth)
    grid = _scanner_grid(joint_key, model, growth, side, voxel_scale, rng)
    appearance = Appearance.draw(joint_key, rng)
    noise_rng = np.random.default_rng(rng.integers(2**63))
    image, labels = _render(joint_key, model, grid, appearance, noise_rng)
    return Phantom(_to_sitk(image, grid), _to_sitk(labels, grid), joint_key, age, side, int(seed))


def _scanner_grid(
    joint: str, model: JointModel, growth: Growth, side: str, voxel_scale: float, rng: np.random.Generator
) -> ScannerGrid:
    angles = np.clip(rng.normal(0.0, np.radians(3.0), 3), -np.radians(7.0), np.radians(7.0))
    axis_scale = growth.scale * rng.uniform(0.95, 1.05, 3)
    pixel = max(float(rng.uniform(*model.pixel_spacing)), model.fov_inplane / MAX_MATRIX)
    thickness = float(rng.uniform(*model.slice_thickness))
    shift = rng.uniform(-0.06, 0.06, 3) * np.array([model.fov_inplane, model.fov_inplane, 0.1 * model.slab])
    center = rng.uniform(-40.0, 40.0, 3)  # table position: origins differ between cases
    spacing = (pixel * voxel_scale, pixel * voxel_scale, thickness * voxel_scale)
    n_inplane = max(8, round(model.fov_inplane / spacing[0]))
    n_slices = max(3, int(np.ceil(model.slab / spacing[2])))
    anatomy_center = np.asarray(model.fov_center) * axis_scale + shift
    return ScannerGrid.build(
        PLANES[joint],
        (n_slices, n_inplane, n_inplane),
        spacing,
        center,
        rotation_matrix(angles),
        side == "left",
        anatomy_center,
        axis_scale,
    )


def _fraction(sdf: np.ndarray, in_plane: float, through_plane: float) -> np.ndarray:
    """Voxel fraction inside a surface: signed distance over the voxel's extent along the normal,
    whose through-plane component comes from the field's slope across slices."""
    if sdf.shape[0] > 1:
        slope = np.minimum(np.abs(np.gradient(sdf, axis=0)) / through_plane, 1.0)
    else:
        slope = np.zeros_like(sdf)
    width = in_plane + (through_plane - in_plane) * slope
    return np.clip(0.5 - sdf / width, 0.0, 1.0)


class _Canvas:
    """Front-to-back compositing of tissue layers: each layer fills what the layers above left."""

    def __init__(self, grid: ScannerGrid, texture: np.ndarray) -> None:
        self.image = np.zeros(grid.shape, np.float32)
        self.remaining = np.ones(grid.shape, np.float32)
        self.texture = texture
        self.in_plane, self.through_plane = grid.spacing[0], grid.spacing[2]

    def add(self, block: tuple[slice, ...], sdf: np.ndarray, signal: float, texture: float = 0.0) -> None:
        weight = _fraction(sdf, self.in_plane, self.through_plane) * self.remaining[block]
        value = signal * (1.0 + texture * self.texture[block]) if texture else signal
        self.image[block] += weight * value
        self.remaining[block] -= weight


def _render(
    joint: str, model: JointModel, grid: ScannerGrid, look: Appearance, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    coords = grid.adult_coordinates()
    canvas = _Canvas(grid, texture_field(grid.shape, rng))
    labels = np.zeros(grid.shape, np.uint8)
    catalog = get_joint(joint)
    s = grid.scale
    signal = look.signal

    def field(fn: Callable, block: tuple[slice, ...]) -> np.ndarray:
        return fn(tuple(c[block] for c in coords)) * np.float32(s)

    # Bones: evaluate each once inside its box, then queue its layers by priority.
    physes, marrows, cortices, cartilages = [], [], [], []
    for bone in model.bones:
        block = grid.block(bone.bounds, margin_mm=bone.cartilage + 6.0)
        if block is None:
            continue
        sdf = field(bone.sdf, block)
        inside = sdf < 0
        inner = sdf + np.float32(bone.cortex) + _shaft_cortex(bone, coords, block)
        open_plates = [(field(ph.side, block), ph.thickness) for ph in bone.physes if ph.open]
        for side, thickness in open_plates:
            physes.append((block, np.maximum(np.abs(side) - thickness / 2, sdf - bone.cartilage)))
            inside &= np.abs(side) > thickness / 2
        if bone.physes:
            side = field(bone.physes[0].side, block)
            red = (1 - bone.red_marrow) * signal["marrow"] + bone.red_marrow * signal["red_marrow"]
            marrows.append((block, np.maximum(inner, side), signal["marrow"]))
            marrows.append((block, np.maximum(inner, -side), red))
        else:
            marrows.append((block, inner, signal["marrow"]))
        cortices.append((block, sdf))
        cap = sdf - np.float32(bone.cartilage)
        cartilages.append((block, cap if bone.articular is None else np.maximum(cap, field(bone.articular, block))))
        if bone.key is not None:
            labels[block][_without_specks(inside)] = catalog.label_of(bone.key)

    for block, sdf in physes:
        canvas.add(block, sdf, signal["physis"])
    for block, sdf, value in marrows:
        canvas.add(block, sdf, value, TEXTURE["marrow"])
    for block, sdf in cortices:
        canvas.add(block, sdf, signal["cortex"])
    for block, sdf in cartilages:
        canvas.add(block, sdf, signal["cartilage"])
    for structure in model.soft:
        block = grid.block(structure.bounds, margin_mm=4.0)
        if block is not None:
            canvas.add(block, field(structure.sdf, block), signal[structure.tissue], TEXTURE.get(structure.tissue, 0.0))
    everywhere = (slice(None),) * 3
    body = field(model.body, everywhere)
    canvas.add(everywhere, body + np.float32(model.skin + model.fat), signal["muscle"], TEXTURE["muscle"])
    canvas.add(everywhere, body + np.float32(model.skin), signal["fat"], TEXTURE["fat"])
    canvas.add(everywhere, body, signal["skin"])

    image = canvas.image * bias_field(grid.shape, look.bias, rng)
    image = add_rician_noise(image, look.noise * max(signal.values()), rng)
    return image.astype(np.float32), labels


def _without_specks(mask: np.ndarray) -> np.ndarray:
    """Drop 3D components under 1% of the mask: voxels cut off by the coarse slice sampling of a
    thin rim, which no reader would label as a separate piece of bone."""
    components, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(components.ravel())
    keep = sizes >= 0.01 * mask.sum()
    keep[0] = False
    return keep[components]


def _shaft_cortex(bone: BoneModel, coords: tuple[np.ndarray, ...], block: tuple[slice, ...]) -> np.ndarray | float:
    if bone.shaft is None:
        return 0.0
    return bone.shaft(tuple(c[block] for c in coords)) * np.float32(bone.shaft_cortex)


def _to_sitk(array: np.ndarray, grid: ScannerGrid) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(grid.spacing)
    image.SetOrigin(grid.origin)
    image.SetDirection(tuple(float(v) for v in grid.direction.flatten()))
    return image


def case_seed(seed: int, index: int) -> int:
    """Seed of case ``index`` of a dataset generated with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def write_phantom_dataset(
    joint: str, n: int, seed: int, out_dir: str | Path, file_format: str = "nii.gz", voxel_scale: float = 1.0
) -> Path:
    """Write ``n`` phantoms of ``joint`` as a raw-layout dataset in ``out_dir`` (created; must not
    exist or be empty). Case i uses ``case_seed(seed, i)``. Atomic: built in a temporary folder
    next to ``out_dir`` and renamed at the end. Returns ``out_dir``."""
    from ..dataset import write_raw_dataset

    joint_key = get_joint(joint).key

    def cases():
        for index in range(n):
            phantom = generate_phantom(joint_key, case_seed(seed, index), voxel_scale=voxel_scale)
            yield f"{joint_key}_{index:03d}", phantom.image, phantom.labels

    provenance = {
        "generator": "pbseg_training.phantoms",
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "voxel_scale": float(voxel_scale),
    }
    return write_raw_dataset(out_dir, joint_key, cases(), n, file_format=file_format, extra=provenance)
