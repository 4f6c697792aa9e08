"""Per-bone quality (pipeline.quality): corrupted predictions score below the truth, garbage is
never reliable, the manifest's quality section round-trips through a model file and a model file
without one gets the conservative default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pipeline_model as pm
import pytest
from scipy import ndimage

from PediatricBoneSegLib.cli import main
from PediatricBoneSegLib.network.modelfile import load_model, read_manifest, save_model
from PediatricBoneSegLib.pipeline.inference import quality_model
from PediatricBoneSegLib.pipeline.postprocess import clean_labels
from PediatricBoneSegLib.pipeline.quality import (
    DEFAULT_QUALITY,
    FEATURES,
    NetworkEvidence,
    QualityModel,
    assess_bones,
    quality_warnings,
)
from PediatricBoneSegLib.resources import bundled_model_path

SPACING = (1.0, 1.0, 1.0)  # mm, z y x
SHAPE = (48, 72, 72)


def _truth() -> np.ndarray:
    """A femur (about 42 ml) above a tibia (about 25 ml): plausible knee volumes, 1 mm voxels."""
    z, y, x = np.meshgrid(*(np.arange(n, dtype=float) for n in SHAPE), indexing="ij")
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[((z - 24) / 20) ** 2 + ((y - 22) / 20) ** 2 + ((x - 36) / 25) ** 2 <= 1] = 1
    labels[((z - 24) / 16) ** 2 + ((y - 54) / 12) ** 2 + ((x - 36) / 31) ** 2 <= 1] = 2
    return labels


def _network_evidence(labels: np.ndarray, classes: int = 5) -> NetworkEvidence:
    """What a good network says about ``labels``: smooth softmax probabilities, unsure only at the edges."""
    logits = np.stack([ndimage.gaussian_filter((labels == c).astype(float), 1.5) * 12 for c in range(classes)])
    probabilities = np.exp(logits - logits.max(0))
    return NetworkEvidence.from_probabilities(probabilities / probabilities.sum(0))


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    return _truth()


@pytest.fixture(scope="module")
def evidence(truth: np.ndarray) -> NetworkEvidence:
    return _network_evidence(truth)


def _fragmented(truth: np.ndarray) -> np.ndarray:
    """The femur cut into 4 mm slabs with 4 mm gaps: scattered pieces where the network is sure."""
    labels = truth.copy()
    labels[(truth == 1) & (np.arange(SHAPE[0])[:, None, None] // 4 % 2 == 0)] = 0
    return labels


def _shifted(truth: np.ndarray) -> np.ndarray:
    labels = truth.copy()
    labels[truth == 1] = 0
    labels[np.roll(truth == 1, 9, axis=2) & (labels == 0)] = 1
    return labels


def _noise_filled(truth: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(1)
    labels = truth.copy()
    labels[(truth == 1) & (rng.random(SHAPE) < 0.4)] = 0
    labels[(truth == 0) & (rng.random(SHAPE) < 0.05)] = 1
    return labels


def _calibrated() -> list[QualityModel]:
    """The default and, when the bundled model has one, its calibrated quality model."""
    section = read_manifest(bundled_model_path()).get("quality")
    return [DEFAULT_QUALITY] + ([QualityModel.from_json(section)] if section else [])


@pytest.mark.parametrize("model", _calibrated(), ids=lambda m: "default" if m is DEFAULT_QUALITY else "calibrated")
@pytest.mark.parametrize("corrupt", [_fragmented, _shifted, _noise_filled], ids=lambda f: f.__name__.strip("_"))
def test_a_corrupted_femur_scores_below_the_truth(truth, evidence, model, corrupt):
    """Every model scores the corruption lower; the default (and every model, for the fragmented
    one: most of it outside its largest piece) also calls it unreliable. A calibrated model may
    still call a shifted femur in a familiar-looking volume reliable: its failure set has none."""
    good = assess_bones(truth, truth, evidence, SPACING, "knee", model)["femur"]
    corrupted = corrupt(truth)
    cleaned, _ = clean_labels(corrupted, SPACING, "knee")
    bad = assess_bones(corrupted, cleaned, evidence, SPACING, "knee", model)["femur"]
    assert good.reliable and good.score > 0.8, good
    assert bad.score < good.score - 0.2, bad
    if model is DEFAULT_QUALITY or corrupt is _fragmented:
        assert not bad.reliable and bad.reasons, bad


@pytest.mark.parametrize("model", _calibrated(), ids=lambda m: "default" if m is DEFAULT_QUALITY else "calibrated")
def test_garbage_probabilities_give_no_reliable_bone(model):
    """A network that says nothing (random softmax): whatever survives post-processing is flagged."""
    rng = np.random.default_rng(0)
    garbage = NetworkEvidence.from_probabilities(rng.dirichlet(np.ones(5), size=SHAPE).transpose(3, 0, 1, 2))
    cleaned, _ = clean_labels(garbage.labels, SPACING, "knee")
    qualities = assess_bones(garbage.labels, cleaned, garbage, SPACING, "knee", model)
    assert set(qualities) == {"femur", "tibia", "fibula", "patella"}
    assert not any(q.reliable for q in qualities.values())
    assert all(q.features["confidence"] < 0.6 for q in qualities.values())
    warnings = quality_warnings(qualities, "knee")
    assert len(warnings) == 4 and warnings[0].startswith("Femur: unreliable segmentation (quality ")


def test_an_epiphysis_across_its_growth_plate_is_part_of_the_bone_a_far_piece_is_not(truth):
    """A femur cut by a 2 mm physis into metaphysis and epiphysis is one main body (nothing
    outside it, one piece) and reliable; the same epiphysis 8 mm away is a fragment."""
    z = np.arange(SHAPE[0])[:, None, None]
    split = truth.copy()
    split[(truth == 1) & (z >= 30) & (z < 32)] = 0
    far = split.copy()
    far[(split == 1) & (z >= 32)] = 0
    far[np.roll((split == 1) & (z >= 32), 6, axis=0) & (far == 0)] = 1  # 2 + 6 mm from the metaphysis
    found = {}
    for name, labels in (("split", split), ("far", far)):
        found[name] = assess_bones(labels, labels, _network_evidence(labels), SPACING, "knee")["femur"]
    epiphysis = np.count_nonzero((split == 1) & (z >= 32)) / np.count_nonzero(split == 1)
    assert found["split"].features["outside_main"] == 0.0 and found["split"].features["components"] == pytest.approx(
        np.log(2)
    )
    assert found["split"].reliable, found["split"]
    assert abs(found["far"].features["outside_main"] - epiphysis) < 0.02 and 0.15 < epiphysis < 0.5
    assert found["far"].features["components"] == pytest.approx(np.log(3))
    assert found["far"].score < found["split"].score
    fragmentation = FEATURES.index("outside_main")
    assert DEFAULT_QUALITY.contributions(found["far"].features)[fragmentation] < -5.0
    assert DEFAULT_QUALITY.contributions(found["split"].features)[fragmentation] > 0.0


def test_missing_bones_are_never_reliable(truth, evidence):
    qualities = assess_bones(truth, truth, evidence, SPACING, "knee")
    assert qualities["femur"].reliable and qualities["tibia"].reliable
    assert qualities["patella"].score == 0.0 and not qualities["patella"].reliable
    assert quality_warnings(qualities, "knee") == []  # a missing bone has its own plausibility warning


def test_quality_section_round_trips_and_old_files_get_the_default(tmp_path: Path, capsys: pytest.CaptureFixture):
    network = pm.threshold_network(pm.network_config(), {})
    old = load_model(pm.save_test_model(tmp_path / "old.safetensors", network, list(pm.JOINTS)))
    assert old.manifest.quality is None and "quality" not in read_manifest(old.path)
    assert quality_model(old) is DEFAULT_QUALITY
    calibrated = QualityModel(
        weights=(2.0, -1.0, -1.0, -0.5, -1.0, -1.5, -1.0),
        means=(0.9, 0.05, 0.1, 1.0, 0.05, 1.0, 0.5),
        scales=(0.05, 0.05, 0.1, 0.5, 0.05, 1.0, 0.3),
        bias=1.0,
        threshold=0.6,
        volume_log_ml={"femur": (3.5, 0.4)},
        calibration={"bones": 10},
    )
    old.manifest.quality = calibrated.to_json()
    path = save_model(tmp_path / "new.safetensors", old.network, old.manifest)
    assert quality_model(load_model(path)) == calibrated
    assert main(["info", str(path)]) == 0 and "quality:    calibrated, threshold 0.600" in capsys.readouterr().out
    assert main(["info", str(old.path)]) == 0 and "quality:    not calibrated" in capsys.readouterr().out
    older = {**calibrated.to_json(), "features": ["outside_largest" if f == "outside_main" else f for f in FEATURES]}
    old.manifest.quality = older
    stale = load_model(save_model(tmp_path / "stale.safetensors", old.network, old.manifest))
    assert quality_model(stale) is DEFAULT_QUALITY and quality_model(stale) is DEFAULT_QUALITY
    assert len(stale.warnings) == 1 and "recalibrate" in stale.warnings[0] and str(stale.path) in stale.warnings[0]
    assert main(["info", str(stale.path)]) == 0
    assert "calibrated on another version's features" in capsys.readouterr().out
    broken = {**calibrated.to_json(), "features": list(FEATURES[:-1])}
    with pytest.raises(ValueError, match="quality features"):
        QualityModel.from_json(broken)
    with pytest.raises(ValueError, match="threshold"):
        QualityModel.from_json({**calibrated.to_json(), "threshold": 1.5})
