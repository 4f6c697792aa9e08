"""The shared multi-domain 2D U-Net of Boutillon et al. (MedIA 2022).

Convolutions are shared by all domains; every BatchNorm is domain-specific and each domain has its
own segmentation layer (1x1 conv). A batch may stack the mini-batches of several domains: each
sample is normalized with its domain's BN set and segmented by its domain's head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .config import NetworkConfig
from .decoder import UNetDecoder
from .domain_norm import DomainBatchNorm2d, DomainRouting, contiguous_runs
from .mobilenet import MobileNetV2Encoder
from .projection import ProjectionHead
from .resnet import ResNetEncoder


@dataclass
class NetworkOutput:
    """``logits[d]``: [B_d, classes_d, H, W] for the B_d samples of domain d, in batch order.
    ``embeddings[name]``: [B, embedding_dim] L2-normalized, for every sample, per projection scale
    (only when requested)."""

    logits: dict[int, torch.Tensor]
    embeddings: dict[str, torch.Tensor] = field(default_factory=dict)


class MultiDomainUNet(nn.Module):
    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.routing = DomainRouting()

        def norm(channels: int) -> nn.Module:
            return DomainBatchNorm2d(channels, config.num_norm_sets, self.routing)

        if config.encoder == "mobilenet_v2":
            self.encoder: nn.Module = MobileNetV2Encoder(config.in_channels, norm)
        else:
            self.encoder = ResNetEncoder(config.encoder, config.in_channels, norm)
        encoder_channels: tuple[int, ...] = self.encoder.channels
        self.decoder = UNetDecoder(encoder_channels, config.decoder_channels, norm)
        self.heads = nn.ModuleList(
            nn.Conv2d(config.decoder_channels[-1], classes, 1)
            for classes in config.classes_per_domain[: config.num_norm_sets]
        )
        self.projections = nn.ModuleDict(
            {
                str(scale): ProjectionHead(scale.pick(encoder_channels, config.decoder_channels), config.embedding_dim)
                for scale in config.feature_scales
            }
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @staticmethod
    def _domain_list(domains: int | Sequence[int] | torch.Tensor, batch_size: int) -> list[int]:
        """One domain per sample (``config.norm_set_of`` refuses the unknown ones when routing)."""
        if isinstance(domains, int):
            return [domains] * batch_size
        return [int(d) for d in domains]

    def encode(self, x: torch.Tensor, domains: int | Sequence[int] | torch.Tensor) -> list[torch.Tensor]:
        """Encoder features only (strides 2..32), e.g. for joint auto-detection."""
        domain_list = self._domain_list(domains, x.shape[0])
        self.routing.route([self.config.norm_set_of(domain) for domain in domain_list], x.shape[0])
        return self.encoder(x)

    def forward(
        self,
        x: torch.Tensor,
        domains: int | Sequence[int] | torch.Tensor,
        with_embeddings: bool = False,
    ) -> NetworkOutput:
        """x: [B, in_channels, H, W], H and W multiples of 32. ``domains``: one domain for the whole
        batch, or one per sample with each domain's samples contiguous."""
        domain_list = self._domain_list(domains, x.shape[0])
        features = self.encode(x, domain_list)
        stages = self.decoder(features)
        runs = contiguous_runs(domain_list)
        chunks = stages[-1].split([length for _, length in runs])
        logits = {domain: self.heads[self.config.head_of(domain)](chunk) for (domain, _), chunk in zip(runs, chunks)}
        embeddings = {}
        if with_embeddings:
            for scale in self.config.feature_scales:
                embeddings[str(scale)] = self.projections[str(scale)](scale.pick(features, stages))
        return NetworkOutput(logits, embeddings)
