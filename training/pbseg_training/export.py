"""Export of a trained network to the model file that the CLI and Slicer load unchanged, with its
joint detection (classifier, novelty reference and out-of-distribution threshold) fitted on the
training volumes (``detection_fit``)."""

from __future__ import annotations

import dataclasses
import datetime
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from PediatricBoneSegLib import __version__
from PediatricBoneSegLib.network import MultiDomainUNet
from PediatricBoneSegLib.network.config import PreprocessingConfig
from PediatricBoneSegLib.network.modelfile import LoadedModel, ModelManifest, save_model

from .config import TrainingConfig
from .data import DomainSlices
from .dataset import RawDataset
from .detection_fit import fit_detection
from .schemes import Phase


def pool_volumes(pools: list[DomainSlices]) -> Iterator[tuple[str, sitk.Image]]:
    """(joint, image) of every training case, read again from its dataset: detection is fitted on
    whole volumes, sliced as the inference slices them for every domain."""
    for pool in pools:
        dataset = RawDataset(pool.source)
        for case_id in pool.case_ids:
            yield pool.joint, sitk.ReadImage(str(dataset.case(case_id).image_path), sitk.sitkFloat32)


def code_version() -> str:
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=10,
            check=False,
        )
        return f"{__version__}+{described.stdout.strip()}" if described.returncode == 0 else __version__
    except OSError:
        return __version__


def export_model(
    network: MultiDomainUNet,
    config: TrainingConfig,
    phase: Phase,
    pools: list[DomainSlices],
    path: Path,
    training_seconds: float,
    final_losses: list[float],
    metrics: dict | None = None,
) -> Path:
    network = network.eval().to(memory_format=torch.contiguous_format)
    manifest = ModelManifest(
        name=config.name,
        version=datetime.date.today().isoformat(),
        architecture=phase.network,
        joints=list(phase.joints),
        preprocessing=PreprocessingConfig(size=config.input_size),
        provenance={
            "scheme": config.scheme,
            "seed": config.seed,
            "steps": config.steps,
            "batch_per_domain": config.batch_per_domain,
            "encoder_init": "imagenet" if config.imagenet_weights else "random",
            "initial_model": Path(config.initial_model).name if config.initial_model else None,
            "loss_weights": {
                "contrastive": config.contrastive_weight if config.contrastive else 0.0,
                "shape": config.shape_weight if config.shape_prior else 0.0,
            },
            "data": [
                {
                    "joint": pool.joint,
                    "dataset": pool.source,
                    **pool.provenance,
                    "cases": len(pool.case_ids),
                    "slices": len(pool.labels),
                }
                for pool in pools
            ],
            "training_seconds": round(training_seconds, 1),
            "final_loss": round(float(np.mean(final_losses)), 4) if final_losses else None,
            "metrics": metrics or {},
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "code_version": code_version(),
        },
    )
    classifier, detection = fit_detection(LoadedModel(network, manifest, None, path), pool_volumes(pools))
    return save_model(path, network, dataclasses.replace(manifest, detection=detection), classifier=classifier)
