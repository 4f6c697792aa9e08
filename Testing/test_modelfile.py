"""Model files: safetensors + manifest; never unpickled; every defect has its own clear error."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from PediatricBoneSegLib.modelfile import (
    MANIFEST_KEY,
    ModelFileError,
    ModelManifest,
    load_model,
    read_manifest,
    save_model,
)
from PediatricBoneSegLib.network import MultiDomainUNet, NetworkConfig
from PediatricBoneSegLib.preprocessing import PreprocessingConfig


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
        detection={"scale": "enc5", "threshold": 0.3},
    )
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    save_model(path, network, manifest, torch.randn(3, 128))
    return path, network


def rewrite(source: Path, target: Path, change_tensors=None, change_manifest=None) -> Path:
    """Write a copy of a model file with its tensors or manifest edited (as a tamperer would)."""
    from safetensors import safe_open

    with safe_open(str(source), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(source))
    if change_tensors:
        change_tensors(tensors)
    manifest = json.loads(metadata[MANIFEST_KEY])
    if change_manifest:
        change_manifest(manifest)
    save_file(tensors, str(target), metadata={**metadata, MANIFEST_KEY: json.dumps(manifest)})
    return target


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

    target = rewrite(saved[0], tmp_path / "mismatch.safetensors", change_manifest=bigger)
    with pytest.raises(ModelFileError, match=r"mismatch\.safetensors: the tensors do not match"):
        load_model(target)


def test_manifest_bones_checked_against_catalog(saved, tmp_path: Path) -> None:
    def swap(manifest):
        manifest["joints"][0]["bones"] = ["talus", "calcaneus", "tibia"]

    target = rewrite(saved[0], tmp_path / "bones.safetensors", change_manifest=swap)
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
    assert json.loads(header["__metadata__"][MANIFEST_KEY])["format_version"] == 1
