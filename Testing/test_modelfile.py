"""Model files: safetensors + manifest; never unpickled; every defect has its own clear error; the
checksum covers the manifest too (format 2); format-1 files load with a warning, never silently."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pipeline_model as pm
import pytest
import torch
from bad_inputs import write_image
from safetensors.torch import load_file, save_file

from pbseg_training.detection_fit import novelty_threshold
from PediatricBoneSegLib.cli import main
from PediatricBoneSegLib.network import MultiDomainUNet, NetworkConfig
from PediatricBoneSegLib.network.config import PreprocessingConfig
from PediatricBoneSegLib.network.modelfile import (
    FORMAT_VERSION,
    MANIFEST_KEY,
    DetectionConfig,
    ModelFileError,
    ModelManifest,
    load_model,
    model_checksum,
    read_manifest,
    save_model,
    tensors_checksum,
)
from PediatricBoneSegLib.options import SegmentOptions
from PediatricBoneSegLib.pipeline.inference import segment_image
from PediatricBoneSegLib.resources import bundled_model_path


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MultiDomainUNet]:
    torch.manual_seed(0)
    config = NetworkConfig(encoder="resnet18", decoder_channels=(32, 16, 16, 8, 8))
    network = MultiDomainUNet(config).eval()
    manifest = ModelManifest(
        "test",
        "1",
        config,
        ["ankle", "knee", "shoulder"],
        PreprocessingConfig(size=64),
        detection=DetectionConfig("enc5", 0.3),
    )
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    save_model(path, network, manifest, torch.randn(3, 128))
    return path, network


def rewrite(source: Path, target: Path, change_tensors=None, change_manifest=None, reseal=False, indent=None) -> Path:
    """Write a copy of a model file with its tensors or manifest edited: as a tamperer would, or,
    with ``reseal``, with a valid format-2 checksum (as a faulty exporter would)."""
    from safetensors import safe_open

    with safe_open(str(source), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(source))
    if change_tensors:
        change_tensors(tensors)
    manifest = json.loads(metadata[MANIFEST_KEY])
    if change_manifest:
        change_manifest(manifest)
    if reseal:
        manifest["checksum_sha256"] = model_checksum(manifest, tensors)
    save_file(tensors, str(target), metadata={**metadata, MANIFEST_KEY: json.dumps(manifest, indent=indent)})
    return target


def as_format_1(source: Path, target: Path, change_manifest=None) -> Path:
    """The file as PediatricBoneSeg wrote it before format 2: same manifest, checksum of the tensors only."""

    def old(manifest):
        manifest["format_version"] = 1
        manifest["checksum_sha256"] = tensors_checksum(load_file(str(source)))
        if change_manifest:
            change_manifest(manifest)

    return rewrite(source, target, change_manifest=old)


def _threshold(value: float):
    return lambda manifest: manifest["detection"].update(threshold=value)


def test_round_trip_gives_bit_identical_outputs(saved) -> None:
    path, network = saved
    loaded = load_model(path)
    x = torch.randn(2, 1, 64, 64)
    with torch.inference_mode():
        for domain in range(3):
            assert torch.equal(network(x, domain).logits[domain], loaded.network(x, domain).logits[domain])
    assert loaded.manifest.joints == ["ankle", "knee", "shoulder"]
    assert loaded.manifest.preprocessing.size == 64
    assert loaded.centroids is not None and loaded.centroids.shape == (3, 128)
    assert read_manifest(path)["joints"][1] == {"key": "knee", "bones": ["femur", "tibia", "patella", "fibula"]}


def test_tampered_tensor_fails_the_checksum(saved, tmp_path: Path) -> None:
    def nudge(tensors):
        tensors["network.encoder.conv1.weight"][0, 0, 0, 0] += 1e-3

    target = rewrite(saved[0], tmp_path / "tampered.safetensors", change_tensors=nudge)
    with pytest.raises(ModelFileError, match=r"tampered\.safetensors: checksum mismatch"):
        load_model(target)


def test_truncated_file(saved, tmp_path: Path) -> None:
    data = saved[0].read_bytes()
    target = tmp_path / "truncated.safetensors"
    target.write_bytes(data[: len(data) - 1000])
    with pytest.raises(ModelFileError, match=r"truncated\.safetensors: .*truncated or corrupt"):
        load_model(target)


def test_pickle_is_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (marker.touch, ())

    for name in ("model.pt", "model.safetensors"):  # refused by suffix and by content
        target = tmp_path / name
        torch.save({"weights": Payload()}, target)
        with pytest.raises(ModelFileError, match=rf"{name}: this is a pickled PyTorch file"):
            load_model(target)
    assert not marker.exists()


def test_future_format_version(saved, tmp_path: Path) -> None:
    target = rewrite(saved[0], tmp_path / "future.safetensors", change_manifest=lambda m: m.update(format_version=99))
    with pytest.raises(ModelFileError, match=r"future\.safetensors: model format version 99 is not supported"):
        load_model(target)


def test_manifest_that_does_not_match_the_tensors(saved, tmp_path: Path) -> None:
    def bigger(manifest):
        manifest["architecture"]["encoder"] = "resnet34"

    target = rewrite(saved[0], tmp_path / "mismatch.safetensors", change_manifest=bigger, reseal=True)
    with pytest.raises(ModelFileError, match=r"mismatch\.safetensors: the tensors do not match"):
        load_model(target)


def test_manifest_bones_checked_against_catalog(saved, tmp_path: Path) -> None:
    def swap(manifest):
        manifest["joints"][0]["bones"] = ["talus", "calcaneus", "tibia"]

    target = rewrite(saved[0], tmp_path / "bones.safetensors", change_manifest=swap, reseal=True)
    with pytest.raises(ModelFileError, match=r"bones\.safetensors: invalid manifest .*catalog"):
        load_model(target)


def test_missing_file_and_foreign_safetensors(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="nothere.safetensors: model file not found"):
        load_model(tmp_path / "nothere.safetensors")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ModelFileError, match="without a PediatricBoneSeg manifest"):
        load_model(foreign)


def test_header_is_plain_json(saved) -> None:
    """The manifest is readable by any tool: the safetensors header is JSON."""
    data = saved[0].read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    assert json.loads(header["__metadata__"][MANIFEST_KEY])["format_version"] == FORMAT_VERSION == 2


def test_edited_manifest_fails_the_checksum(saved, tmp_path: Path) -> None:
    """Issue 16 item 8: one digit of the threshold (0.3 -> 0.9 here, 0.148 -> 0.948 in the issue)
    used to load silently and switch the out-of-distribution warning off."""
    target = rewrite(saved[0], tmp_path / "edited.safetensors", change_manifest=_threshold(0.9))
    with pytest.raises(
        ModelFileError, match=r"edited\.safetensors: checksum mismatch: the manifest or the tensors were modified"
    ):
        load_model(target)
    for change in (
        lambda m: m["joints"].reverse(),
        lambda m: m["provenance"].update(scheme="other"),
        lambda m: m.update(extra=1),
        # a format-2 file passed off as format 1: its checksum is not the tensors' one
        lambda m: m.update(format_version=1),
    ):
        with pytest.raises(ModelFileError, match="checksum mismatch"):
            load_model(rewrite(saved[0], tmp_path / "other.safetensors", change_manifest=change))


def test_checksum_covers_the_manifest_content_not_its_layout(saved, tmp_path: Path) -> None:
    target = rewrite(saved[0], tmp_path / "indented.safetensors", indent=3)
    assert load_model(target).warnings == []


def test_edited_manifest_fails_info_and_segment(saved, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    target = rewrite(saved[0], tmp_path / "edited.safetensors", change_manifest=_threshold(0.9))
    assert main(["info", str(target)]) == 2
    assert f"{target}: checksum mismatch: the manifest or the tensors were modified" in capsys.readouterr().err
    scene = pm.make_scene("knee", np.random.default_rng(0), np.eye(3), (2.0, 2.0, 4.0), field_of_view_mm=40.0)
    source = write_image(scene.image, tmp_path / "knee.nii.gz")
    code = main(["segment", str(source), "-o", str(tmp_path / "out"), "--model", str(target), "--joint", "knee"])
    assert code != 0
    assert f"{target}: checksum mismatch" in capsys.readouterr().err
    assert not (tmp_path / "out" / "knee" / "report.json").exists()


def test_format_1_file_loads_with_a_warning_that_every_result_carries(
    saved, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    old = as_format_1(saved[0], tmp_path / "old.safetensors")
    loaded = load_model(old)
    assert len(loaded.warnings) == 1
    assert str(old) in loaded.warnings[0] and "format-1 model file" in loaded.warnings[0]
    assert "not covered by the checksum" in loaded.warnings[0] and "--upgrade" in loaded.warnings[0]
    scene = pm.make_scene("knee", np.random.default_rng(0), np.eye(3), (2.0, 2.0, 4.0), field_of_view_mm=40.0)
    result = segment_image(scene.image, SegmentOptions(joint="knee", postprocess=False), model=loaded)
    assert loaded.warnings[0] in result.warnings
    current = segment_image(scene.image, SegmentOptions(joint="knee", postprocess=False), model=load_model(saved[0]))
    assert not any("format-1" in warning for warning in current.warnings)
    assert main(["info", str(old)]) == 0
    assert f"warning:    {loaded.warnings[0]}" in capsys.readouterr().out
    # the tensors of a format-1 file are still checked
    nudged = rewrite(old, tmp_path / "nudged.safetensors", change_tensors=lambda t: t["detection.centroids"].add_(1.0))
    with pytest.raises(ModelFileError, match=r"nudged\.safetensors: checksum mismatch: the tensors were modified"):
        load_model(nudged)


def test_info_upgrade_resaves_a_format_1_file_unchanged(saved, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    old = as_format_1(saved[0], tmp_path / "old.safetensors")
    new = tmp_path / "new.safetensors"
    assert main(["info", str(old), "--upgrade", str(new)]) == 0
    assert f"upgraded:   {new} (format 2)" in capsys.readouterr().out
    upgraded = load_model(new)
    assert upgraded.warnings == []
    before, after = load_file(str(old)), load_file(str(new))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    content = {k: v for k, v in read_manifest(old).items() if k not in ("format_version", "checksum_sha256")}
    assert {k: v for k, v in read_manifest(new).items() if k not in ("format_version", "checksum_sha256")} == content
    with pytest.raises(ModelFileError, match="checksum mismatch"):  # and from now on the manifest is covered
        load_model(rewrite(new, tmp_path / "edited.safetensors", change_manifest=_threshold(0.9)))


def test_bundled_model_is_the_current_format() -> None:
    path = bundled_model_path()
    assert read_manifest(path)["format_version"] == FORMAT_VERSION
    loaded = load_model(path)
    assert loaded.warnings == []
    # joint classifier; its threshold is the export rule applied to the reference it carries
    assert loaded.manifest.detection.method == "classifier" and loaded.classifier is not None
    assert loaded.manifest.detection.threshold == pytest.approx(novelty_threshold(loaded.classifier), rel=1e-5)


def test_detection_config_writes_the_json_it_reads() -> None:
    bundled = read_manifest(bundled_model_path())["detection"]
    assert set(bundled) == {"scale", "threshold", "metric", "method"}
    centroid_era = {"scale": "features:enc5", "threshold": 0.1478, "metric": "cosine distance"}  # model 1's
    samples = (bundled, centroid_era, {}, {"scale": "enc5", "threshold": 0.3}, {"threshold": 1, "note": {"by": "hand"}})
    for data in samples:
        assert DetectionConfig.from_json(data).to_json() == data
    typed = DetectionConfig.from_json(bundled)
    assert (typed.scale, typed.method) == ("statistics:enc3+enc4", "classifier")
    assert typed.threshold == bundled["threshold"]
    assert DetectionConfig.from_json(centroid_era).method is None
    with pytest.raises(ValueError, match="detection method"):
        DetectionConfig(method="nearest")
    assert DetectionConfig.from_json({"threshold": 1, "note": 2}).extra == {"note": 2}


def test_bundled_manifest_rewritten_from_its_types_keeps_its_checksum() -> None:
    """The typed manifest writes the very content the bundled file's checksum covers."""
    path = bundled_model_path()
    raw = read_manifest(path)
    rewritten = json.loads(json.dumps(load_model(path).manifest.to_json()))
    assert rewritten == {k: v for k, v in raw.items() if k != "checksum_sha256"}
    assert model_checksum(rewritten, load_file(str(path))) == raw["checksum_sha256"]


@pytest.mark.parametrize(
    ("detection", "problem"),
    [
        ({"scale": 5}, "detection scale 5 is not a string"),
        ({"threshold": "0.3"}, "detection threshold '0.3' is not a number"),
        ({"threshold": True}, "detection threshold True is not a number"),
        ({"metric": ["cosine"]}, r"detection metric \['cosine'\] is not a string"),
        ([0.3], r"detection \[0.3\] is not a JSON object"),
    ],
)
def test_malformed_detection_entry_is_refused(saved, tmp_path: Path, detection, problem: str) -> None:
    target = rewrite(
        saved[0], tmp_path / "bad.safetensors", change_manifest=lambda m: m.update(detection=detection), reseal=True
    )
    with pytest.raises(ModelFileError, match=rf"bad\.safetensors: invalid manifest \({problem}\)"):
        load_model(target)


def test_detection_extra_keys_cannot_shadow_its_fields() -> None:
    with pytest.raises(ValueError, match=r"detection extra keys \['threshold'\] are fields"):
        DetectionConfig(extra={"threshold": 0.5})
