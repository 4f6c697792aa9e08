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
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from PediatricBoneSegLib.catalog import JOINT_KEYS, get_joint

from .anatomy import Bounds, Growth, JointModel
from .ankle import build_ankle
from .appearance import TEXTURE, TISSUES, Appearance, add_rician_noise, bias_field, texture_field
from .artefacts import Artefacts, acquire
from .deformation import HINGES, Hinge, SmoothWarp
from .knee import build_knee
from .morphology import Morphology, draw_morphology
from .morphology import to_json as morphology_json
from .protocols import FAMILIES, Protocol, draw_protocol, draw_signals, noise_fraction
from .scanner import ScannerGrid, rotation_matrix
from .shoulder import build_shoulder
from .truth import ground_truth

GENERATOR_VERSION = "2.0"
VERSIONS = ("1.0", "2.0")  # 1.0: the committed experiment's phantoms, kept bit-for-bit reproducible
AGE_RANGE = (2.0, 17.0)
MAX_MATRIX = 384  # generator 1.0: in-plane acquisition matrix of the largest fields of view
BUILDERS: dict[str, Callable[[np.random.Generator, Growth, Morphology | None], JointModel]] = {
    "ankle": build_ankle,
    "knee": build_knee,
    "shoulder": build_shoulder,
}
_SALT = 0x9B0E5E6  # separates phantom streams from other users of the same seed


@dataclass
class Phantom:
    """``image``: float32 MR-like intensities; ``labels``: UInt8 catalog labels of ``joint``
    (0 background); ``tissues``: UInt8 index into ``appearance.TISSUES`` of each voxel's dominant
    tissue (the full tissue label map). Same geometry for all three; the largest spacing is the
    slice direction. ``parameters``: everything drawn for the case (JSON-ready), e.g. its protocol,
    age, flexion, deformations and artefacts."""

    image: sitk.Image
    labels: sitk.Image
    joint: str
    age_years: float
    side: str
    seed: int
    tissues: sitk.Image
    parameters: dict = field(default_factory=dict)


def generate_phantom(
    joint: str,
    seed: int,
    age_years: float | None = None,
    voxel_scale: float = 1.0,
    version: str = GENERATOR_VERSION,
    protocol: str | None = None,
    contrast: dict[str, float] | None = None,
    exclude_protocols: tuple[str, ...] = (),
    pathology: bool | None = None,
) -> Phantom:
    """One phantom of ``joint``, fully determined by its arguments.

    ``age_years``: simulated age in [2, 17] (drawn from the seed when None). ``voxel_scale`` > 1
    multiplies the voxel size (same anatomy, fewer voxels) for quick tests. ``version``: "2.0"
    draws a clinical protocol, anatomical variation and artefacts per case; "1.0" renders the
    original phantoms (one contrast per joint). ``protocol``: force a protocol family of
    ``protocols.FAMILIES`` (2.0 only); everything else is drawn as without it. ``contrast``: relative
    signal of every tissue of ``appearance.TISSUES`` (2.0 only), replacing the protocol's drawn
    signals, e.g. a permuted table to test robustness to unseen contrasts. ``exclude_protocols``
    (2.0): a case that draws one of these families gets another, chosen from the rest by its seed.
    ``pathology`` (2.0): force the pathological (True) or typical (False) morphology range of
    ``morphology.draw_morphology``; None draws either."""
    joint_key = get_joint(joint).key
    if age_years is not None and not AGE_RANGE[0] <= age_years <= AGE_RANGE[1]:
        raise ValueError(f"age_years must be within {AGE_RANGE}, got {age_years}")
    if not 0.25 <= voxel_scale <= 8.0:
        raise ValueError(f"voxel_scale must be within [0.25, 8], got {voxel_scale}")
    if version not in VERSIONS:
        raise ValueError(f"unknown generator version {version!r}; choose one of {', '.join(VERSIONS)}")
    if (protocol is not None or contrast is not None or pathology is not None) and version == "1.0":
        raise ValueError("generator 1.0 has one contrast per joint: protocol, contrast or pathology need version 2.0")
    if contrast is not None and set(contrast) != set(TISSUES):
        raise ValueError(f"contrast must give the signal of exactly these tissues: {', '.join(TISSUES)}")
    allowed = _allowed_families(version, exclude_protocols)
    case = _draw_case(joint_key, int(seed), age_years, voxel_scale, version, protocol, contrast, pathology)
    if case.variation is not None and case.parameters["protocol"]["family"] in exclude_protocols:
        # Drawing is cheap (no voxels yet): draw the case again with an allowed family.
        family = allowed[int(seed) % len(allowed)]
        case = _draw_case(joint_key, int(seed), age_years, voxel_scale, version, family, contrast, pathology)
    image, labels, tissues = _render(joint_key, case.model, case.grid, case.look, case.variation, case.noise_rng)
    grid = case.grid
    parameters = case.parameters | {
        "size": list(grid.shape[::-1]),
        "spacing": list(grid.spacing),
        "direction": [float(v) for v in grid.direction.flatten()],
        "cut_bones": _cut_bones(labels, joint_key),
    }
    if case.variation is not None:
        parameters["truth"] = ground_truth(joint_key, case.model, case.grid, case.variation)
    volumes = [_to_sitk(array, grid) for array in (image, labels, tissues)]
    return Phantom(volumes[0], volumes[1], joint_key, case.age, case.side, int(seed), volumes[2], parameters)


def _allowed_families(version: str, exclude_protocols: tuple[str, ...]) -> list[str]:
    allowed = [family for family in FAMILIES if family not in exclude_protocols]
    if exclude_protocols and (version == "1.0" or not allowed or set(exclude_protocols) - set(FAMILIES)):
        raise ValueError(f"exclude_protocols {exclude_protocols}: needs version 2.0 and known families, not all")
    return allowed


@dataclass
class _Case:
    """Everything drawn for a phantom before any voxel is rendered."""

    age: float
    side: str
    model: JointModel
    grid: ScannerGrid
    look: _Look
    variation: _Variation | None  # None: generator 1.0
    noise_rng: np.random.Generator
    parameters: dict


def _draw_case(
    joint: str,
    seed: int,
    age_years: float | None,
    voxel_scale: float,
    version: str,
    protocol: str | None,
    contrast: dict[str, float] | None,
    pathology: bool | None,
) -> _Case:
    rng = np.random.default_rng([_SALT, JOINT_KEYS.index(joint), seed])
    drawn_age = float(rng.uniform(*AGE_RANGE))
    age = float(age_years) if age_years is not None else drawn_age
    side = "left" if rng.random() < 0.5 else "right"
    growth = Growth.draw(age, rng)
    morphology = None
    if version != "1.0":  # a stream of its own: the case's other draws are unchanged by it
        stream = np.random.default_rng([_SALT, JOINT_KEYS.index(joint), seed, 2])
        morphology = draw_morphology(joint, stream, pathology)
    model = BUILDERS[joint](rng, growth, morphology)
    parameters: dict = {"generator_version": version, "joint": joint, "seed": seed, "age_years": age}
    parameters |= {"side": side, "voxel_scale": float(voxel_scale)}
    if version == "1.0":
        grid = _scanner_grid(joint, model, growth, side, voxel_scale, rng)
        look = _Look.legacy(Appearance.draw(joint, rng), grid)
        variation = None
    else:
        grid, protocol_drawn = _protocol_grid(joint, model, growth, side, voxel_scale, rng, protocol)
        look = _Look.draw(protocol_drawn, grid, voxel_scale, rng, contrast)
        variation = _Variation.draw(joint, model, growth, rng)
        parameters |= {"protocol": protocol_drawn.to_json()} | look.to_json() | variation.to_json(model)
        parameters["morphology"] = morphology_json(morphology)
    noise_rng = np.random.default_rng(rng.integers(2**63))
    return _Case(age, side, model, grid, look, variation, noise_rng, parameters)


def _cut_bones(labels: np.ndarray, joint: str) -> list[str]:
    """Bones that touch a face of the field of view (cut by it)."""
    faces = [labels[0], labels[-1], labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]]
    touching = set(np.unique(np.concatenate([f.ravel() for f in faces]))) - {0}
    catalog = get_joint(joint)
    return [bone.key for bone in catalog.bones if catalog.label_of(bone.key) in touching]


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
        get_joint(joint).usual_plane,
        (n_slices, n_inplane, n_inplane),
        spacing,
        center,
        rotation_matrix(angles),
        side == "left",
        anatomy_center,
        axis_scale,
    )


def _protocol_grid(
    joint: str,
    model: JointModel,
    growth: Growth,
    side: str,
    voxel_scale: float,
    rng: np.random.Generator,
    family: str | None,
) -> tuple[ScannerGrid, Protocol]:
    """Generator 2.0's grid: the drawn protocol's plane, tilt and voxels, a field of view that
    may be smaller than the anatomy and off its centre (bones cut at the edges)."""
    fov = model.fov_inplane * float(rng.uniform(0.8, 1.15))
    slab = model.slab * float(rng.uniform(0.7, 1.1))
    protocol = draw_protocol(joint, fov, slab, rng, family)
    positioning = np.clip(rng.normal(0.0, np.radians(5.0), 3), -np.radians(12.0), np.radians(12.0))
    axis_scale = growth.scale * rng.uniform(0.93, 1.07, 3)
    shift = rng.uniform(-0.15, 0.15, 3) * fov
    center = rng.uniform(-40.0, 40.0, 3)
    spacing = (protocol.pixel * voxel_scale, protocol.pixel * voxel_scale, protocol.spacing * voxel_scale)
    shape = (max(3, int(np.ceil(slab / spacing[2]))), max(8, round(fov / spacing[0])), max(8, round(fov / spacing[0])))
    grid = ScannerGrid.build(
        protocol.plane,
        shape,
        spacing,
        center,
        rotation_matrix(positioning),
        side == "left",
        np.asarray(model.fov_center) * axis_scale + shift,
        axis_scale,
        tilt=rotation_matrix(np.radians(protocol.tilt)),
    )
    return grid, protocol


@dataclass
class _Look:
    """What the render needs of the case's contrast: absolute ``signal`` per tissue, texture
    amplitudes, the slice thickness for partial volume, and the noise/artefact chain."""

    signal: dict[str, float]
    texture: dict[str, float]
    thickness: float
    artefacts: Artefacts | None  # None: generator 1.0's bias and Rician noise (``legacy``)
    appearance: Appearance | None = None

    @classmethod
    def legacy(cls, appearance: Appearance, grid: ScannerGrid) -> _Look:
        return cls(appearance.signal, TEXTURE, grid.spacing[2], None, appearance)

    @classmethod
    def draw(
        cls,
        protocol: Protocol,
        grid: ScannerGrid,
        voxel_scale: float,
        rng: np.random.Generator,
        contrast: dict[str, float] | None = None,
    ) -> _Look:
        gain = float(rng.uniform(300.0, 1500.0))
        relative = draw_signals(protocol.family, rng)
        signal = {tissue: gain * float(value) for tissue, value in (contrast or relative).items()}
        texture = {"muscle": float(rng.uniform(0.04, 0.14)), "fat": float(rng.uniform(0.02, 0.08))}
        texture["marrow"] = float(rng.uniform(0.06, 0.22))  # trabecular texture
        artefacts = Artefacts.draw(noise_fraction(protocol, rng), rng)
        return cls(signal, texture, protocol.thickness * voxel_scale, artefacts)

    def to_json(self) -> dict:
        peak = max(self.signal.values())
        relative = {tissue: value / peak for tissue, value in self.signal.items()}
        artefacts = self.artefacts.to_json() if self.artefacts else {}
        return {"signal": relative, "gain": peak, "texture": self.texture, "artefacts": artefacts}


@dataclass
class _Marrow:
    """Red (haematopoietic) share of the marrow by region: children's marrow converts to yellow
    with age, epiphyses first, then diaphyses, metaphyses last; ``patchiness`` adds islands."""

    epiphysis: float
    diaphysis: float
    metaphysis: float
    patchiness: float

    @classmethod
    def draw(cls, age: float, rng: np.random.Generator) -> _Marrow:
        def share(value: float) -> float:
            return float(np.clip(value + rng.normal(0.0, 0.08), 0.0, 1.0))

        return cls(
            epiphysis=share(0.6 * np.clip((4.0 - age) / 4.0, 0.0, 1.0)),
            diaphysis=share(np.clip((12.0 - age) / 10.0, 0.0, 1.0)),
            metaphysis=share(np.clip(1.0 - age / 22.0, 0.15, 1.0)),
            patchiness=float(rng.uniform(0.0, 0.25)),
        )


@dataclass
class _Variation:
    """Generator 2.0's anatomical variation: flexion about the joint's hinge, a smooth warp of the
    whole limb and one per bone, per-bone cortex thickness factors, marrow conversion."""

    hinge: Hinge
    flexion: float
    limb: SmoothWarp
    bones: list[SmoothWarp]
    cortex: list[float]
    shaft_cortex: list[float]
    marrow: _Marrow

    @classmethod
    def draw(cls, joint: str, model: JointModel, growth: Growth, rng: np.random.Generator) -> _Variation:
        hinge = HINGES[joint] if model.hinge_center is None else replace(HINGES[joint], center=model.hinge_center)
        n = len(model.bones)
        return cls(
            hinge=hinge,
            flexion=float(rng.uniform(*hinge.angles)),
            limb=SmoothWarp.draw(rng, float(rng.uniform(0.0, 4.0)), (90.0, 220.0)),
            bones=[SmoothWarp.draw(rng, float(rng.uniform(0.0, 3.0)), (45.0, 140.0)) for _ in range(n)],
            cortex=[float(v) for v in rng.uniform(0.6, 1.6, n)],
            shaft_cortex=[float(v) for v in rng.uniform(0.6, 1.5, n)],
            marrow=_Marrow.draw(growth.age, rng),
        )

    def to_json(self, model: JointModel) -> dict:
        names = [bone.key or f"unlabeled_{i}" for i, bone in enumerate(model.bones)]
        return {
            "flexion_deg": self.flexion,
            "limb_deformation_mm": self.limb.size,
            "bone_deformation_mm": {name: warp.size for name, warp in zip(names, self.bones)},
            "cortex_scale": dict(zip(names, self.cortex)),
            "red_marrow": self.marrow.__dict__,
        }

    def moved_bounds(self, bounds: Bounds, distal: bool) -> Bounds:
        """``bounds`` after the flexion (distal parts) with a margin for the warps."""
        margin = 3.0 * (self.limb.size + max(warp.size for warp in self.bones)) + 2.0
        corners = np.array([[(bounds[0], bounds[1])[c >> a & 1][a] for a in range(3)] for c in range(8)], np.float32)
        points = [corners[:, a] for a in range(3)]
        if distal:
            turned = self.hinge.rotate(tuple(points), -self.flexion)  # forward rotation of the corners
            points = [np.concatenate([points[a], turned[a]]) for a in range(3)]
        low = tuple(float(points[a].min()) - margin for a in range(3))
        high = tuple(float(points[a].max()) + margin for a in range(3))
        return low, high  # type: ignore[return-value]


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
    """Front-to-back compositing of tissue layers: each layer fills what the layers above left.
    The tissue map keeps, per voxel, the tissue of the largest share."""

    def __init__(self, grid: ScannerGrid, texture: np.ndarray, thickness: float) -> None:
        self.image = np.zeros(grid.shape, np.float32)
        self.remaining = np.ones(grid.shape, np.float32)
        self.share = np.zeros(grid.shape, np.float32)
        self.tissues = np.zeros(grid.shape, np.uint8)
        self.texture = texture
        self.in_plane, self.through_plane = grid.spacing[0], thickness

    def add(
        self, block: tuple[slice, ...], sdf: np.ndarray, tissue: str, signal: float | np.ndarray, texture: float = 0.0
    ) -> None:
        weight = _fraction(sdf, self.in_plane, self.through_plane) * self.remaining[block]
        value = signal * (1.0 + texture * self.texture[block]) if texture else signal
        self.image[block] += weight * value
        self.remaining[block] -= weight
        larger = weight > self.share[block]
        self.tissues[block][larger] = TISSUES.index(tissue)
        self.share[block] = np.maximum(self.share[block], weight)


def _render(
    joint: str,
    model: JointModel,
    grid: ScannerGrid,
    look: _Look,
    variation: _Variation | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image, bone labels and tissue map of ``model`` on ``grid``; ``variation`` None renders
    generator 1.0 exactly (its random draws and layers)."""
    coords = grid.adult_coordinates()
    canvas = _Canvas(grid, texture_field(grid.shape, rng), look.thickness)
    if variation is not None:
        fine = texture_field(grid.shape, rng, sigma=(0.6 if grid.spacing[2] < 1.5 else 0.0, 0.7, 0.7))
        patches = texture_field(grid.shape, rng, sigma=(2.0, 6.0, 6.0))
        coords = variation.limb(coords)
        soft_coords = variation.hinge.rotate(coords, variation.flexion, variation.hinge.soft_weight(coords))
    else:
        soft_coords = coords
    labels = np.zeros(grid.shape, np.uint8)
    catalog = get_joint(joint)
    s = grid.scale
    signal = look.signal

    def at(fn: Callable, points: tuple[np.ndarray, ...]) -> np.ndarray:
        return fn(points) * np.float32(s)

    # Bones: evaluate each once inside its box, then queue its layers by priority.
    physes, marrows, cortices, cartilages = [], [], [], []
    for index, bone in enumerate(model.bones):
        margin = bone.cartilage + 6.0
        if variation is None:
            block = grid.block(bone.bounds, margin_mm=margin)
        else:
            distal = variation.hinge.is_distal(bone.bounds)
            block = grid.block(variation.moved_bounds(bone.bounds, distal), margin_mm=margin)
        if block is None:
            continue
        points = tuple(c[block] for c in coords)
        cortex, shaft_cortex = bone.cortex, bone.shaft_cortex
        if variation is not None:
            if distal:
                points = variation.hinge.rotate(points, variation.flexion)
            points = variation.bones[index](points)
            cortex, shaft_cortex = cortex * variation.cortex[index], shaft_cortex * variation.shaft_cortex[index]
        sdf = at(bone.sdf, points)
        inside = sdf < 0
        shaft = bone.shaft(points) if bone.shaft is not None else None
        inner = sdf + np.float32(cortex) + (shaft * np.float32(shaft_cortex) if shaft is not None else 0.0)
        sides = [at(ph.side, points) for ph in bone.physes]  # each plate's field, evaluated once
        open_plates = [(side, ph.thickness) for side, ph in zip(sides, bone.physes) if ph.open]
        for side, thickness in open_plates:
            # 2.0 keeps the plate inside the bone's outline; 1.0 let it reach the cartilage surface.
            limit = sdf if variation is not None else sdf - bone.cartilage
            physes.append((block, np.maximum(np.abs(side) - thickness / 2, limit)))
            inside &= np.abs(side) > thickness / 2
        if variation is not None:
            red = _red_marrow(sides, shaft, variation.marrow) + variation.marrow.patchiness * patches[block]
            red = np.clip(red, 0.0, 1.0)
            value = red * signal["red_marrow"] + (1.0 - red) * signal["marrow"]
            marrows.append((block, inner, "marrow", value * (1.0 + look.texture["marrow"] * fine[block])))
        elif bone.physes:
            side = sides[0]
            red = (1 - bone.red_marrow) * signal["marrow"] + bone.red_marrow * signal["red_marrow"]
            marrows.append((block, np.maximum(inner, side), "marrow", signal["marrow"]))
            marrows.append((block, np.maximum(inner, -side), "red_marrow", red))
        else:
            marrows.append((block, inner, "marrow", signal["marrow"]))
        cortices.append((block, sdf))
        cap = sdf - np.float32(bone.cartilage)
        cartilages.append((block, cap if bone.articular is None else np.maximum(cap, at(bone.articular, points))))
        if bone.key is not None:
            labels[block][_without_specks(inside)] = catalog.label_of(bone.key)

    for block, sdf in physes:
        canvas.add(block, sdf, "physis", signal["physis"])
    marrow_texture = look.texture["marrow"] if variation is None else 0.0  # 2.0: in the value already
    for block, sdf, tissue, value in marrows:
        canvas.add(block, sdf, tissue, value, marrow_texture)
    for block, sdf in cortices:
        canvas.add(block, sdf, "cortex", signal["cortex"])
    for block, sdf in cartilages:
        canvas.add(block, sdf, "cartilage", signal["cartilage"])
    for structure in model.soft:
        bounds = structure.bounds if variation is None else variation.moved_bounds(structure.bounds, True)
        block = grid.block(bounds, margin_mm=4.0)
        if block is not None:
            points = tuple(c[block] for c in soft_coords)
            sdf = at(structure.sdf, points)
            canvas.add(block, sdf, structure.tissue, signal[structure.tissue], look.texture.get(structure.tissue, 0.0))
    body, everywhere = at(model.body, soft_coords), np.s_[:, :, :]
    muscle = body + np.float32(model.skin + model.fat)
    canvas.add(everywhere, muscle, "muscle", signal["muscle"], look.texture["muscle"])
    canvas.add(everywhere, body + np.float32(model.skin), "fat", signal["fat"], look.texture["fat"])
    canvas.add(everywhere, body, "skin", signal["skin"])

    peak = max(signal.values())
    if look.artefacts is None:
        image = canvas.image * bias_field(grid.shape, look.appearance.bias, rng)
        image = add_rician_noise(image, look.appearance.noise * peak, rng)
    else:
        image = acquire(canvas.image, grid.spacing[0], look.artefacts, peak, rng)
    return image.astype(np.float32), labels, canvas.tissues


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


def _red_marrow(sides: list[np.ndarray], shaft: np.ndarray | None, marrow: _Marrow) -> np.ndarray | float:
    """Red share of each voxel of a bone, from its first growth plate's field (``sides[0]``, real
    mm, negative on the epiphysis side): epiphysis / metaphysis / diaphysis blend (round and flat
    bones without a growth plate convert between epiphysis and metaphysis)."""
    if not sides:
        return 0.5 * (marrow.epiphysis + marrow.metaphysis)
    epiphysis = np.clip(0.5 - sides[0] / np.float32(2.0), 0.0, 1.0)
    along = 0.0 if shaft is None else shaft
    metaphyseal = (1.0 - along) * marrow.metaphysis + along * marrow.diaphysis
    return epiphysis * marrow.epiphysis + (1.0 - epiphysis) * metaphyseal


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
    joint: str,
    n: int,
    seed: int,
    out_dir: str | Path,
    file_format: str = "nii.gz",
    voxel_scale: float = 1.0,
    version: str = GENERATOR_VERSION,
    exclude_protocols: tuple[str, ...] = (),
) -> Path:
    """Write ``n`` phantoms of ``joint`` as a raw-layout dataset in ``out_dir`` (created; must not
    exist or be empty), with their tissue maps and drawn parameters. Case i uses
    ``case_seed(seed, i)``; ``exclude_protocols`` (2.0) redraws the protocol family of a case that
    drew an excluded one (from the other families, deterministically). Atomic: built in a
    temporary folder next to ``out_dir`` and renamed at the end. Returns ``out_dir``."""
    from ..dataset import write_raw_dataset

    joint_key = get_joint(joint).key

    _allowed_families(version, exclude_protocols)  # refused before anything is written

    def cases():
        for index in range(n):
            phantom = generate_phantom(
                joint_key,
                case_seed(seed, index),
                voxel_scale=voxel_scale,
                version=version,
                exclude_protocols=exclude_protocols,
            )
            yield f"{joint_key}_{index:03d}", phantom.image, phantom.labels, phantom.tissues, phantom.parameters

    provenance = {
        "generator": "pbseg_training.phantoms",
        "generator_version": version,
        "excluded_protocols": list(exclude_protocols),
        "seed": int(seed),
        "voxel_scale": float(voxel_scale),
    }
    return write_raw_dataset(out_dir, joint_key, cases(), n, file_format=file_format, extra=provenance)
