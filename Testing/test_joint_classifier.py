"""Joint detection by the joint classifier (``pipeline.detection``, fitted by
``pbseg_training.detection_fit``): a real network whose per-domain BN statistics were measured on
two opposite contrasts, a classifier fitted on volumes of each, then the whole pipeline on volumes
it never saw, a joint forced on the wrong anatomy, a volume that is no joint MR, and the file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pipeline_model as pm
import pytest
import SimpleITK as sitk
import torch

from pbseg_training.detection_fit import THRESHOLD_MARGIN, fit_classifier, fit_detection, novelty_threshold
from PediatricBoneSegLib.network.modelfile import LoadedModel, ModelFileError, load_model, resave_model, save_model
from PediatricBoneSegLib.options import SegmentOptions
from PediatricBoneSegLib.pipeline.detection import classifier_outputs
from PediatricBoneSegLib.pipeline.inference import segment_image

MISMATCH = "was requested but the volume looks like"
UNKNOWN = "does not look like"


@pytest.fixture(scope="module")
def classified(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedModel, dict[str, list[pm.Scene]]]:
    """The detection network with a classifier fitted on 3 volumes per joint, saved and loaded;
    and 2 new volumes per joint (other shapes, orientations and spacing)."""
    network, _, _, scenes = pm.detection_model(seed=3)
    path = pm.save_test_model(tmp_path_factory.mktemp("classifier") / "start.safetensors", network, list(pm.JOINTS))
    start = load_model(path)
    classifier, detection = fit_detection(
        start, [(joint, scene.image) for joint in pm.JOINTS for scene in scenes[joint]]
    )
    fitted = dataclasses.replace(start, classifier=classifier)
    final = resave_model(
        fitted, path.with_name("classifier.safetensors"), dataclasses.replace(start.manifest, detection=detection)
    )
    rng = np.random.default_rng(11)
    unseen = {
        joint: [pm.make_scene(joint, rng, pm.random_direction(rng), (1.0, 1.3, 3.5)) for _ in range(2)]
        for joint in pm.JOINTS
    }
    return load_model(final), unseen


def test_the_file_keeps_the_classifier_and_says_so(classified: tuple) -> None:
    model, _ = classified
    assert model.manifest.detection.method == "classifier" and model.centroids is None
    assert model.manifest.detection.scale == "statistics:enc3+enc4"
    assert model.classifier is not None and model.classifier.weight.shape[0] == len(pm.JOINTS)
    assert model.manifest.detection.threshold is not None and model.manifest.detection.threshold > 0


@pytest.mark.parametrize("joint", pm.JOINTS)
def test_auto_detection_on_unseen_volumes(classified: tuple, joint: str) -> None:
    model, unseen = classified
    for scene in unseen[joint]:
        result = segment_image(scene.image, SegmentOptions(joint="auto", postprocess=False), model=model)
        assert result.joint == joint and result.auto_detected
        assert set(result.joint_probabilities) == set(pm.JOINTS)
        assert (
            result.joint_confidence == pytest.approx(result.joint_probabilities[joint])
            and result.joint_confidence > 0.5
        )
        assert result.joint_novelty is not None and result.joint_novelty <= model.manifest.detection.threshold
        assert not any(UNKNOWN in warning for warning in result.warnings)


@pytest.mark.parametrize(("truth", "forced"), [("knee", "ankle"), ("ankle", "knee")])
def test_a_joint_forced_on_another_joints_volume_is_warned(classified: tuple, truth: str, forced: str) -> None:
    model, unseen = classified
    result = segment_image(unseen[truth][0].image, SegmentOptions(joint=forced, postprocess=False), model=model)
    assert result.joint == forced and not result.auto_detected and result.joint_confidence is None
    (warning,) = [w for w in result.warnings if MISMATCH in w]
    article = "an" if truth == "ankle" else "a"
    assert warning.startswith(
        f"the {forced} was requested but the volume looks like {article} {truth} MR (joint classifier:"
    )
    assert f"--joint auto or --joint {truth}" in warning
    own = segment_image(unseen[truth][0].image, SegmentOptions(joint=truth, postprocess=False), model=model)
    assert not any(MISMATCH in w for w in own.warnings)


def test_a_volume_that_is_no_joint_mr_is_flagged(classified: tuple) -> None:
    model, unseen = classified
    reference = unseen["knee"][0].image
    noise = sitk.GetImageFromArray(
        np.random.default_rng(0).rayleigh(1.0, sitk.GetArrayViewFromImage(reference).shape).astype(np.float32)
    )
    noise.CopyInformation(reference)
    result = segment_image(noise, SegmentOptions(joint="auto", postprocess=False), model=model)
    assert result.joint_novelty > model.manifest.detection.threshold
    assert any(UNKNOWN in w and "from the training data" in w for w in result.warnings)
    forced = segment_image(noise, SegmentOptions(joint="knee", postprocess=False), model=model)
    assert any("does not look like the knee MRs" in w for w in forced.warnings)
    assert not any(MISMATCH in w for w in forced.warnings)  # it looks like no joint, not like another one


def test_fit_classifier_separates_and_measures_novelty() -> None:
    """Two clouds of features: the classifier gives each its domain; a point of the reference has
    novelty 0, a point opposite to every (non-negative) reference point at least 1; the threshold is
    the margin times the largest leave-one-out distance."""
    generator = torch.Generator().manual_seed(0)
    base = torch.zeros(2, 6)
    base[0, 0], base[1, 1] = 1.0, 1.0
    features = torch.cat([base[d] + 0.05 * torch.randn(8, 6, generator=generator) for d in (0, 1)]).abs()
    domains = torch.tensor([0] * 8 + [1] * 8)
    classifier = fit_classifier(features, domains, 2)
    for row, domain in zip(features, domains):
        probabilities, novelty = classifier_outputs(classifier, row)
        assert int(probabilities.argmax()) == int(domain) and novelty == pytest.approx(0.0, abs=1e-6)
    opposite = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    opposite[5] = -1.0
    assert classifier_outputs(classifier, opposite)[1] >= 1.0 - 1e-6
    reference = classifier.reference
    similarity = reference @ reference.T
    similarity.fill_diagonal_(-1)
    expected = THRESHOLD_MARGIN * float((1 - similarity.max(1).values).max())
    assert novelty_threshold(classifier) == pytest.approx(expected, rel=1e-5)


def test_detection_method_and_tensors_must_agree(classified: tuple, tmp_path: Path) -> None:
    model, _ = classified
    without = save_model(tmp_path / "without.safetensors", model.network, model.manifest)  # method says classifier
    with pytest.raises(ModelFileError, match="does not match the detection tensors"):
        load_model(without)
    upgraded = resave_model(model, tmp_path / "again.safetensors")
    again = load_model(upgraded)
    assert again.classifier is not None and torch.equal(again.classifier.weight, model.classifier.weight)


def test_fit_needs_every_joint(classified: tuple) -> None:
    model, unseen = classified
    with pytest.raises(ValueError, match="every joint"):
        fit_detection(model, [("knee", scene.image) for scene in unseen["knee"]])
