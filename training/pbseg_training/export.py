"""Export of a trained network to the model file that the CLI and Slicer load unchanged, with
per-domain embedding centroids and an out-of-distribution threshold from the training data."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

import numpy as np
import torch

from PediatricBoneSegLib import __version__
from PediatricBoneSegLib.network import MultiDomainUNet
from PediatricBoneSegLib.network.config import PreprocessingConfig
from PediatricBoneSegLib.network.modelfile import DetectionConfig, ModelManifest, save_model
from PediatricBoneSegLib.pipeline.embedding import detection_slice_indices, volume_embedding

from .config import TrainingConfig
from .data import DomainSlices
from .schemes import Phase

DETECTION_SCALE = "features:enc5"  # see embedding.volume_embedding


def case_embeddings(network: MultiDomainUNet, pool: DomainSlices, domain: int, scale: str) -> torch.Tensor:
    """[cases, dim]: the detection embedding of every case of a domain's pool."""
    rows = []
    for case in range(len(pool.case_ids)):
        case_images = pool.images[pool.case_index == case]
        picks = torch.from_numpy(detection_slice_indices(len(case_images)))
        rows.append(volume_embedding(network, case_images[picks], domain, scale))
    return torch.stack(rows)


def detection_data(network: MultiDomainUNet, pools: list[DomainSlices], scale: str) -> tuple[torch.Tensor, float]:
    """Centroid per domain [domains, dim] and the cosine-distance threshold beyond which a volume
    is out of distribution: well above the farthest training case from its own centroid (held-out
    cases lie farther than training cases)."""
    network.eval()
    centroids, distances = [], []
    for domain, pool in enumerate(pools):
        embeddings = case_embeddings(network, pool, domain, scale)
        centroid = torch.nn.functional.normalize(embeddings.mean(0), dim=0)
        centroids.append(centroid)
        distances.append(1 - embeddings @ centroid)
    spread = torch.cat(distances).numpy()
    threshold = float(max(np.max(spread) * 3.0, np.mean(spread) + 6 * np.std(spread), 0.02))
    return torch.stack(centroids), threshold


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
    centroids, threshold = detection_data(network, pools, DETECTION_SCALE)
    manifest = ModelManifest(
        name=config.name,
        version=datetime.date.today().isoformat(),
        architecture=phase.network,
        joints=list(phase.joints),
        preprocessing=PreprocessingConfig(size=config.input_size),
        detection=DetectionConfig(DETECTION_SCALE, threshold, "cosine distance"),
        provenance={
            "scheme": config.scheme,
            "seed": config.seed,
            "steps": config.steps,
            "batch_per_domain": config.batch_per_domain,
            "encoder_init": "imagenet" if config.imagenet_weights else "random",
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
    return save_model(path, network, manifest, centroids)
