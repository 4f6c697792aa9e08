"""Joint detection data of a model file, fitted on training volumes: the joint classifier, the
novelty reference and its out-of-distribution threshold (see ``pipeline.detection``).

``python -m pbseg_training.detection_fit MODEL DATASET [DATASET ...] -o NEW_MODEL`` refits them
for an existing model file from its training datasets (raw layout, one joint each); the export at
the end of every training does the same with the training data.

The features of a volume are computed by the inference's own functions (``detection_features``
on the volume sliced as every domain sees it), so the classifier sees at inference exactly what
it was fitted on. The classifier is a multinomial logistic regression on standardized features
with an L2 penalty; the threshold is ``THRESHOLD_MARGIN`` times the largest leave-one-out novelty
of the training cases (each case's distance to its nearest other training case).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import SimpleITK as sitk
import torch

from PediatricBoneSegLib.network.modelfile import (
    DetectionConfig,
    JointClassifier,
    LoadedModel,
    load_model,
    resave_model,
)
from PediatricBoneSegLib.pipeline.detection import detection_features
from PediatricBoneSegLib.pipeline.inference import model_slicings

from .dataset import RawDataset

DETECTION_SCALE = "statistics:enc3+enc4"  # middle levels: anatomy and image statistics (embedding.py)
REGULARIZATION = 0.01  # L2 weight on the standardized features' coefficients
THRESHOLD_MARGIN = 1.25
METRIC = "cosine distance of the encoder statistics to the nearest training case"


def volume_features(loaded: LoadedModel, image: sitk.Image) -> torch.Tensor:
    """[F]: what ``pipeline.detection`` computes for ``image`` (under every domain)."""
    slicings = model_slicings(loaded, image)
    with torch.inference_mode():
        return detection_features(loaded, slicings, torch.device("cpu"), DETECTION_SCALE)


def fit_classifier(features: torch.Tensor, domains: torch.Tensor, num_domains: int) -> JointClassifier:
    """features [N, F] of the training volumes, domains [N] (their joint's domain). With one domain
    the classifier is constant (probability 1) and only the novelty reference matters."""
    features = features.double()
    mean = features.mean(dim=0)
    scale = features.std(dim=0).clamp_min(1e-3)  # near-constant features would otherwise dominate
    standardized = (features - mean) / scale
    weight = torch.zeros(num_domains, features.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_domains, dtype=torch.float64, requires_grad=True)
    if num_domains > 1:
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=500, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            logits = standardized @ weight.T + bias
            loss = torch.nn.functional.cross_entropy(logits, domains) + REGULARIZATION * weight.square().sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            optimizer.step(closure)
    reference = torch.nn.functional.normalize(features, dim=1)
    return JointClassifier(*(tensor.detach().float() for tensor in (weight, bias, mean, scale, reference)))


def novelty_threshold(classifier: JointClassifier) -> float | None:
    """``THRESHOLD_MARGIN`` x the largest distance of a training case to its nearest other one
    (None with a single training case: no distance to learn from, no out-of-distribution warning)."""
    if len(classifier.reference) < 2:
        return None
    similarity = classifier.reference @ classifier.reference.T
    similarity.fill_diagonal_(-1.0)
    leave_one_out = 1.0 - similarity.max(dim=1).values
    return THRESHOLD_MARGIN * float(leave_one_out.max())


def fit_detection(
    loaded: LoadedModel, volumes: Iterable[tuple[str, sitk.Image]]
) -> tuple[JointClassifier, DetectionConfig]:
    """The detection data for ``loaded``'s network from (joint, image) training volumes (every
    joint of the model among them)."""
    loaded.network.eval()
    rows, domains = [], []
    for joint, image in volumes:
        rows.append(volume_features(loaded, image))
        domains.append(loaded.domain_of(joint))
    missing = sorted(set(loaded.manifest.joints) - {loaded.manifest.joints[d] for d in domains})
    if missing:
        raise ValueError(f"detection needs training volumes of every joint (none of {', '.join(missing)})")
    classifier = fit_classifier(torch.stack(rows), torch.tensor(domains), len(loaded.manifest.joints))
    return classifier, DetectionConfig(DETECTION_SCALE, novelty_threshold(classifier), METRIC, "classifier")


def dataset_volumes(datasets: Sequence[str | Path]) -> Iterable[tuple[str, sitk.Image]]:
    """(joint, image) of every case of raw-layout dataset folders."""
    for folder in datasets:
        dataset = RawDataset(folder)
        for case in dataset.cases:
            yield dataset.joint, sitk.ReadImage(str(case.image_path), sitk.sitkFloat32)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pbseg_training.detection_fit",
        description="Refit a model file's joint detection (classifier, novelty threshold) on its training datasets.",
    )
    parser.add_argument("model", type=Path)
    parser.add_argument("datasets", nargs="+", type=Path, help="raw-layout dataset folders (one joint each)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the new model file")
    args = parser.parse_args(argv)
    loaded = load_model(args.model)
    classifier, detection = fit_detection(loaded, dataset_volumes(args.datasets))
    # The quality model weighs the detection distance: a calibration made with other detection data
    # no longer holds.
    manifest = dataclasses.replace(loaded.manifest, detection=detection, quality=None)
    resave_model(dataclasses.replace(loaded, centroids=None, classifier=classifier), args.output, manifest)
    print(f"wrote {args.output}: {len(classifier.reference)} training volumes, threshold {detection.threshold}")
    if loaded.manifest.quality is not None:
        print("its quality calibration was dropped (it depends on the detection): run calibrate_quality again")
    return 0


if __name__ == "__main__":
    sys.exit(main())
