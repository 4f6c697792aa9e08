"""Training configuration: one TOML file per run (plans separated from code, as in nnU-Net)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomllib

from PediatricBoneSegLib.pipeline.orientation import PLANE_AXIS

SCHEMES = ("individual", "transfer", "shared", "mtmd", "mtmd_contrastive", "full")
SAMPLINGS = ("slices", "cases", "bones", "planes")
PLANES = tuple(PLANE_AXIS)


@dataclass(frozen=True)
class DatasetSpec:
    """A raw-layout dataset (``imagesTr/``, ``labelsTr/``, ``dataset.json``) of one joint;
    ``cases``: optional subset of case ids (cross-validation folds)."""

    path: str
    joint: str | None = None
    cases: tuple[str, ...] | None = None


@dataclass(frozen=True)
class TrainingConfig:
    """Every choice of a run. Loss weights and scales not given by the paper are project defaults."""

    name: str = "run"
    scheme: str = "full"
    seed: int = 0
    datasets: tuple[DatasetSpec, ...] = ()
    target_joint: str | None = None  # individual / transfer: the joint being learned
    # network
    encoder: str = "mobilenet_v2"
    decoder_channels: tuple[int, ...] = (128, 64, 48, 32, 16)
    imagenet_weights: str | None = None
    # warm start: an exported model file whose network (same architecture and joints as the last
    # phase) starts the training, instead of ImageNet; a longer training of a bundled model on more data
    initial_model: str | None = None
    input_size: int = 160
    # optimization
    steps: int = 3000
    batch_per_domain: int = 4
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    foreground_fraction: float = 0.5  # share of sampled slices that contain bone
    # "slices": every slice of the pool equally likely (a 3D case weighs as much as its slices);
    # "cases": every case equally likely, then a slice of it (a 2D thick-slice series weighs as a 3D one);
    # "bones": a case, then one of its slicing planes, then (bone-showing draws) one of the bones that
    # plane shows, then a slice showing it (a small bone in a rare plane weighs as a big one);
    # "planes": as "bones", but a slicing plane first, then a case sliced in it (every plane weighs
    # alike, however few of the cases are 3D volumes sliced in all three)
    sampling: str = "slices"
    # near-isotropic (3D) training volumes are also sliced along these planes besides the joint's usual
    # plane (inference slices them along the usual plane, and 2D series along their acquisition plane:
    # the network then sees every joint in every plane); every other slice of them is kept
    extra_planes: tuple[str, ...] = ()
    transfer_pretrain_fraction: float = 0.5  # transfer: share of steps spent pre-training
    # losses
    contrastive_weight: float = 0.1
    temperature: float = 0.1
    shape_weight: float = 0.1
    shape_prior_steps: int = 400
    shape_prior_size: int = 64
    shape_prior_latent: int = 64
    # augmentation
    augment: bool = True
    rotation_degrees: float = 15.0
    scale_range: tuple[float, float] = (0.85, 1.15)
    elastic_strength: float = 0.03
    synthesis_probability: float = 0.0  # share of slices replaced by a SynthSeg-style random-contrast image
    # engineering
    threads: int = 0  # 0: torch default
    checkpoint_every: int = 100
    log_every: int = 20
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("invalid training configuration: " + "; ".join(problems))

    def problems(self) -> list[str]:
        found = []
        if self.scheme not in SCHEMES:
            found.append(f"scheme {self.scheme!r} not in {SCHEMES}")
        if not self.datasets:
            found.append("no datasets")
        if self.scheme in ("individual", "transfer") and not self.target_joint:
            found.append(f"scheme {self.scheme!r} needs target_joint")
        if self.initial_model and self.scheme == "transfer":
            found.append("initial_model starts the last phase: the transfer scheme has two")
        if self.sampling not in SAMPLINGS:
            found.append(f"sampling {self.sampling!r} not in {SAMPLINGS}")
        unknown_planes = sorted(set(self.extra_planes) - set(PLANES))
        if unknown_planes:
            found.append(f"extra_planes {unknown_planes} not in {PLANES}")
        if self.steps < 1 or self.batch_per_domain < 1:
            found.append("steps and batch_per_domain must be >= 1")
        return found

    @property
    def contrastive(self) -> bool:
        return self.scheme in ("mtmd_contrastive", "full") and self.contrastive_weight > 0

    @property
    def shape_prior(self) -> bool:
        return self.scheme == "full" and self.shape_weight > 0

    def with_overrides(self, **changes: Any) -> TrainingConfig:
        return replace(self, **changes)


def load_config(path: str | Path) -> TrainingConfig:
    """Read a TOML config; relative dataset and weight paths are resolved against its folder."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"{path}: cannot read the training configuration ({error})") from error
    return config_from_dict(raw, base=path.parent)


def config_from_dict(raw: dict[str, Any], base: Path | None = None) -> TrainingConfig:
    known = {f.name for f in fields(TrainingConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"unknown training configuration keys: {', '.join(unknown)}")
    values = dict(raw)
    datasets = []
    for entry in values.get("datasets", ()):
        dataset_path = Path(entry["path"])
        if base is not None and not dataset_path.is_absolute():
            dataset_path = base / dataset_path
        cases = entry.get("cases")
        datasets.append(DatasetSpec(str(dataset_path), entry.get("joint"), tuple(cases) if cases else None))
    values["datasets"] = tuple(datasets)
    for key in ("imagenet_weights", "initial_model"):
        weights = values.get(key)
        if weights and base is not None and not Path(weights).is_absolute():
            values[key] = str(base / weights)
    for key in ("decoder_channels", "scale_range", "extra_planes"):
        if key in values:
            values[key] = tuple(values[key])
    return TrainingConfig(**values)
