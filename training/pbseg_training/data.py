"""Training data: raw-layout datasets turned into per-domain pools of network-ready 2D slices.

Every volume goes through ``PediatricBoneSegLib.pipeline.preprocessing.slice_volume``, the chain inference
uses, so the network is trained on exactly what it will see in Slicer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from pbseg_training.dataset import RawDataset, validate_dataset
from PediatricBoneSegLib.catalog import get_joint
from PediatricBoneSegLib.network.config import PreprocessingConfig
from PediatricBoneSegLib.pipeline.orientation import PLANE_AXIS
from PediatricBoneSegLib.pipeline.preprocessing import slice_volume

from .config import DatasetSpec


@dataclass
class DomainSlices:
    """All slices of one domain (``source``: its dataset folder; ``provenance``: what its
    dataset.json says of its origin, e.g. the phantom generator's version and seed).

    ``images``: [N, 1, S, S] float32; ``labels``: [N, S, S] uint8 in the joint's label space;
    ``tissues``: [N, S, S] uint8 tissue label maps where every case has one (else None), for
    label-to-image synthesis;
    ``case_index``: [N] which case each slice comes from (``case_ids``); ``mirrorable``: [N] bool,
    True where the slice's width axis is left-right (mirroring it gives the other side's anatomy;
    a sagittal slice has no left-right axis)."""

    joint: str
    source: str
    provenance: dict
    images: torch.Tensor
    labels: torch.Tensor
    case_index: torch.Tensor
    case_ids: list[str]
    mirrorable: torch.Tensor
    tissues: torch.Tensor | None = None

    @property
    def foreground(self) -> torch.Tensor:
        return self.labels.flatten(1).amax(dim=1) > 0


def load_volume_pair(image_path: Path, label_path: Path) -> tuple[sitk.Image, np.ndarray]:
    image = sitk.ReadImage(str(image_path), sitk.sitkFloat32)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path))).astype(np.uint8)
    return image, labels


def load_domain(spec: DatasetSpec, preprocessing: PreprocessingConfig) -> DomainSlices:
    """Validate the dataset (all problems reported at once) and slice every (selected) case."""
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
    images, labels, case_index, mirrorable, tissues = [], [], [], [], []
    with_tissues = all(case.tissue_path is not None for case in cases)
    for index, case in enumerate(cases):
        image, label_array = load_volume_pair(case.image_path, case.label_path)
        sliced = slice_volume(
            sitk.GetArrayViewFromImage(image),
            image.GetSpacing(),
            image.GetDirection(),
            joint.usual_plane,
            preprocessing,
        )
        images.append(sliced.network_input(0, len(sliced.slices)))
        labels.append(sliced.network_labels(label_array).to(torch.uint8))
        if with_tissues:
            tissue_array = sitk.GetArrayFromImage(sitk.ReadImage(str(case.tissue_path)))
            tissues.append(sliced.network_labels(tissue_array.astype(np.uint8)).to(torch.uint8))
        case_index.append(torch.full((len(sliced.slices),), index, dtype=torch.long))
        mirrorable.append(torch.full((len(sliced.slices),), sliced.axis != PLANE_AXIS["sagittal"]))
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
        torch.cat(mirrorable),
        torch.cat(tissues) if with_tissues else None,
    )


def sample_indices(
    pool: DomainSlices, count: int, foreground_fraction: float, generator: torch.Generator
) -> torch.Tensor:
    """``count`` slice indices: about ``foreground_fraction`` of them from slices showing bone."""
    foreground = torch.nonzero(pool.foreground).flatten()
    n_foreground = int((torch.rand(count, generator=generator) < foreground_fraction).sum()) if len(foreground) else 0
    picks = [torch.randint(len(pool.labels), (count - n_foreground,), generator=generator)]
    if n_foreground:
        picks.append(foreground[torch.randint(len(foreground), (n_foreground,), generator=generator)])
    return torch.cat(picks)
