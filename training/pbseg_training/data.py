"""Training data: raw-layout datasets turned into per-domain pools of network-ready 2D slices.

Every volume goes through ``PediatricBoneSegLib.pipeline.preprocessing.slice_volume``, the chain inference
uses, so the network is trained on exactly what it will see in Slicer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from pbseg_training.dataset import RawDataset, validate_dataset
from PediatricBoneSegLib.catalog import get_joint
from PediatricBoneSegLib.network.config import PreprocessingConfig
from PediatricBoneSegLib.pipeline.orientation import PLANE_AXIS
from PediatricBoneSegLib.pipeline.preprocessing import canonical_normalized, slice_volume

from .config import DatasetSpec


@dataclass
class DomainSlices:
    """All slices of one domain (``source``: its dataset folder; ``provenance``: what its
    dataset.json says of its origin, e.g. the phantom generator's version and seed).

    ``images``: [N, 1, S, S] float32; ``labels``: [N, S, S] uint8 in the joint's label space;
    ``tissues``: [N, S, S] uint8 tissue label maps where every case has one (else None), for
    label-to-image synthesis;
    ``case_index``: [N] which case each slice comes from (``case_ids``); ``axes``: [N] the canonical
    axis each slice was cut along (``PLANE_AXIS``)."""

    joint: str
    source: str
    provenance: dict
    images: torch.Tensor
    labels: torch.Tensor
    case_index: torch.Tensor
    case_ids: list[str]
    axes: torch.Tensor
    tissues: torch.Tensor | None = None

    @property
    def foreground(self) -> torch.Tensor:
        return self.labels.flatten(1).amax(dim=1) > 0

    @property
    def mirrorable(self) -> torch.Tensor:
        """[N] bool: True where the slice's width axis is left-right (mirroring it gives the other
        side's anatomy; a sagittal slice has no left-right axis)."""
        return self.axes != PLANE_AXIS["sagittal"]

    @cached_property
    def strata(self) -> dict[tuple[int, int], dict[int, torch.Tensor]]:
        """Slice indices per (case, slicing axis), then per label shown (0: every slice of the stratum)."""
        bones = range(1, int(self.labels.max()) + 1)
        shown = torch.stack([(self.labels == bone).flatten(1).any(dim=1) for bone in bones], dim=1)
        strata: dict[tuple[int, int], dict[int, torch.Tensor]] = {}
        for key in torch.unique(torch.stack([self.case_index, self.axes], dim=1), dim=0).tolist():
            members = torch.nonzero((self.case_index == key[0]) & (self.axes == key[1])).flatten()
            by_bone = {0: members}
            for bone in bones:
                showing = members[shown[members, bone - 1]]
                if len(showing):
                    by_bone[bone] = showing
            strata[(key[0], key[1])] = by_bone
        return strata


def load_volume_pair(image_path: Path, label_path: Path) -> tuple[sitk.Image, np.ndarray]:
    image = sitk.ReadImage(str(image_path), sitk.sitkFloat32)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path))).astype(np.uint8)
    return image, labels


def load_domain(
    spec: DatasetSpec, preprocessing: PreprocessingConfig, extra_planes: tuple[str, ...] = ()
) -> DomainSlices:
    """Validate the dataset (all problems reported at once) and slice every (selected) case as
    inference does; a near-isotropic case also along ``extra_planes`` (every other slice)."""
    problems = validate_dataset(spec.path)
    if problems:
        listing = "\n".join(f"  {problem.path}: {problem.message}" for problem in problems)
        raise ValueError(f"dataset {spec.path} has {len(problems)} problem(s):\n{listing}")
    dataset = RawDataset(spec.path)
    joint = get_joint(spec.joint or dataset.joint)
    cases = [case for case in dataset.cases if spec.cases is None or case.case_id in spec.cases]
    if spec.cases is not None and len(cases) != len(set(spec.cases)):
        missing = sorted(set(spec.cases) - {case.case_id for case in cases})
        raise ValueError(f"dataset {spec.path}: unknown case ids {missing}")
    images, labels, case_index, slice_axes, tissues = [], [], [], [], []
    with_tissues = all(case.tissue_path is not None for case in cases)
    for index, case in enumerate(cases):
        image, label_array = load_volume_pair(case.image_path, case.label_path)
        tissue_array = None
        if with_tissues:
            tissue_array = sitk.GetArrayFromImage(sitk.ReadImage(str(case.tissue_path))).astype(np.uint8)
        array = sitk.GetArrayViewFromImage(image)
        normalized = canonical_normalized(array, image.GetDirection(), preprocessing)
        axes = set()
        for plane in (joint.usual_plane, *extra_planes):
            sliced = slice_volume(array, image.GetSpacing(), image.GetDirection(), plane, preprocessing, normalized)
            if sliced.axis in axes:  # a 2D series: sliced along its acquisition axis only
                continue
            step = 1 if not axes else 2  # neighbouring slices of a fine volume add little
            axes.add(sliced.axis)
            images.append(sliced.network_input(0, len(sliced.slices))[::step])
            labels.append(sliced.network_labels(label_array).to(torch.uint8)[::step])
            if tissue_array is not None:
                tissues.append(sliced.network_labels(tissue_array).to(torch.uint8)[::step])
            count = len(labels[-1])
            case_index.append(torch.full((count,), index, dtype=torch.long))
            slice_axes.append(torch.full((count,), sliced.axis, dtype=torch.long))
    if not cases:
        raise ValueError(f"dataset {spec.path}: no cases selected")
    return DomainSlices(
        joint.key,
        str(spec.path),
        {k: v for k, v in dataset.metadata.items() if k not in ("labels", "channel_names", "file_ending")},
        torch.cat(images),
        torch.cat(labels),
        torch.cat(case_index),
        [case.case_id for case in cases],
        torch.cat(slice_axes),
        torch.cat(tissues) if with_tissues else None,
    )


def sample_indices(
    pool: DomainSlices, count: int, foreground_fraction: float, generator: torch.Generator, sampling: str = "slices"
) -> torch.Tensor:
    """``count`` slice indices: about ``foreground_fraction`` of them from slices showing bone.
    ``sampling`` (``SAMPLINGS``): "slices", every slice alike; "cases", a case drawn uniformly first,
    then one of its (bone-showing) slices, so that a case's weight does not grow with its number of
    slices; "bones", a case, then one of the planes it was sliced in, then for a bone-showing draw
    one of the bones that plane shows, then a slice showing it, so that a small bone in a rare plane
    (the patella in axial slices) is drawn as often as the femur in the usual one; "planes", as
    "bones" but a slicing plane first (of those any case was sliced in), then a case sliced in it, so
    that every plane weighs alike however few cases were sliced in it (the 3D ones)."""
    if sampling in ("bones", "planes"):
        return _by_bone(pool, count, foreground_fraction, generator, plane_first=sampling == "planes")
    foreground = torch.nonzero(pool.foreground).flatten()
    n_foreground = int((torch.rand(count, generator=generator) < foreground_fraction).sum()) if len(foreground) else 0
    if sampling == "cases":
        picks = [_by_case(torch.arange(len(pool.labels)), pool.case_index, count - n_foreground, generator)]
        if n_foreground:
            picks.append(_by_case(foreground, pool.case_index[foreground], n_foreground, generator))
        return torch.cat(picks)
    picks = [torch.randint(len(pool.labels), (count - n_foreground,), generator=generator)]
    if n_foreground:
        picks.append(foreground[torch.randint(len(foreground), (n_foreground,), generator=generator)])
    return torch.cat(picks)


def _uniform(choices: Sequence | torch.Tensor, generator: torch.Generator):
    return choices[int(torch.randint(len(choices), (1,), generator=generator))]


def _by_bone(
    pool: DomainSlices, count: int, foreground_fraction: float, generator: torch.Generator, plane_first: bool
) -> torch.Tensor:
    strata = pool.strata
    planes_of: dict[int, list[int]] = {}
    cases_of: dict[int, list[int]] = {}
    for case, axis in sorted(strata):
        planes_of.setdefault(case, []).append(axis)
        cases_of.setdefault(axis, []).append(case)
    cases, planes = sorted(planes_of), sorted(cases_of)
    picks = []
    for with_bone in (torch.rand(count, generator=generator) < foreground_fraction).tolist():
        if plane_first:
            axis = _uniform(planes, generator)
            case = _uniform(cases_of[axis], generator)
        else:
            case = _uniform(cases, generator)
            axis = _uniform(planes_of[case], generator)
        by_bone = strata[(case, axis)]
        bones = [bone for bone in by_bone if bone] if with_bone else []
        members = by_bone[_uniform(bones, generator)] if bones else by_bone[0]
        picks.append(int(_uniform(members, generator)))
    return torch.tensor(picks, dtype=torch.long)


def _by_case(indices: torch.Tensor, cases: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` of ``indices`` (grouped by case, ``cases`` theirs): a uniform case, then a uniform index of it."""
    per_case = torch.bincount(cases)
    present = torch.nonzero(per_case).flatten()
    starts = torch.cumsum(per_case, 0) - per_case
    chosen = present[torch.randint(len(present), (count,), generator=generator)]
    offsets = (torch.rand(count, generator=generator) * per_case[chosen]).long().clamp_max(per_case[chosen] - 1)
    return indices[starts[chosen] + offsets]
