"""What a model file stores to rebuild and feed its network, verbatim: the architecture of the
multi-domain U-Net (``NetworkConfig``) and the preprocessing its inputs need (``PreprocessingConfig``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeVar

ENCODERS = ("resnet18", "resnet34", "resnet50", "mobilenet_v2")
LEVELS = 5  # encoder outputs (strides 2..32) and decoder stages
_SCALE_PATTERN = re.compile(rf"(enc|dec)([1-{LEVELS}])")
_T = TypeVar("_T")


@dataclass(frozen=True)
class FeatureScale:
    """One feature map of the U-Net: ``enc<k>`` is the encoder output at stride 2**k, ``dec<k>`` the
    k-th decoder stage (1 = deepest). Its text (``str``) names the projection head in model files."""

    kind: Literal["enc", "dec"]
    level: int

    def __post_init__(self) -> None:
        if self.kind not in ("enc", "dec") or not 1 <= self.level <= LEVELS:
            raise ValueError(f"feature scale {self.kind!r} level {self.level!r} is not enc1..enc5 or dec1..dec5")

    @classmethod
    def parse(cls, text: str) -> FeatureScale:
        """``"enc4"`` -> FeatureScale("enc", 4). Only the canonical text is accepted ("enc04" is not),
        so that ``str`` gives back the very name that keys the projection head's tensors."""
        match = _SCALE_PATTERN.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"feature scale {text!r} is not enc1..enc5 or dec1..dec5")
        kind: Literal["enc", "dec"] = "enc" if match[1] == "enc" else "dec"
        return cls(kind, int(match[2]))

    def __str__(self) -> str:
        return f"{self.kind}{self.level}"

    def pick(self, encoder: Sequence[_T], decoder: Sequence[_T]) -> _T:
        """This scale's entry of per-level encoder and decoder sequences (feature maps or channel counts)."""
        return (encoder if self.kind == "enc" else decoder)[self.level - 1]


@dataclass(frozen=True)
class NetworkConfig:
    """What builds a network; JSON-serializable.

    ``classes_per_domain[d]`` is the number of output classes (bones + background) of domain
    ``d``'s head. With ``shared=True`` there is a single BN set and a single head of
    ``classes_per_domain[0]`` classes whatever the domain (the fully shared baseline).
    ``projection_scales`` name the feature maps that feed the contrastive projection heads
    (``FeatureScale`` texts: ``"enc<k>"``, ``"dec<k>"``); ``feature_scales`` gives them parsed.
    """

    encoder: str = "resnet50"
    classes_per_domain: tuple[int, ...] = (4, 5, 3)
    shared: bool = False
    in_channels: int = 1
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)
    embedding_dim: int = 128
    projection_scales: tuple[str, ...] = ("enc4", "enc5", "dec1")
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("invalid network configuration: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """Every reason this configuration is invalid (empty when valid)."""
        found = []
        if self.encoder not in ENCODERS:
            found.append(f"encoder {self.encoder!r} not in {ENCODERS}")
        if not self.classes_per_domain or min(self.classes_per_domain) < 2:
            found.append("classes_per_domain needs one entry >= 2 per domain")
        if self.shared and len(set(self.classes_per_domain)) != 1:
            found.append("a shared network has one head: classes_per_domain must all be equal")
        if len(self.decoder_channels) != 5:
            found.append("decoder_channels needs 5 entries (strides 16, 8, 4, 2, 1)")
        for scale in self.projection_scales:
            try:
                FeatureScale.parse(scale)
            except ValueError:
                found.append(f"projection scale {scale!r} is not enc1..enc5 or dec1..dec5")
        return found

    @property
    def num_domains(self) -> int:
        return len(self.classes_per_domain)

    @property
    def num_norm_sets(self) -> int:
        return 1 if self.shared else self.num_domains

    @property
    def feature_scales(self) -> tuple[FeatureScale, ...]:
        """``projection_scales`` parsed (the strings stay what the JSON stores)."""
        return tuple(FeatureScale.parse(scale) for scale in self.projection_scales)

    def head_of(self, domain: int) -> int:
        """The segmentation head of ``domain``: its own, or the single one of a shared network
        (there is one head per BN set)."""
        return self.norm_set_of(domain)

    def norm_set_of(self, domain: int) -> int:
        """The BatchNorm set that normalizes ``domain``'s samples (a shared network has one)."""
        if not 0 <= domain < self.num_domains:
            raise ValueError(f"domain {domain} outside 0..{self.num_domains - 1}")
        return 0 if self.shared else domain

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NetworkConfig:
        known = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        for key in ("classes_per_domain", "decoder_channels", "projection_scales"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


@dataclass(frozen=True)
class PreprocessingConfig:
    """``size``: network input side (pixels, multiple of 32). ``clip_percentiles``: intensity
    window before z-scoring. ``near_isotropic_ratio``: max/min spacing below which a volume counts
    as isotropic and is sliced in the joint's usual plane."""

    size: int = 256
    clip_percentiles: tuple[float, float] = (0.5, 99.5)
    near_isotropic_ratio: float = 1.2

    def __post_init__(self) -> None:
        if self.size % 32 or self.size < 32:
            raise ValueError(f"preprocessing size must be a positive multiple of 32, got {self.size}")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> PreprocessingConfig:
        return cls(
            size=int(data["size"]),
            clip_percentiles=tuple(data["clip_percentiles"]),  # type: ignore[arg-type]
            near_isotropic_ratio=float(data["near_isotropic_ratio"]),
        )
