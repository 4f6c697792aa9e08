"""The fast inference path: the precision the hardware computes natively, a network copy prepared
for one domain, thread settings and a slice batch sized to the available memory (the host's CPU,
core and memory facts come from ``host``). On a CUDA GPU (chosen by ``--device auto`` when there is
one): bf16 autocast (fp16 on GPUs without bf16), channels-last, the whole volume in one batch when
it fits in the GPU's free memory, pinned-memory transfers.

Reduced precision is used only where the hardware computes it natively: a CPU without AVX-512-BF16
or AMX emulates bf16 (measured on an AVX2 EPYC: a bf16 matrix product ~250x slower than fp32), so
``auto`` keeps fp32 there. The prepared copy folds every BatchNorm of the active domain into the
preceding convolution (one fewer pass over each activation) and stores activations channels-last
(oneDNN's native layout for CPU convolutions); the loaded model is never modified, since the model
cache and training share it.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..host import available_memory as host_available_memory
from ..host import available_threads, cpu_has_native_bf16
from ..network import MultiDomainUNet
from ..network.domain_norm import DomainBatchNorm2d
from ..network.subpixel import use_subpixel_decoder

REDUCED_PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16}
MEMORY_FRACTION = 0.25  # of the available memory that one slice batch may use
_PROBE_SIZE = 32  # side of the probe slice whose activations are scaled to the input size


def cpu_computes_bf16() -> bool:
    """This CPU has bf16 hardware: PyTorch's own probes say so (they also see features that a
    container's /proc/cpuinfo may hide), or the kernel's flags do (``host.cpu_has_native_bf16``)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes) or cpu_has_native_bf16()


def auto_precision(device: torch.device) -> str:
    """The fastest arithmetic this device computes natively: bf16 (or fp16 on CUDA GPUs without
    bf16) where supported, else fp32. Never an emulated format."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    if device.type == "cpu" and cpu_computes_bf16():
        return "bf16"
    return "fp32"


@contextmanager
def inference_threads(count: int | None = None) -> Iterator[int]:
    """Run the block with ``count`` intra-op threads (default: ``available_threads()``), restoring
    the previous setting afterwards. Yields the count used."""
    count = count or available_threads()
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield count
    finally:
        torch.set_num_threads(previous)


def prepare_network(network: MultiDomainUNet, domain: int, device: torch.device) -> MultiDomainUNet:
    """An inference copy of ``network`` for ``domain`` only: eval mode, BatchNorm folded into the
    preceding convolutions, decoder blocks in sub-pixel form (``network.subpixel``: no upsampled
    tensor, 16/36 of the multiply-adds on the upsampled channels), channels-last weights, on
    ``device``. ``network`` is left untouched.
    The copy computes the same logits for ``domain`` (float tolerance); other domains are wrong.
    The last copy is reused while the same network object's tensors are unchanged (a batch of
    cases, repeated runs in Slicer); any in-place update (a training step) makes a new one."""
    key = (domain, str(device), _tensor_versions(network))
    cached = _last_prepared.get(key)
    if cached is not None and cached[0]() is network:
        return cached[1]
    prepared = copy.deepcopy(network).eval()
    fold_batch_norm(prepared, prepared.config.norm_set_of(domain))
    use_subpixel_decoder(prepared)
    for parameter in prepared.parameters():
        parameter.requires_grad_(False)
    prepared = prepared.to(device=device, memory_format=torch.channels_last)
    _last_prepared.clear()
    _last_prepared[key] = (weakref.ref(network), prepared)
    return prepared


_last_prepared: dict[tuple, tuple[weakref.ref, MultiDomainUNet]] = {}


def _tensor_versions(network: nn.Module) -> tuple[int, ...]:
    """PyTorch's in-place modification counters of every parameter and buffer."""
    return tuple(tensor._version for tensor in network.state_dict(keep_vars=True).values())


def fold_batch_norm(network: nn.Module, norm_set: int) -> None:
    """Fold BN set ``norm_set`` of every ``Conv2d -> DomainBatchNorm2d`` pair into the convolution
    (weight scaled per output channel, bias added) and replace the BN by the identity, in place.
    Pairs are a Sequential's consecutive children or the attributes ``convN``/``bnN`` of a block."""
    for parent in list(network.modules()):
        for conv_name, norm_name in _conv_norm_pairs(parent):
            conv, norm = getattr(parent, conv_name), getattr(parent, norm_name)
            setattr(parent, conv_name, _folded_conv(conv, norm.norms[norm_set]))
            setattr(parent, norm_name, nn.Identity())


def _conv_norm_pairs(parent: nn.Module) -> list[tuple[str, str]]:
    children = dict(parent.named_children())
    if isinstance(parent, nn.Sequential):
        names = list(children)
        candidates = list(zip(names, names[1:]))
    else:
        candidates = [(name, "bn" + name[4:]) for name in children if name.startswith("conv")]
    return [
        (conv, norm)
        for conv, norm in candidates
        if isinstance(children.get(conv), nn.Conv2d) and isinstance(children.get(norm), DomainBatchNorm2d)
    ]


def _folded_conv(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> nn.Conv2d:
    """y = gamma * (conv(x) - mean) / sqrt(var + eps) + beta as one convolution (float64 maths)."""
    scale = norm.weight.double() / torch.sqrt(norm.running_var.double() + norm.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    ).to(conv.weight.device)
    with torch.no_grad():
        fused.weight.copy_((conv.weight.double() * scale[:, None, None, None]).to(conv.weight.dtype))
        fused.bias.copy_(((bias - norm.running_mean.double()) * scale + norm.bias.double()).to(conv.weight.dtype))
    return fused


def batch_limit(network: nn.Module, domain: int, input_size: int, output_bytes: int, device: torch.device) -> int:
    """The most slices per forward pass that fit in ``MEMORY_FRACTION`` of the memory available
    now. Per slice: every activation of the network held at once (an upper bound: inference frees
    most of them early), measured on a small probe slice and scaled to ``input_size``, plus
    ``output_bytes`` (the logits resampled to the slice grid)."""
    sizes: list[int] = []

    def record(module: nn.Module, inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor) and not isinstance(module, nn.Identity):
            sizes.append(output.numel() * 4)

    hooks = [module.register_forward_hook(record) for module in network.modules() if not list(module.children())]
    try:
        with torch.inference_mode():
            network(torch.zeros(1, 1, _PROBE_SIZE, _PROBE_SIZE, device=device), domain)
    finally:
        for hook in hooks:
            hook.remove()
    per_slice = sum(sizes) * (input_size / _PROBE_SIZE) ** 2 + output_bytes
    return max(1, int(MEMORY_FRACTION * available_memory(device) // per_slice))


def slices_per_pass(device: torch.device, requested: int, count: int, limit: int) -> int:
    """Slices per forward pass of a volume of ``count`` slices when ``limit`` fit in memory
    (``batch_limit``): on a CUDA GPU the whole volume in one pass if it fits, else as many as fit (a
    GPU is fastest with its batches full); elsewhere ``requested`` (``--batch-size``), at most
    ``limit``."""
    if device.type == "cuda":
        return max(1, min(count, limit))
    return max(1, min(requested, limit))


@contextmanager
def device_settings(device: torch.device) -> Iterator[None]:
    """The block's network passes on ``device``: CPU, ``inference_threads``; CUDA, cuDNN picks the
    fastest convolution algorithms for the batch's shape (one shape for a whole volume), restored
    afterwards."""
    if device.type == "cpu":
        with inference_threads():
            yield
        return
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = device.type == "cuda"
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``batch`` (on the host) on ``device``, channels-last. To a CUDA GPU through page-locked
    (pinned) memory, asynchronously: the copy overlaps the GPU's work on the previous batch."""
    if device.type == "cuda":
        return batch.pin_memory().to(device, non_blocking=True, memory_format=torch.channels_last)
    return batch.to(device, memory_format=torch.channels_last)


def available_memory(device: torch.device) -> int:
    """Bytes free for this process on ``device``: the GPU's free memory, or ``host.available_memory``."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return host_available_memory()
