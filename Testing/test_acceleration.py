"""The fast inference path: precision choice by hardware, BatchNorm folding, and the segmentation of
reduced precision against fp32 on a knee phantom with a (briefly) trained network."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from pbseg_training.phantoms import generate_phantom
from PediatricBoneSegLib.catalog import get_joint
from PediatricBoneSegLib.host import available_threads, cpu_flags, cpu_has_native_bf16, physical_cores
from PediatricBoneSegLib.network import MultiDomainUNet, NetworkConfig
from PediatricBoneSegLib.network.config import PreprocessingConfig
from PediatricBoneSegLib.network.decoder import DecoderBlock
from PediatricBoneSegLib.network.domain_norm import DomainBatchNorm2d
from PediatricBoneSegLib.network.modelfile import LoadedModel, ModelManifest, load_model, save_model
from PediatricBoneSegLib.network.subpixel import SubpixelDecoderBlock
from PediatricBoneSegLib.options import SegmentOptions
from PediatricBoneSegLib.pipeline.acceleration import (
    auto_precision,
    available_memory,
    batch_limit,
    cpu_computes_bf16,
    device_settings,
    inference_threads,
    prepare_network,
    slices_per_pass,
    to_device,
)
from PediatricBoneSegLib.pipeline.inference import resolve_device, resolve_precision, segment_image
from PediatricBoneSegLib.pipeline.preprocessing import slice_volume

KNEE = get_joint("knee")
# Feature flags of the AVX2 EPYC this project's CI runs on (no AVX-512, no AMX).
AVX2_FLAGS = {"sse4_2", "avx", "avx2", "fma", "f16c", "bmi2"}


def test_precision_auto_is_fp32_on_a_cpu_without_native_bf16() -> None:
    assert not cpu_has_native_bf16(AVX2_FLAGS)
    assert cpu_has_native_bf16(AVX2_FLAGS | {"avx512f", "avx512_bf16"})
    assert cpu_has_native_bf16(AVX2_FLAGS | {"amx_tile", "amx_bf16"})
    assert auto_precision(torch.device("cpu")) == ("bf16" if cpu_computes_bf16() else "fp32")
    # Flags the kernel reports imply bf16 hardware. Their absence does not imply emulation: a
    # kernel may not list a feature that PyTorch's CPUID probe sees, so that is not asserted.
    if cpu_has_native_bf16(cpu_flags()):
        assert auto_precision(torch.device("cpu")) == "bf16"


def test_threads_are_set_for_the_block_and_restored() -> None:
    before = torch.get_num_threads()
    with inference_threads(1) as count:
        assert count == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert 1 <= available_threads() <= physical_cores() <= (os.cpu_count() or 1)


def _randomize_norms(network: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                channels = module.num_features
                module.running_mean.copy_(torch.randn(channels, generator=generator) * 0.2)
                module.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(channels, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(channels, generator=generator) * 0.1)


@pytest.mark.parametrize(("encoder", "domains"), [("resnet18", (0, 1, 2)), ("resnet50", (2,)), ("mobilenet_v2", (1,))])
def test_folded_network_gives_the_same_logits(encoder: str, domains: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    network = MultiDomainUNet(NetworkConfig(encoder=encoder, decoder_channels=(32, 16, 16, 8, 8))).eval()
    _randomize_norms(network, 1)
    before = {name: tensor.clone() for name, tensor in network.state_dict().items()}
    images = torch.randn(2, 1, 64, 64)
    for domain in domains:
        prepared = prepare_network(network, domain, torch.device("cpu"))
        assert not any(isinstance(module, DomainBatchNorm2d) for module in prepared.modules())  # all folded
        assert all(isinstance(block, SubpixelDecoderBlock) for block in prepared.decoder.blocks)
        with torch.inference_mode(), inference_threads(1):
            expected = network(images, domain).logits[domain]
            folded = prepared(images.contiguous(memory_format=torch.channels_last), domain).logits[domain]
        scale = float(expected.abs().max())
        assert torch.allclose(folded, expected, rtol=1e-4, atol=1e-4 * scale), float((folded - expected).abs().max())
    # The loaded model is shared with the model cache and training: it must be untouched.
    assert all(torch.equal(before[name], tensor) for name, tensor in network.state_dict().items())
    assert any(isinstance(module, DomainBatchNorm2d) for module in network.modules())


@pytest.mark.parametrize("skip_channels", [5, 0])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_subpixel_block_equals_upsample_concatenate_convolve(skip_channels: int, layout: torch.memory_format) -> None:
    """Non-square inputs, with and without a skip: every output pixel phase and every border."""
    torch.manual_seed(0)
    block = DecoderBlock(12, skip_channels, 7, lambda channels: torch.nn.Identity()).eval()
    block.conv1 = torch.nn.Conv2d(12 + skip_channels, 7, 3, padding=1)  # BN-folded convolutions have a bias
    block.conv2 = torch.nn.Conv2d(7, 7, 3, padding=1)
    fast = SubpixelDecoderBlock(copy.deepcopy(block))
    x = torch.randn(2, 12, 5, 7).contiguous(memory_format=layout)
    skip = torch.randn(2, skip_channels, 10, 14).contiguous(memory_format=layout) if skip_channels else None
    with torch.inference_mode():
        expected, result = block(x, skip), fast(x, skip)
    assert result.shape == expected.shape == (2, 7, 10, 14)
    assert torch.allclose(result, expected, atol=1e-5), float((result - expected).abs().max())


def _trained_knee_model(image: sitk.Image, labels: sitk.Image, path: Path) -> LoadedModel:
    """A MobileNetV2 U-Net trained for 40 steps on the phantom's own slices (64 px), its BN
    statistics then measured on them: a real network with non-trivial folded weights."""
    torch.manual_seed(0)
    preprocessing = PreprocessingConfig(size=64)
    sliced = slice_volume(
        sitk.GetArrayViewFromImage(image), image.GetSpacing(), image.GetDirection(), "sagittal", preprocessing
    )
    images = sliced.network_input(0, len(sliced.slices))
    truth = sliced.network_labels(sitk.GetArrayFromImage(labels))
    config = NetworkConfig("mobilenet_v2", (KNEE.num_classes,), decoder_channels=(32, 16, 16, 16, 8))
    network = MultiDomainUNet(config)
    weights = torch.bincount(truth.ravel(), minlength=KNEE.num_classes).float().clamp(min=1) ** -0.5
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2)
    network.train()
    with inference_threads(1):  # small tensors: one thread is fastest, and immune to busy cores
        for _ in range(40):
            logits = network(images, 0).logits[0]
            loss = torch.nn.functional.cross_entropy(logits, truth, weight=weights / weights.mean())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average: exact statistics of this data
            module.reset_running_stats()
    with torch.no_grad(), inference_threads(1):
        network(images, 0)
    network.eval()
    manifest = ModelManifest("pbseg-test-trained", "0", config, ["knee"], preprocessing)
    return load_model(save_model(path, network, manifest))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


def test_reduced_precision_segments_like_fp32(tmp_path: Path) -> None:
    phantom = generate_phantom("knee", 3, age_years=12, voxel_scale=2.0)
    model = _trained_knee_model(phantom.image, phantom.labels, tmp_path / "knee.safetensors")
    # bf16 runs even where emulated (slow, but a small volume); also what "auto" picks here when it
    # is a reduced precision (fp16 on a GPU without bf16), and fp16 on any GPU.
    device = resolve_device("auto")
    on_gpu = {"fp16"} if device.type == "cuda" else set()
    reduced = sorted(({"bf16", resolve_precision("auto", device)} | on_gpu) - {"fp32"})
    results = {
        precision: sitk.GetArrayFromImage(
            segment_image(phantom.image, SegmentOptions(joint="knee", precision=precision), model=model).labels
        )
        for precision in ("fp32", *reduced)
    }
    truth = sitk.GetArrayFromImage(phantom.labels)
    for value, bone in enumerate(KNEE.bones, start=1):
        reference = results["fp32"] == value
        assert _dice(reference, truth == value) > 0.5, f"{bone.key}: the network did not learn this bone"
        for precision in reduced:
            dice = _dice(results[precision] == value, reference)
            assert dice >= 0.99, f"{bone.key}: {precision} Dice {dice:.4f} against fp32"


def test_batch_limit_follows_the_memory_a_slice_needs() -> None:
    cpu = torch.device("cpu")
    network = prepare_network(MultiDomainUNet(NetworkConfig("resnet18", decoder_channels=(32, 16, 16, 8, 8))), 0, cpu)
    with inference_threads(1):
        small, large = batch_limit(network, 0, 64, 0, cpu), batch_limit(network, 0, 1024, 0, cpu)
        assert small > large >= 1
        assert batch_limit(network, 0, 64, available_memory(cpu), cpu) == 1  # never below one slice


def test_a_gpu_takes_the_whole_volume_when_it_fits_a_cpu_its_batch_size() -> None:
    """The CUDA path's choices, checked on any machine: whole-volume passes on a GPU, bounded by
    its memory; the requested batch on a CPU; host batches reach a GPU through pinned memory."""
    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    assert slices_per_pass(gpu, 16, 160, 500) == 160  # the whole volume, one pass
    assert slices_per_pass(gpu, 16, 160, 40) == 40  # as many as fit
    assert slices_per_pass(cpu, 16, 160, 500) == 16
    assert slices_per_pass(cpu, 16, 160, 4) == 4 and slices_per_pass(cpu, 16, 160, 0) == 1
    batch = torch.zeros(2, 1, 8, 8)
    moved = to_device(batch, resolve_device("auto"))  # CUDA where PyTorch sees a GPU
    assert moved.device.type == resolve_device("auto").type
    assert moved.is_contiguous(memory_format=torch.channels_last)
    threads, benchmark = torch.get_num_threads(), torch.backends.cudnn.benchmark
    with device_settings(gpu):
        assert torch.backends.cudnn.benchmark
    with device_settings(cpu):  # one thread per free physical core
        assert 1 <= torch.get_num_threads() <= physical_cores()
    assert (torch.get_num_threads(), torch.backends.cudnn.benchmark) == (threads, benchmark)


def test_prepared_copy_is_reused_until_the_weights_change() -> None:
    cpu = torch.device("cpu")
    network = MultiDomainUNet(NetworkConfig("resnet18", decoder_channels=(32, 16, 16, 8, 8))).eval()
    first = prepare_network(network, 1, cpu)
    assert prepare_network(network, 1, cpu) is first
    assert prepare_network(network, 2, cpu) is not first
    with torch.no_grad():  # what a training step or a load_state_dict does: in-place updates
        network.encoder.bn1.norms[2].running_mean.add_(1.0)
    changed = prepare_network(network, 2, cpu)
    expected = network.encoder.bn1.norms[2]
    scale = expected.weight / torch.sqrt(expected.running_var + expected.eps)
    assert torch.allclose(changed.encoder.conv1.bias, expected.bias - expected.running_mean * scale, atol=1e-6)
    # Built alike, so with equal version counters, but another network: never the cached copy.
    one, other = (MultiDomainUNet(network.config).eval() for _ in range(2))
    assert prepare_network(other, 0, cpu) is not prepare_network(one, 0, cpu)
