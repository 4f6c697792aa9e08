"""The inference pipeline with real networks whose behaviour is known (see pipeline_model.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pipeline_model as pm
import pytest
import SimpleITK as sitk
import torch

from PediatricBoneSegLib.catalog import get_joint, union_label
from PediatricBoneSegLib.network import NetworkConfig
from PediatricBoneSegLib.network.modelfile import LoadedModel, load_model
from PediatricBoneSegLib.options import SegmentOptions
from PediatricBoneSegLib.pipeline.acceleration import auto_precision
from PediatricBoneSegLib.pipeline.inference import resolve_device, segment_image
from PediatricBoneSegLib.progress import Cancelled, CancelToken

KNEE = get_joint("knee")


def _orthonormal(matrix: np.ndarray) -> np.ndarray:
    """The nearest orthogonal matrix (polar decomposition): two-decimal rotations are sheared by
    a fraction of a degree, and ``check_volume`` refuses sheared grids."""
    u, _, vt = np.linalg.svd(matrix)
    return u @ vt


# Oblique rotations with mirrors and anisotropic spacing: the largest spacing is along a different
# index axis each time, so each slices along another array axis.
GEOMETRIES = {
    "oblique-mirrored": (
        _orthonormal(np.array([[0.86, -0.44, 0.26], [0.50, 0.80, -0.33], [-0.07, 0.41, 0.91]]))
        @ np.diag([1.0, -1.0, 1.0]),
        (1.1, 2.6, 0.9),
    ),
    "permuted-flipped": (
        _orthonormal(np.array([[0.0, 0.97, -0.26], [0.0, 0.26, 0.97], [-1.0, 0.0, 0.0]])) @ np.diag([-1.0, 1.0, -1.0]),
        (2.8, 1.0, 1.2),
    ),
}
CENTRES = {1: (7.0, -9.0, 11.0), 2: (-6.0, 8.0, -13.0)}
SEMI_AXES = {1: (11.0, 9.0, 12.0), 2: (9.0, 8.0, 9.0)}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def _centroid_lps(image: sitk.Image, mask: np.ndarray) -> np.ndarray:
    index = np.argwhere(mask).mean(axis=0)[::-1]
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint(index.tolist()))


def _threshold_model(tmp_path: Path, scene: pm.Scene, config: NetworkConfig | None = None, relabel=None) -> LoadedModel:
    """A model labelling the scene's intensity classes; ``relabel`` maps scene labels to head labels."""
    classes = pm.classes_by_intensity(pm.normalized_levels(scene))
    if relabel is not None:
        classes = [(relabel[label], threshold) for label, threshold in classes]
    config = config or pm.network_config()
    heads = {config.head_of(pm.JOINTS.index("knee")): classes}
    network = pm.threshold_network(config, heads)
    return load_model(pm.save_test_model(tmp_path / "threshold.safetensors", network, list(pm.JOINTS)))


@pytest.fixture(scope="module")
def oblique(tmp_path_factory: pytest.TempPathFactory) -> tuple[pm.Scene, LoadedModel]:
    direction, spacing = GEOMETRIES["oblique-mirrored"]
    scene = pm.make_scene("knee", np.random.default_rng(2), direction, spacing, CENTRES, SEMI_AXES)
    return scene, _threshold_model(tmp_path_factory.mktemp("oblique"), scene)


@pytest.fixture(scope="module")
def detection(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedModel, dict[str, list[pm.Scene]]]:
    network, centroids, threshold, scenes = pm.detection_model(seed=1)
    path = tmp_path_factory.mktemp("detection") / "detection.safetensors"
    return load_model(pm.save_test_model(path, network, list(pm.JOINTS), centroids, threshold)), scenes


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_labels_land_on_the_physical_truth(tmp_path: Path, geometry: str) -> None:
    direction, spacing = GEOMETRIES[geometry]
    scene = pm.make_scene("knee", np.random.default_rng(2), direction, spacing, CENTRES, SEMI_AXES)
    model = _threshold_model(tmp_path, scene)
    # Geometry is checked voxel by voxel: fp32, whatever the hardware would pick for "auto".
    result = segment_image(scene.image, SegmentOptions(joint="knee", precision="fp32"), model=model)
    labels = result.labels
    assert labels.GetPixelID() == sitk.sitkUInt8
    assert labels.GetSize() == scene.image.GetSize()
    assert labels.GetOrigin() == scene.image.GetOrigin()
    assert labels.GetSpacing() == scene.image.GetSpacing()
    assert labels.GetDirection() == scene.image.GetDirection()
    predicted, truth = sitk.GetArrayFromImage(labels), sitk.GetArrayFromImage(scene.labels)
    for value in (1, 2):
        assert _dice(predicted == value, truth == value) > 0.85, value
        # a wrong flip or permutation would move the bone by 10-30 mm
        error = np.linalg.norm(_centroid_lps(labels, predicted == value) - np.asarray(CENTRES[value]))
        assert error < 1.5, (value, error)
    assert result.joint == "knee" and not result.auto_detected and result.joint_confidence is None
    assert result.model_name == "pbseg-test" and result.precision == "fp32"
    assert result.device == str(resolve_device("auto"))  # CUDA where PyTorch sees a GPU
    assert {"preprocess", "network", "postprocess"} <= set(result.timings)


def test_auto_device_and_precision_are_the_hardwares_choice(oblique: tuple[pm.Scene, LoadedModel]) -> None:
    """Device and precision "auto" resolve to what this machine computes natively (bf16 on
    AVX-512-BF16/AMX CPUs and on GPUs, fp16 on GPUs without bf16, else fp32), and the result says
    what was used: the suite passes on CPUs with and without bf16 and on a GPU."""
    scene, model = oblique
    device = resolve_device("auto")
    automatic = segment_image(scene.image, SegmentOptions(joint="knee"), model=model)
    assert (automatic.device, automatic.precision) == (str(device), auto_precision(device))
    on_cpu = segment_image(scene.image, SegmentOptions(joint="knee", device="cpu"), model=model)
    assert (on_cpu.device, on_cpu.precision) == ("cpu", auto_precision(torch.device("cpu")))
    exact = segment_image(scene.image, SegmentOptions(joint="knee", device="cpu", precision="fp32"), model=model)
    assert (exact.device, exact.precision) == ("cpu", "fp32")
    truth = sitk.GetArrayFromImage(scene.labels)
    for result in (automatic, on_cpu):  # whatever was chosen still segments the scene
        predicted = sitk.GetArrayFromImage(result.labels)
        assert all(_dice(predicted == value, truth == value) > 0.85 for value in (1, 2)), result.precision


def test_shared_union_head_is_mapped_to_the_joints_labels(tmp_path: Path) -> None:
    """A fully shared network has one head over the 8 union bones: the knee's labels come from
    the knee bones' union channels, in the knee's label order; other joints never see them."""
    direction, spacing = GEOMETRIES["oblique-mirrored"]
    scene = pm.make_scene("knee", np.random.default_rng(2), direction, spacing, CENTRES, SEMI_AXES)
    config = NetworkConfig(
        encoder="resnet18", classes_per_domain=(9, 9), shared=True, decoder_channels=(32, 16, 16, 8, 8)
    )
    relabel = {0: 0, 1: union_label("patella"), 2: union_label("fibula")}
    model = _threshold_model(tmp_path, scene, config, relabel)
    knee = segment_image(scene.image, SegmentOptions(joint="knee", postprocess=False, precision="fp32"), model=model)
    predicted, truth = sitk.GetArrayFromImage(knee.labels), sitk.GetArrayFromImage(scene.labels)
    assert _dice(predicted == KNEE.label_of("patella"), truth == 1) > 0.85
    assert _dice(predicted == KNEE.label_of("fibula"), truth == 2) > 0.85
    ankle = segment_image(scene.image, SegmentOptions(joint="ankle", postprocess=False, precision="fp32"), model=model)
    assert not sitk.GetArrayFromImage(ankle.labels).any()  # no ankle bone lit up: all background


@pytest.mark.parametrize("joint", pm.JOINTS)
def test_joint_is_auto_detected_with_confidence(detection: tuple, joint: str) -> None:
    model, scenes = detection
    result = segment_image(scenes[joint][0].image, SegmentOptions(), model=model)
    assert result.joint == joint and result.auto_detected
    assert result.joint_confidence is not None and result.joint_confidence > 0.6
    assert set(result.joint_distances) == set(pm.JOINTS)
    assert result.joint_distances[joint] < model.manifest.detection.threshold
    assert not any("does not look like" in w for w in result.warnings)


def test_a_volume_that_is_no_joint_mr_gets_a_warning(detection: tuple) -> None:
    model, _ = detection
    noise = sitk.GetImageFromArray(np.random.default_rng(1).normal(size=(16, 40, 40)).astype(np.float32))
    noise.SetSpacing((1.0, 1.0, 2.5))
    automatic = segment_image(noise, SegmentOptions(), model=model)
    assert any("does not look like a joint MR this model knows" in w for w in automatic.warnings)
    forced = segment_image(noise, SegmentOptions(joint="knee"), model=model)
    assert not forced.auto_detected and forced.joint_confidence is None
    assert any("does not look like the knee MRs" in w for w in forced.warnings)


def test_auto_without_detection_data_asks_for_the_joint(oblique: tuple[pm.Scene, LoadedModel]) -> None:
    scene, model = oblique  # saved without centroids
    with pytest.raises(ValueError, match="no joint-detection data; choose the joint"):
        segment_image(scene.image, SegmentOptions(joint="auto"), model=model)
    with pytest.raises(ValueError, match="has no 'shoulder' domain"):
        segment_image(scene.image, SegmentOptions(joint="shoulder"), model=model)


def test_progress_batches_and_cancel(oblique: tuple[pm.Scene, LoadedModel]) -> None:
    scene, model = oblique
    reports: list[tuple[float, str]] = []
    # Labels compared exactly across batch sizes: fp32 (reduced-precision rounding may differ by batch).
    small = segment_image(
        scene.image,
        SegmentOptions(joint="knee", batch_size=4, precision="fp32"),
        lambda *r: reports.append(r),
        None,
        model,
    )
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert sum("segmenting slice" in m for _, m in reports) > 3
    large = segment_image(scene.image, SegmentOptions(joint="knee", batch_size=64, precision="fp32"), model=model)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(small.labels), sitk.GetArrayFromImage(large.labels))

    cancel = CancelToken()
    batches: list[str] = []

    def cancel_after_two_batches(fraction: float, message: str) -> None:
        if "segmenting slice" in message:
            batches.append(message)
            if len(batches) == 2:
                cancel.cancel()

    model.network.train()  # a training loop's model: the pipeline must hand it back as it was
    with pytest.raises(Cancelled):
        segment_image(scene.image, SegmentOptions(joint="knee", batch_size=4), cancel_after_two_batches, cancel, model)
    assert len(batches) == 2 and model.network.training
    model.network.eval()


def test_invalid_options_and_inputs_are_refused_clearly(oblique: tuple[pm.Scene, LoadedModel]) -> None:
    problems = SegmentOptions(joint="elbow", device="tpu", precision="fp8", batch_size=0, model_path="x.st").problems()
    assert len(problems) == 5
    assert any("elbow" in p for p in problems) and any("x.st" in p for p in problems)
    if not torch.cuda.is_available():
        assert "no CUDA GPU" in SegmentOptions(device="cuda").problems()[0]
    scene, model = oblique
    with pytest.raises(ValueError, match="invalid options: unknown joint 'elbow'"):
        segment_image(scene.image, SegmentOptions(joint="elbow"), model=model)
    broken = sitk.Image(scene.image)
    broken[3, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        segment_image(broken, SegmentOptions(joint="knee"), model=model)
